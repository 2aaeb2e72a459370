"""A gallery web app: type a prompt, watch its job's status change live, see the image.

Run it from the repository's root (without ``TTAPI_API_KEY`` it uses the embedded
emulator)::

    python -m examples.gallery            # then open http://127.0.0.1:8080/

The backend (aiohttp) submits each prompt with ``client.gpt.submit``, turns the waiter's
job events into server-sent events for the page, saves each image with ``client.save``
and serves it itself. The page is plain HTML and JavaScript (``static/``). History is kept
in memory, newest first. ``docs/gallery.md`` tells the rest.
"""

from __future__ import annotations

from ._history import Gallery, Generation, Status
from ._serve import open_client, serve
from ._web import make_app


__all__ = ["Gallery", "Generation", "Status", "make_app", "open_client", "serve"]
