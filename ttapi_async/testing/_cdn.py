"""The emulator's image host: the URLs a reply names, served under ``/files/`` until they expire.

Strictly private. TTAPI's image URLs point at its CDN and expire (wire §3, §7.2); here they
point back at the emulator, live ``url_ttl`` seconds, and count who asked for them (a
request that carries the API key to a file URL is a leak the counters expose). Images are
drawn once per kind by :mod:`._imagegen` and then served from its cache.
"""

from __future__ import annotations

import functools
import uuid
from typing import TYPE_CHECKING, Final, Protocol

import anyio
from aiohttp import web

from ttapi_async._protocol import API_KEY_HEADER

from . import _imagegen


if TYPE_CHECKING:
    import asyncio

    from ._counters import Counters


__all__ = ["FILES_PREFIX", "Cdn", "CdnKnobs"]

#: Path prefix of served image files.
FILES_PREFIX: Final = "/files/"


class CdnKnobs(Protocol):
    """The emulator's settings the image host reads."""

    #: Seconds a served image URL works before it answers 404.
    url_ttl: float
    #: Whether pictures show their prompt (else one shared picture per kind).
    draw_prompts: bool


class Cdn:
    """Holds every image a reply pointed at, and serves it while its URL is fresh."""

    def __init__(self, knobs: CdnKnobs, counters: Counters) -> None:
        """Serve with ``knobs.url_ttl`` (read per request: it may change at runtime)."""
        self._knobs = knobs
        self._counters = counters
        # name -> (created, image, tag): a 4o job's image is tagged with its job id.
        self._files: dict[str, tuple[float, _imagegen.Rendered, str | None]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._base = ""

    def open(self, loop: asyncio.AbstractEventLoop, base_url: str) -> None:
        """Start naming URLs under ``base_url`` and timing them on ``loop``."""
        self._loop, self._base = loop, base_url

    def url(self, name: str) -> str:
        """The URL of the file ``name``."""
        return f"{self._base}{FILES_PREFIX}{name}"

    async def image(
        self, fmt: str, width: int, height: int, *, alpha: bool, prompt: str | None = None
    ) -> _imagegen.Rendered:
        """The picture of this kind, drawn off the loop the first time it is asked for.

        With ``prompt`` it shows the prompt, when the emulator draws prompts (the
        ``draw_prompts`` knob); else it is the shared picture of its kind.
        """
        prompt = prompt if self._knobs.draw_prompts else None
        found = _imagegen.cached(fmt, width, height, alpha=alpha, prompt=prompt)
        if found is not None:
            return found
        return await anyio.to_thread.run_sync(
            functools.partial(_imagegen.image, fmt, width, height, alpha=alpha, prompt=prompt)
        )

    def add(
        self, image: _imagegen.Rendered, created: float | None = None, tag: str | None = None
    ) -> str:
        """Serve ``image`` under a new name and return its URL.

        ``created`` is the loop time its life starts (default now); a ``tag`` (PNG only)
        is written into its bytes as it is served.
        """
        ext = "jpg" if image.mime == "image/jpeg" else image.mime.removeprefix("image/")
        name = f"{uuid.uuid4().hex}.{ext}"
        loop = self._loop
        assert loop is not None  # noqa: S101 - only called while running
        self._files[name] = (loop.time() if created is None else created, image, tag)
        return self.url(name)

    def serve(self, request: web.BaseRequest, name: str) -> web.StreamResponse:
        """Answer ``GET /files/<name>``: the bytes, or 404 when unknown or expired."""
        counters = self._counters
        headers = request.headers
        if API_KEY_HEADER in headers or "Authorization" in headers:
            counters.key_seen_on_files += 1
        if request.method not in {"GET", "HEAD"}:
            return web.Response(status=405, text="Method Not Allowed")
        entry = self._files.get(name)
        if entry is None:
            return web.Response(status=404, text="Not Found")
        created, image, tag = entry
        loop = self._loop
        assert loop is not None  # noqa: S101 - the server runs only while entered
        if loop.time() - created > self._knobs.url_ttl:
            counters.files_expired += 1
            return web.Response(status=404, text="The link has expired")
        counters.files_served += 1
        # A job's image names its job in a text chunk, added as it is served: one copy of
        # the picture in memory for all jobs, and each saved file says where it came from.
        data = image.data if tag is None else _imagegen.tag_png(image.data, tag)
        return web.Response(body=data, content_type=image.mime)
