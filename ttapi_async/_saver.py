"""``client.save`` and ``client.download``: the download pipeline under a client's rules.

Strictly private. :mod:`ttapi_async._downloads` streams, checks and places files; a
:class:`Saver` runs it with what the client is handed down: the sender's transport (no
download once the client is closed), its deadline arithmetic, and its redactor (an image
URL or an error page may quote the key or a hook token).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ._downloads import DEFAULT_MAX_BYTES, fetch_bytes, save_result
from ._errors import TTAPIError, ValidationError
from ._models import ImageData, ImagesResponse, ImageStreamEvent, JobResult, JobSnapshot
from ._types import NOT_GIVEN, Timeout


if TYPE_CHECKING:
    from ._models import SavedImage
    from ._sender import Sender


__all__ = ["Saver"]


class Saver:
    """Saves results and downloads images for one client (``client.save``, ``client.download``)."""

    __slots__ = ("_sender",)

    def __init__(self, sender: Sender) -> None:
        self._sender = sender

    async def download(
        self, url: str, *, max_bytes: int = DEFAULT_MAX_BYTES, timeout: Timeout = NOT_GIVEN
    ) -> bytes:
        """Download an image URL (never sending the API key) and return its bytes.

        For results, prefer :meth:`save`: it streams to disk instead of holding the image.

        Raises:
            ImageUnavailableError: 403, 404 or 410: the URL expired (TTAPI and DALL-E URLs
                last about an hour) or never existed. A :class:`NotFoundError`.
            ResponseFormatError: the reply is larger than ``max_bytes`` or not an image.
            APIStatusError: any other error status. APIConnectionError: no full reply.
            ClientClosedError: the client is closed.
        """
        sender = self._sender
        return await fetch_bytes(
            sender.transport(), url, max_bytes=max_bytes, deadline=sender.deadline(timeout)
        )

    async def save(
        self,
        result: ImagesResponse
        | JobSnapshot
        | JobResult
        | ImageStreamEvent
        | Sequence[ImageStreamEvent],
        directory: str | os.PathLike[str],
        *,
        stem: str | None = None,
        sidecar: bool = True,
        metadata: Mapping[str, Any] | None = None,
        max_bytes: int = DEFAULT_MAX_BYTES,
        timeout: Timeout = NOT_GIVEN,
    ) -> list[SavedImage]:
        """Save every image of a result into ``directory``; return what was saved.

        ``result`` may also be a streamed call's completed event, or a list of its events
        (the ``*.completed`` ones are saved; partial images are not).

        URL images (DALL-E, 4o jobs) are streamed to disk without the API key;
        ``b64_json`` images are decoded slice by slice. Each file is checked (Content-Type,
        magic bytes, ``max_bytes``), hashed, fsynced and then given a name of its own,
        ``<stem>-<i>.<ext>`` (``-2``, ``-3``, ... appended if taken: nothing is ever
        overwritten), the extension read from the bytes. ``stem`` defaults to a safe slug
        of ``metadata["prompt"]``, else of the prompt, revised prompt or job id. On any
        error or cancellation no partial file is left behind.

        With ``sidecar`` (the default), ``<image name>.json`` next to each image records
        the prompt, job id, timings, sha256, size, type, dimensions and the source URL
        without its query string, with ``metadata`` merged in. It never holds the API
        key, a hook URL or a hook token.

        ``timeout`` is one deadline for every download of the call.

        Raises:
            ImageUnavailableError: an image URL has expired (after about an hour).
            ResponseFormatError: not an image, or larger than ``max_bytes``.
            ValidationError: a job without an image, or a ``stem`` that is not one name.
            APIConnectionError, APIStatusError: the download failed.
            ClientClosedError: the client is closed.
        """
        return await self.save_for_run(
            _as_result(result),
            directory,
            stem=stem,
            sidecar=sidecar,
            metadata=metadata,
            max_bytes=max_bytes,
            timeout=timeout,
        )

    async def save_for_run(
        self,
        result: ImagesResponse | JobSnapshot | JobResult,
        directory: str | os.PathLike[str],
        *,
        stem: str | None = None,
        sidecar: bool = True,
        metadata: Mapping[str, Any] | None = None,
        max_bytes: int = DEFAULT_MAX_BYTES,
        timeout: Timeout = NOT_GIVEN,
        run_id: str | None = None,
    ) -> list[SavedImage]:
        """:meth:`save` for a journaled bulk run: temporary files carry its ``run_id``.

        A resumed run sweeps the ``.part-<run id>-*`` files a killed run left, and only
        those: other saves into the same folder are never touched.
        """
        sender = self._sender
        transport = sender.transport()  # raises ClientClosedError once closed
        try:
            return await save_result(
                transport,
                result,
                directory,
                stem=stem,
                sidecar=sidecar,
                metadata=metadata,
                max_bytes=max_bytes,
                deadline=sender.deadline(timeout),
                redactor=sender.redactor,
                run_id=run_id,
            )
        except TTAPIError as exc:
            # An image URL or an error page may quote the key or a hook token.
            sender.redactor.scrub(exc)
            raise


def _as_result(
    result: ImagesResponse
    | JobSnapshot
    | JobResult
    | ImageStreamEvent
    | Sequence[ImageStreamEvent],
) -> ImagesResponse | JobSnapshot | JobResult:
    """A streamed call's completed events as the :class:`ImagesResponse` they amount to."""
    if isinstance(result, ImagesResponse | JobSnapshot | JobResult):
        return result
    events = [result] if isinstance(result, ImageStreamEvent) else list(result)
    if not all(isinstance(e, ImageStreamEvent) for e in events):
        raise ValidationError("result", type(result).__name__, "a result or stream events")
    done = [e for e in events if e.completed]
    if not done:
        raise ValidationError("result", f"{len(events)} events", "no completed image among them")
    first = done[0]
    return ImagesResponse(
        created=first.created_at or 0,
        data=tuple(ImageData(b64_json=e.b64_json) for e in done),
        usage=first.usage,
        background=first.background,
        output_format=first.output_format,
        quality=first.quality,
        size=first.size,
    )
