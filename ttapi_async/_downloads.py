"""Saving results to disk: streamed, checked, never half-written, never overwriting.

Strictly private; users call :meth:`ttapi_async.Client.save`. TTAPI and DALL-E image URLs
expire after about an hour, so results are saved as they arrive. This module is the
pipeline; the parts it joins live beside it. One image goes through:

1. a ``.part-*`` temporary file made in the target folder (:class:`._files.PartFile`).
   Inside a journaled bulk run it is ``.part-<run id>-*``: the run passes its id as
   ``run_id`` (or, for now, saves inside :func:`tagged_parts`), and the next run of that
   journal removes exactly those leftovers, never another save's file;
2. its bytes, as HTTP chunks or as base64 decoded slice by slice, pass an
   :class:`._images.ImageCheck` (Content-Type, size cap, SHA-256, magic bytes) on their
   way into that file. These writes are page-cache writes of at most 64 KiB, cheap
   enough for the loop thread;
3. in a worker thread: ``fsync``, then the first free final name (``<stem>.<ext>``,
   ``<stem>-2.<ext>``, ...: :meth:`._files.PartFile.commit`), the folder is synced (best
   effort), and the JSON sidecar (:mod:`._sidecar`) is written atomically next to the
   image.

Any error or cancellation before step 3 removes the temporary file, so there is never a
half-written file under a final name nor a stray ``.part-*`` file. A failure of the local
disk (full, permission denied, a folder that is a file) is raised as
:class:`~ttapi_async.StorageError`, which is also an ``OSError``. A cancellation that
arrives during step 3 lets it finish (worker threads cannot be interrupted): the image
is then complete, with its sidecar, though the caller sees the cancellation.

This module does no HTTP itself: :meth:`Transport.stream` does, without the key.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import functools
import os
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Final

import anyio
import anyio.lowlevel
import imagesize

from . import _sidecar
from ._errors import (
    ImageUnavailableError,
    Redactor,
    RequestTimeout,
    ResponseFormatError,
    TTAPIError,
    ValidationError,
    excerpt,
    public_url,
)
from ._files import (
    MAX_STEM_BYTES,
    PartFile,
    check_stem,
    fsync_dir,
    make_folder,
    part_prefix,
    safe_stem,
    sidecar_path,
    storage_errors,
    write_atomic,
)
from ._http import RawResponse, SendState, Transport
from ._images import EXTENSIONS, ImageCheck, b64_slices
from ._models import ImageData, ImagesResponse, JobResult, JobSnapshot, SavedImage
from ._protocol import parse_error
from ._sidecar import NO_SECRETS, clean_metadata


__all__ = [
    "DEFAULT_MAX_BYTES",
    "fetch_bytes",
    "part_prefix",
    "save_b64",
    "save_result",
    "save_url",
    "tagged_parts",
]

#: Largest image saved or downloaded unless the caller says otherwise.
DEFAULT_MAX_BYTES: Final = 64 * 1024 * 1024

#: The run id of the journaled bulk run whose tasks are saving (None: not in a run).
_RUN_ID: Final[ContextVar[str | None]] = ContextVar("ttapi_async_run_id", default=None)
#: A download answering these has expired or never existed (S3-style signed URLs say 403).
_GONE: Final = frozenset({403, 404, 410})


@contextlib.contextmanager
def tagged_parts(run_id: str | None) -> Iterator[None]:
    """Tag the temporary files of saves made in this block, and in tasks started in it.

    The older way for a bulk run to tag its saves (it starts its workers inside this
    block with its journal's run id); an explicit ``run_id`` given to :func:`save_result`
    wins over it. A user's own ``Client.save`` elsewhere keeps untagged names no sweep
    touches.
    """
    token = _RUN_ID.set(run_id)
    try:
        yield
    finally:
        _RUN_ID.reset(token)


def _part_file(folder: Path, run_id: str | None) -> PartFile:
    """A temporary file tagged with ``run_id``, else with the enclosing :func:`tagged_parts`."""
    return PartFile(folder, part_prefix(run_id if run_id is not None else _RUN_ID.get()))


def _dimensions(path: Path) -> tuple[int | None, int | None]:
    """Pixel size from the image header (stored size: EXIF rotation is not applied)."""
    width, height = imagesize.get(path, exif_rotation=False)
    if width < 0 or height < 0:
        return None, None
    return int(width), int(height)


# ----------------------------------------------------------------------------- pipeline


def _commit(
    part: PartFile,
    folder: Path,
    stem: str,
    check: ImageCheck,
    mime: str,
    *,
    source: str,
    url: str | None,
    meta: dict[str, Any] | None,
) -> SavedImage:
    """Place the image and write its sidecar (blocking: run in a worker thread).

    All or nothing: if the sidecar cannot be written, the placed image is removed again.
    """
    path = part.commit(folder, stem, EXTENSIONS[mime], sidecar=meta is not None)
    try:
        width, height = _dimensions(path)
        saved = SavedImage(
            path=path,
            sidecar=sidecar_path(path) if meta is not None else None,
            sha256=check.sha256,
            size=check.size,
            mime=mime,
            width=width,
            height=height,
            source=source,
            url=url,
        )
        if meta is not None and saved.sidecar is not None:
            data = _sidecar.render(saved, meta, saved_at=dt.datetime.now(dt.UTC))
            write_atomic(saved.sidecar, data, prefix=part.prefix)
        fsync_dir(folder)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return saved


async def _save(
    fill: Callable[[ImageCheck], Awaitable[object]],
    directory: str | os.PathLike[str],
    stem: str,
    *,
    source: str,
    url: str | None,
    sidecar: bool,
    metadata: Mapping[str, Any] | None,
    max_bytes: int,
    redactor: Redactor,
    run_id: str | None,
) -> SavedImage:
    """Let ``fill`` write a temporary file through an :class:`ImageCheck`, then place it.

    Any error or cancellation before the placing removes the temporary file.
    """
    meta = clean_metadata(metadata, redactor) if sidecar else None
    with storage_errors("saving an image"):
        folder = make_folder(directory)
        part = _part_file(folder, run_id)
        try:
            check = ImageCheck(part.write, max_bytes=max_bytes)
            await fill(check)
            mime = check.finish()
            # fsync, link and the sidecar block on the disk: a worker thread, not the loop.
            return await anyio.to_thread.run_sync(
                lambda: _commit(part, folder, stem, check, mime, source=source, url=url, meta=meta)
            )
        except BaseException:
            part.discard()
            raise


async def _stream(
    transport: Transport,
    url: str,
    check: ImageCheck,
    *,
    max_bytes: int,
    deadline: float | None,
) -> RawResponse:
    """Stream ``url`` into ``check`` by ``deadline``; raise the SDK error of a bad reply."""
    state = SendState()
    try:
        async with asyncio.timeout_at(deadline):
            raw = await transport.stream(
                url, state, check, max_bytes=max_bytes, check_headers=check.headers
            )
    except TimeoutError as exc:
        if isinstance(exc, TTAPIError):  # already the SDK's (a mapped read timeout)
            raise
        raise RequestTimeout(
            "the image download did not finish within its timeout", request_sent=state.connected
        ) from exc
    if raw.status in _GONE:
        raise ImageUnavailableError(
            url, status=raw.status, headers=raw.headers, body=excerpt(raw.body)
        )
    if not 200 <= raw.status < 300:  # noqa: PLR2004
        raise parse_error(raw.status, raw.headers, raw.body, operation="download")
    return raw


async def fetch_bytes(
    transport: Transport,
    url: str,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    deadline: float | None = None,
) -> bytes:
    """Download an image into memory with the checks of :func:`save_url` (no file).

    Raises:
        ImageUnavailableError: 403, 404 or 410 (the URL expired or never existed).
        ResponseFormatError: not an image (by Content-Type or bytes), or over ``max_bytes``.
        APIStatusError: any other error status. APIConnectionError: no complete reply.
    """
    chunks: list[bytes] = []
    check = ImageCheck(chunks.append, max_bytes=max_bytes)
    await _stream(transport, url, check, max_bytes=max_bytes, deadline=deadline)
    check.finish()
    return b"".join(chunks)


async def save_url(
    transport: Transport,
    url: str,
    directory: str | os.PathLike[str],
    stem: str,
    *,
    sidecar: bool = True,
    metadata: Mapping[str, Any] | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
    deadline: float | None = None,
    redactor: Redactor = NO_SECRETS,
    run_id: str | None = None,
) -> SavedImage:
    """Stream one image URL (without the API key) into ``directory/<stem>.<ext>``.

    The extension comes from the bytes; if the name is taken, ``<stem>-2.<ext>`` and so
    on. ``metadata`` goes into the sidecar after :func:`._sidecar.clean_metadata` (with
    ``redactor``). ``deadline`` is an event-loop time (None: no limit) for the download;
    placing the file after it is not cut short. ``run_id`` (a journaled bulk run's)
    tags the temporary file; None: the enclosing :func:`tagged_parts` tag, if any.

    Raises:
        ImageUnavailableError: 403, 404 or 410: the URL expired (about an hour on TTAPI
            and DALL-E) or never existed. The message names host and path, never the
            query string.
        ResponseFormatError: not an image (Content-Type or bytes), or over ``max_bytes``.
        APIStatusError: any other error status.
        APIConnectionError: no complete reply (refused, dropped mid-body, timed out).
        ValidationError: ``stem`` or ``directory`` is not usable as a name.
        StorageError: the file could not be written (an ``OSError`` too).
    """
    check_stem(stem)
    return await _save(
        lambda check: _stream(transport, url, check, max_bytes=max_bytes, deadline=deadline),
        directory,
        stem,
        source="url",
        # A server may put anything in an image URL's path, the key included.
        url=redactor.redact(public_url(url)),
        sidecar=sidecar,
        metadata=metadata,
        max_bytes=max_bytes,
        redactor=redactor,
        run_id=run_id,
    )


async def save_b64(
    b64: str,
    directory: str | os.PathLike[str],
    stem: str,
    *,
    sidecar: bool = True,
    metadata: Mapping[str, Any] | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
    redactor: Redactor = NO_SECRETS,
    run_id: str | None = None,
) -> SavedImage:
    """Decode a ``b64_json`` image into ``directory/<stem>.<ext>``, slice by slice.

    The decoded image is never held whole in memory next to the string: 64 KiB of base64
    at a time goes through the checks into the file. Naming, sidecar and ``run_id`` as
    :func:`save_url`.

    Raises:
        ResponseFormatError: not valid base64 (whitespace included), not an image, or
            over ``max_bytes``.
        ValidationError: ``stem`` or ``directory`` is not usable as a name.
        StorageError: the file could not be written (an ``OSError`` too).
    """
    check_stem(stem)
    if len(b64) // 4 * 3 > max_bytes + 2:  # +2: up to two of those bytes are padding
        raise ResponseFormatError(f"the image is larger than {max_bytes} bytes", status=200)
    return await _save(
        functools.partial(_decode, b64),
        directory,
        stem,
        source="b64_json",
        url=None,
        sidecar=sidecar,
        metadata=metadata,
        max_bytes=max_bytes,
        redactor=redactor,
        run_id=run_id,
    )


async def _decode(b64: str, check: ImageCheck) -> None:
    for chunk in b64_slices(b64):
        check(chunk)
        await anyio.lowlevel.checkpoint()  # a large image must not hog the loop


def _default_stem(
    result: ImagesResponse | JobSnapshot | JobResult, metadata: Mapping[str, Any] | None
) -> str:
    prompt = (metadata or {}).get("prompt")
    if isinstance(prompt, str) and prompt:
        return safe_stem(prompt)
    if isinstance(result, ImagesResponse):
        if result.prompt:
            return safe_stem(result.prompt)
        return safe_stem(next((d.revised_prompt for d in result.data if d.revised_prompt), "image"))
    return safe_stem(result.prompt or result.job_id)


async def save_result(
    transport: Transport,
    result: ImagesResponse | JobSnapshot | JobResult,
    directory: str | os.PathLike[str],
    *,
    stem: str | None = None,
    sidecar: bool = True,
    metadata: Mapping[str, Any] | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
    deadline: float | None = None,
    redactor: Redactor = NO_SECRETS,
    run_id: str | None = None,
) -> list[SavedImage]:
    """Save every image of a result, one after another, as ``<stem>-<i>.<ext>``.

    ``stem`` defaults to a safe slug of ``metadata["prompt"]``, else of the result's
    prompt, revised prompt or job id. Each sidecar holds
    :func:`._sidecar.result_metadata`, then ``metadata`` over it, then the file's own
    facts (sha256, bytes, mime, size, source, query-less url, saved_at). ``deadline``
    bounds all the downloads together. ``run_id`` is the journaled bulk run the saves
    belong to: their temporary files are named ``.part-<run id>-*`` so the next run of
    that journal can sweep its own leftovers (None: the enclosing :func:`tagged_parts`
    tag, if any, else untagged names no sweep touches).

    Images are saved in order; if one fails, the error is raised and the ones before it
    stay saved (complete, with their sidecars).

    Raises:
        ValidationError: a job result without an image, or a bad ``stem``.
        Otherwise as :func:`save_url` and :func:`save_b64`.
    """
    # The result's own hook URL and token (a snapshot echoes them) join what is hidden.
    hidden = _sidecar.hiding_hooks(result, redactor)
    sources: list[ImageData | str]
    if isinstance(result, ImagesResponse):
        sources = list(result.data)
    elif result.image_url:
        sources = [result.image_url]
    else:
        status = result.status.value if isinstance(result, JobSnapshot) else "no image_url"
        raise ValidationError("result", status, "the job has no image to save")
    base = stem if stem is not None else _default_stem(result, metadata)
    check_stem(base, MAX_STEM_BYTES)
    saved: list[SavedImage] = []
    for i, item in enumerate(sources):
        meta = {**_sidecar.result_metadata(result, i), **(metadata or {})}
        name = f"{base}-{i}"
        if isinstance(item, ImageData) and item.b64_json is not None:
            one = await save_b64(
                item.b64_json,
                directory,
                name,
                sidecar=sidecar,
                metadata=meta,
                max_bytes=max_bytes,
                redactor=hidden,
                run_id=run_id,
            )
        else:
            url = item if isinstance(item, str) else item.url
            if url is None:
                raise ResponseFormatError("an image item has neither b64_json nor url", status=200)
            one = await save_url(
                transport,
                url,
                directory,
                name,
                sidecar=sidecar,
                metadata=meta,
                max_bytes=max_bytes,
                deadline=deadline,
                redactor=hidden,
                run_id=run_id,
            )
        saved.append(one)
    return saved
