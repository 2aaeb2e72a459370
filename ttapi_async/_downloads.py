"""Saving results to disk: streamed, checked, never half-written, never overwriting.

Strictly private; users call :meth:`ttapi_async.Client.save`. TTAPI and DALL-E image URLs
expire after about an hour, so results are saved as they arrive. One image goes through:

1. a ``.part-*`` temporary file made in the target folder (so placing it later is a
   same-filesystem link, never a copy). Inside a journaled bulk run it is
   ``.part-<run id>-*`` (see :func:`tagged_parts`): the next run of that journal removes
   exactly those leftovers, never another save's file;
2. its bytes, as HTTP chunks or as base64 decoded slice by slice, pass an
   :class:`_ImageCheck` (size cap, SHA-256, magic bytes) on their way into that file.
   These writes are page-cache writes of at most 64 KiB, cheap enough for the loop thread;
3. in a worker thread: ``fsync``, then ``os.link`` to the first free name
   (``<stem>.<ext>``, ``<stem>-2.<ext>``, ...; a link fails if the name exists, so two
   processes never get the same one), then the temporary name goes, the folder is
   synced (best effort), and the JSON sidecar is written atomically next to the image.

Any error or cancellation before step 3 removes the temporary file, so there is never a
half-written file under a final name nor a stray ``.part-*`` file. A failure of the local
disk (full, permission denied, a folder that is a file) is raised as
:class:`~ttapi_async.StorageError`, which is also an ``OSError``. A cancellation that
arrives during step 3 lets it finish (worker threads cannot be interrupted): the image
is then complete, with its sidecar, though the caller sees the cancellation.

The sidecar holds what a bulk run needs to find an image's origin again (prompt, model,
parameters, job id, timings) and what proves the file intact (sha256, bytes). It never
holds the API key, a hook URL or a hook token: :func:`clean_metadata` drops keys that
name them and blanks known secret strings wherever they appear.

This module does no HTTP itself: :meth:`AiohttpTransport.stream` does, without the key.
"""

from __future__ import annotations

import asyncio
import binascii
import contextlib
import datetime as dt
import enum
import errno
import hashlib
import json
import math
import os
import re
import tempfile
from collections.abc import Callable, Iterator, Mapping
from contextvars import ContextVar
from pathlib import Path, PurePath
from typing import Any, Final

import anyio
import anyio.lowlevel
import attrs
import imagesize

from ._errors import (
    ImageUnavailableError,
    Redactor,
    RequestTimeout,
    ResponseFormatError,
    StorageError,
    TTAPIError,
    ValidationError,
    excerpt,
    public_url,
)
from ._files import safe_stem, write_atomic
from ._images import EXTENSIONS, sniff_mime
from ._models import ImageData, ImagesResponse, JobResult, JobSnapshot, SavedImage
from ._protocol import parse_error
from ._transport import AiohttpTransport, RawResponse, SendState


__all__ = [
    "DEFAULT_MAX_BYTES",
    "clean_metadata",
    "fetch_bytes",
    "part_prefix",
    "result_metadata",
    "save_b64",
    "save_result",
    "save_url",
    "tagged_parts",
]

#: Largest image saved or downloaded unless the caller says otherwise.
DEFAULT_MAX_BYTES: Final = 64 * 1024 * 1024

_PART_PREFIX: Final = ".part-"
#: The run id of the journaled bulk run whose tasks are saving (None: not in a run).
_RUN_ID: Final[ContextVar[str | None]] = ContextVar("ttapi_async_run_id", default=None)
#: Base64 characters decoded at a time: a multiple of 4, so slices decode on their own.
_B64_SLICE: Final = 1 << 16
#: Bytes needed to tell PNG, JPEG, WebP and GIF apart (WebP needs 12).
_MAGIC_LEN: Final = 16
#: Stems are bounded so that ``-N``, the extension and ``.json`` stay under 255 bytes.
_MAX_STEM_BYTES: Final = 200
#: Names tried after the first is taken, before giving up.
_MAX_NAME_TRIES: Final = 10_000
#: A download answering these has expired or never existed (S3-style signed URLs say 403).
_GONE: Final = frozenset({403, 404, 410})
#: Content types accepted besides ``image/*``. S3 serves ``binary/octet-stream`` for
#: objects stored without a type; the magic bytes decide in any case.
_BINARY_TYPES: Final = frozenset({"application/octet-stream", "binary/octet-stream"})
#: ``os.link`` errors meaning "this filesystem has no hard links" (FAT, some FUSE/SMB).
_NO_HARD_LINKS: Final = frozenset(
    {errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.ENOSYS, errno.EINVAL}
)
#: Metadata keys never written (compared lower-cased, letters only, by suffix): hook URLs
#: and tokens let anyone post results to the receiver; keys bill the account.
_SECRET_KEYS: Final = ("hookurl", "hooktoken", "apikey", "authorization")
#: Secret strings shorter than this are not blanked (blanking "a" everywhere helps no one).
_MIN_SECRET: Final = 8
#: No secrets known (a save outside a client): only ``hookUrl=...`` in text is hidden.
_NO_SECRETS: Final = Redactor()
_Hide = Callable[[str], str]
_MAX_DEPTH: Final = 32
_NOT_LETTERS: Final = re.compile(r"[^a-z]")


# ----------------------------------------------------------------------------- checks


class _ImageCheck:
    """Counts, hashes and checks image bytes on their way to ``write``.

    Call it with each chunk; :meth:`headers` checks an HTTP reply before its body, and
    :meth:`finish` checks the end. The magic bytes are checked as soon as enough have
    arrived, so a web page is refused after its first chunk, not after 64 MiB.
    """

    __slots__ = ("_head", "_max", "_sha", "_write", "mime", "size", "status")

    def __init__(self, write: Callable[[bytes], object], *, max_bytes: int) -> None:
        self._write = write
        self._max = max_bytes
        self._sha = hashlib.sha256()
        self._head = b""
        self.size = 0
        self.mime: str | None = None
        self.status = 200

    def headers(self, status: int, headers: Mapping[str, str]) -> None:
        """Refuse a reply whose Content-Type says it is not an image (absent is fine)."""
        self.status = status
        ctype = headers.get("Content-Type") or ""
        mime = ctype.partition(";")[0].strip().lower()
        if mime and not mime.startswith("image/") and mime not in _BINARY_TYPES:
            raise ResponseFormatError(
                f"the download is {excerpt(mime, 80)!r}, not an image", status=status
            )

    def __call__(self, chunk: bytes) -> None:
        """Check, hash and pass on one chunk."""
        if not chunk:
            return
        self.size += len(chunk)
        if self.size > self._max:
            raise ResponseFormatError(
                f"the image is larger than {self._max} bytes", status=self.status
            )
        if self.mime is None:
            self._head += chunk[: _MAGIC_LEN - len(self._head)]
            if len(self._head) >= _MAGIC_LEN:
                self._sniff()
        self._sha.update(chunk)
        self._write(chunk)

    def _sniff(self) -> None:
        mime = sniff_mime(self._head)
        if mime not in EXTENSIONS:
            raise ResponseFormatError(
                "the data is not a PNG, JPEG, WebP or GIF image",
                status=self.status,
                body=excerpt(self._head, 40),
            )
        self.mime = mime

    def finish(self) -> str:
        """Check the whole image arrived as an image; return its MIME type."""
        if self.size == 0:
            raise ResponseFormatError("the image is empty", status=self.status)
        if self.mime is None:  # shorter than _MAGIC_LEN: sniff what there is
            self._sniff()
        assert self.mime is not None  # noqa: S101 - _sniff sets it or raises
        return self.mime

    @property
    def sha256(self) -> str:
        """Hex SHA-256 of the bytes so far."""
        return self._sha.hexdigest()


# ----------------------------------------------------------------------------- files


def part_prefix(run_id: str | None) -> str:
    """The name prefix of temporary files saved for ``run_id`` (None: outside any run).

    ``.part-<run id>-`` inside a journaled bulk run, so the next run of that journal can
    sweep exactly its own leftovers; plain ``.part-`` otherwise, which no sweep matches
    (``mkstemp`` appends 8 random characters, never ``<run id>-``).
    """
    return _PART_PREFIX if run_id is None else f"{_PART_PREFIX}{run_id}-"


@contextlib.contextmanager
def tagged_parts(run_id: str | None) -> Iterator[None]:
    """Tag the temporary files of saves made in this block, and in tasks started in it.

    A bulk run starts its workers inside it with its journal's run id. A context
    variable rather than a parameter: the run saves through the public ``Client.save``,
    and a user's own ``Client.save`` elsewhere keeps untagged names no sweep touches.
    """
    token = _RUN_ID.set(run_id)
    try:
        yield
    finally:
        _RUN_ID.reset(token)


@contextlib.contextmanager
def _storage_errors(what: str) -> Iterator[None]:
    """Raise a local ``OSError`` met in the block as :class:`StorageError` (an OSError too)."""
    try:
        yield
    except OSError as exc:
        if isinstance(exc, TTAPIError):  # RequestTimeout is a TimeoutError, so an OSError
            raise
        raise StorageError.wrap(exc, what) from exc


class _PartFile:
    """A ``.part-*`` temporary file in the target folder, removed unless committed."""

    __slots__ = ("_file", "committed", "path", "prefix")

    def __init__(self, folder: Path) -> None:
        self.prefix = part_prefix(_RUN_ID.get())
        fd, name = tempfile.mkstemp(prefix=self.prefix, dir=folder)
        self.path = Path(name)
        self.committed = False
        try:
            self._file = os.fdopen(fd, "wb")
        except BaseException:
            os.close(fd)
            self.path.unlink(missing_ok=True)
            raise

    def write(self, data: bytes) -> None:
        """Append bytes (a page-cache write; the fsync comes at commit)."""
        self._file.write(data)

    def discard(self) -> None:
        """Close and remove the temporary file; never raises (it runs while unwinding)."""
        with contextlib.suppress(OSError):
            self._file.close()
        if not self.committed:
            with contextlib.suppress(OSError):
                self.path.unlink(missing_ok=True)

    def commit(self, folder: Path, stem: str, ext: str, *, sidecar: bool) -> Path:
        """Make the bytes durable and give them the first free final name. Blocking."""
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        # mkstemp creates 0600; a saved image is an ordinary, readable file.
        self.path.chmod(0o644)
        final = _place(self.path, folder, stem, ext, sidecar=sidecar)
        self.committed = True
        return final


def _sidecar_path(image: Path) -> Path:
    return image.with_name(image.name + ".json")


def _place(tmp: Path, folder: Path, stem: str, ext: str, *, sidecar: bool) -> Path:
    """Link ``tmp`` to ``<stem>.<ext>``, or ``<stem>-2.<ext>``, ... whichever is free.

    ``os.link`` fails when the name exists, so no file is ever overwritten, even by
    another process saving into the same folder at the same moment.
    """
    for n in range(1, _MAX_NAME_TRIES + 1):
        target = folder / (f"{stem}.{ext}" if n == 1 else f"{stem}-{n}.{ext}")
        if sidecar and _sidecar_path(target).exists():
            continue  # an orphaned sidecar: its name stays its own
        try:
            os.link(tmp, target)
        except FileExistsError:
            continue
        except OSError as exc:
            if exc.errno not in _NO_HARD_LINKS:
                raise
            if not _reserve(target):
                continue
            # No hard links here. The name is reserved by an empty file (O_EXCL, so still
            # no overwrite of anyone else's file), then replaced by the image. The race:
            # for that instant, and forever if the process dies in it, the final name
            # holds an empty file rather than the image.
            try:
                tmp.replace(target)
            except BaseException:
                target.unlink(missing_ok=True)
                raise
            return target
        try:
            tmp.unlink()
        except BaseException:
            target.unlink(missing_ok=True)  # all or nothing: the caller removes tmp
            raise
        return target
    raise FileExistsError(errno.EEXIST, f"no free name for {stem}.{ext} in {folder}")


def _reserve(target: Path) -> bool:
    try:
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        return False
    os.close(fd)
    return True


def _fsync_dir(folder: Path) -> None:
    """Make a new directory entry durable; best effort (Windows cannot open folders)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _dimensions(path: Path) -> tuple[int | None, int | None]:
    """Pixel size from the image header (stored size: EXIF rotation is not applied)."""
    width, height = imagesize.get(path, exif_rotation=False)
    if width < 0 or height < 0:
        return None, None
    return int(width), int(height)


def _check_stem(stem: str, limit: int = _MAX_STEM_BYTES + 10) -> None:
    """Refuse a stem that is not one plain file name (``limit``: its length in bytes).

    :func:`save_result` checks its base against :data:`_MAX_STEM_BYTES`; a file's stem
    may be a little longer (``-<index>``).
    """
    if (
        not stem
        or stem.startswith(".")  # hidden files, and .part-* is this module's namespace
        or any(c in stem for c in "/\\\0")
        or len(stem.encode("utf-8", "surrogatepass")) > limit
        or not _is_file_name(stem)
    ):
        raise ValidationError(
            "stem",
            stem,
            "a plain file-name stem is required: no path separator, NUL or lone surrogate, "
            f"not starting with a dot, at most {limit} bytes",
        )


def _is_file_name(text: str) -> bool:
    """True if the OS can take ``text`` as a name (a lone surrogate cannot)."""
    try:
        os.fsencode(text)
    except UnicodeEncodeError:
        return False
    return True


def _folder(directory: str | os.PathLike[str]) -> Path:
    """Make the target folder; a path the OS cannot take is a ValidationError."""
    folder = Path(directory)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except ValueError as exc:  # a NUL byte, or a lone surrogate the OS cannot encode
        raise ValidationError("directory", str(directory), f"not a usable path ({exc})") from exc
    return folder


# ----------------------------------------------------------------------------- metadata


def clean_metadata(
    metadata: Mapping[str, Any] | None, redactor: Redactor = _NO_SECRETS
) -> dict[str, Any]:
    """A JSON-ready copy of ``metadata`` with nothing secret left in it.

    Keys naming a hook URL, a hook token, an API key or an Authorization header
    (``hookUrl``, ``hook_url``, ``HOOK-TOKEN``, ``api_key``, ...: any case, any
    separators) are dropped at every depth. Every string goes through ``redactor`` (the
    client's: the API key, hook URLs and tokens become ``<hidden>``), and ``hookUrl=...``
    inside text is hidden as in error messages.

    Values become JSON: datetimes ISO 8601, timedeltas seconds, enums their value, paths
    strings, attrs instances dicts, bytes a length, NaN and infinities null; anything
    else its ``str()``.
    """
    return _clean_mapping(metadata or {}, redactor.redact, 0)


def _is_secret_key(key: str) -> bool:
    return _NOT_LETTERS.sub("", key.lower()).endswith(_SECRET_KEYS)


def _clean_mapping(value: Mapping[Any, Any], hide: _Hide, depth: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, item in value.items():
        name = key.value if isinstance(key, enum.Enum) else key
        name = hide(str(name))
        if _is_secret_key(name):
            continue
        out[name] = _clean(item, hide, depth + 1)
    return out


def _clean(value: Any, hide: _Hide, depth: int) -> Any:
    if depth > _MAX_DEPTH:
        return "<too deep>"
    if isinstance(value, enum.Enum):  # before int and str: IntEnum and StrEnum are both
        return _clean(value.value, hide, depth + 1)
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, str):
        return hide(value)
    if isinstance(value, Mapping):
        return _clean_mapping(value, hide, depth)
    if attrs.has(type(value)):
        return _clean_mapping(attrs.asdict(value, recurse=False), hide, depth)
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, PurePath):
        return hide(str(value))
    if isinstance(value, bytes | bytearray | memoryview):
        return f"<{len(value)} bytes>"
    if isinstance(value, list | tuple | set | frozenset):
        return [_clean(item, hide, depth + 1) for item in value]
    return hide(str(value))


def _iso_utc(timestamp: float) -> str | float:
    """ISO 8601 UTC of a Unix timestamp; the number itself when no date can show it."""
    try:
        return dt.datetime.fromtimestamp(timestamp, dt.UTC).isoformat()
    except (ValueError, OverflowError, OSError, TypeError):
        # Out of the platform's range (10**20, -10**20, NaN): the sidecar keeps what the
        # server sent (clean_metadata turns NaN and infinities into null).
        return timestamp


def result_metadata(
    result: ImagesResponse | JobSnapshot | JobResult, index: int = 0
) -> dict[str, Any]:
    """What a result itself says about its image ``index``, for the sidecar.

    The keys are always there (None when unknown) so every sidecar has one shape; the
    caller's metadata is laid over them. A hook URL is never taken from a snapshot.
    """
    meta: dict[str, Any] = {
        "kind": None,
        "prompt": None,
        "model": None,
        "parameters": None,
        "job_id": None,
        "index": index,
        # "index" is the caller's to redefine (a bulk run's item number); this one stays.
        "image_index": index,
    }
    if isinstance(result, ImagesResponse):
        item = result.data[index] if 0 <= index < len(result.data) else None
        echoed = {
            "size": result.size,
            "quality": result.quality,
            "output_format": result.output_format,
            "background": result.background,
        }
        meta.update(
            kind="images",
            parameters={k: v for k, v in echoed.items() if v is not None} or None,
            revised_prompt=item.revised_prompt if item is not None else None,
            created=_iso_utc(result.created) if result.created else None,
            usage=result.usage,
        )
        return meta
    meta.update(
        kind="4o-image",
        prompt=result.prompt,
        job_id=result.job_id,
        refer_images=[public_url(u) for u in result.refer_images],
        quota=result.quota,
        finished=result.finish_time,
    )
    if isinstance(result, JobResult):
        meta.update(elapsed=result.elapsed, delivered_by=result.source)
    return meta


# ----------------------------------------------------------------------------- pipeline


def _commit(
    part: _PartFile,
    folder: Path,
    stem: str,
    check: _ImageCheck,
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
        side = None
        if meta is not None:
            side = _sidecar_path(path)
            facts = {
                "file": path.name,
                "sha256": check.sha256,
                "bytes": check.size,
                "mime": mime,
                "width": width,
                "height": height,
                "source": source,
                "url": url,
                "saved_at": dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds"),
            }
            # The file's facts come first and win: metadata cannot misstate the bytes.
            doc = {**facts, **{k: v for k, v in meta.items() if k not in facts}}
            text = json.dumps(doc, indent=2, ensure_ascii=False, allow_nan=False)
            # A lone surrogate (a mis-decoded prompt or name) cannot be UTF-8; only
            # strings can hold one, and backslashreplace writes it as the JSON escape
            # \ud800, so the sidecar stays valid JSON that reads back the same string.
            data = (text + "\n").encode("utf-8", "backslashreplace")
            write_atomic(side, data, prefix=part.prefix)
        _fsync_dir(folder)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return SavedImage(
        path=path,
        sidecar=side,
        sha256=check.sha256,
        size=check.size,
        mime=mime,
        width=width,
        height=height,
        source=source,
        url=url,
    )


async def _finish(
    part: _PartFile,
    folder: Path,
    stem: str,
    check: _ImageCheck,
    *,
    source: str,
    url: str | None,
    meta: dict[str, Any] | None,
) -> SavedImage:
    mime = check.finish()
    # fsync, link and the sidecar block on the disk: a worker thread, not the loop.
    return await anyio.to_thread.run_sync(
        lambda: _commit(part, folder, stem, check, mime, source=source, url=url, meta=meta)
    )


async def _stream(
    transport: AiohttpTransport,
    url: str,
    check: _ImageCheck,
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
    transport: AiohttpTransport,
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
    check = _ImageCheck(chunks.append, max_bytes=max_bytes)
    await _stream(transport, url, check, max_bytes=max_bytes, deadline=deadline)
    check.finish()
    return b"".join(chunks)


async def save_url(
    transport: AiohttpTransport,
    url: str,
    directory: str | os.PathLike[str],
    stem: str,
    *,
    sidecar: bool = True,
    metadata: Mapping[str, Any] | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
    deadline: float | None = None,
    redactor: Redactor = _NO_SECRETS,
) -> SavedImage:
    """Stream one image URL (without the API key) into ``directory/<stem>.<ext>``.

    The extension comes from the bytes; if the name is taken, ``<stem>-2.<ext>`` and so
    on. ``metadata`` goes into the sidecar after :func:`clean_metadata` (with
    ``redactor``). ``deadline`` is an event-loop time (None: no limit) for the download;
    placing the file after it is not cut short.

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
    _check_stem(stem)
    meta = clean_metadata(metadata, redactor) if sidecar else None
    with _storage_errors("saving an image"):
        folder = _folder(directory)
        part = _PartFile(folder)
        try:
            check = _ImageCheck(part.write, max_bytes=max_bytes)
            await _stream(transport, url, check, max_bytes=max_bytes, deadline=deadline)
            return await _finish(
                part,
                folder,
                stem,
                check,
                source="url",
                # A server may put anything in an image URL's path, the key included.
                url=redactor.redact(public_url(url)),
                meta=meta,
            )
        except BaseException:
            part.discard()
            raise


async def save_b64(
    b64: str,
    directory: str | os.PathLike[str],
    stem: str,
    *,
    sidecar: bool = True,
    metadata: Mapping[str, Any] | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
    redactor: Redactor = _NO_SECRETS,
) -> SavedImage:
    """Decode a ``b64_json`` image into ``directory/<stem>.<ext>``, slice by slice.

    The decoded image is never held whole in memory next to the string: 64 KiB of base64
    at a time goes through the checks into the file. Naming and sidecar as
    :func:`save_url`.

    Raises:
        ResponseFormatError: not valid base64 (whitespace included), not an image, or
            over ``max_bytes``.
        ValidationError: ``stem`` or ``directory`` is not usable as a name.
        StorageError: the file could not be written (an ``OSError`` too).
    """
    _check_stem(stem)
    if len(b64) // 4 * 3 > max_bytes + 2:  # +2: up to two of those bytes are padding
        raise ResponseFormatError(f"the image is larger than {max_bytes} bytes", status=200)
    meta = clean_metadata(metadata, redactor) if sidecar else None
    with _storage_errors("saving an image"):
        folder = _folder(directory)
        part = _PartFile(folder)
        try:
            check = _ImageCheck(part.write, max_bytes=max_bytes)
            for start in range(0, len(b64), _B64_SLICE):
                try:
                    # strict_mode: junk characters and misplaced padding are errors, not
                    # bytes silently dropped.
                    chunk = binascii.a2b_base64(b64[start : start + _B64_SLICE], strict_mode=True)
                except (binascii.Error, ValueError) as exc:
                    raise ResponseFormatError(
                        "an image's b64_json is not valid base64", status=200
                    ) from exc
                check(chunk)
                await anyio.lowlevel.checkpoint()  # a large image must not hog the loop
            return await _finish(part, folder, stem, check, source="b64_json", url=None, meta=meta)
        except BaseException:
            part.discard()
            raise


def _default_stem(
    result: ImagesResponse | JobSnapshot | JobResult, metadata: Mapping[str, Any] | None
) -> str:
    prompt = (metadata or {}).get("prompt")
    if isinstance(prompt, str) and prompt:
        return safe_stem(prompt)
    if isinstance(result, ImagesResponse):
        return safe_stem(next((d.revised_prompt for d in result.data if d.revised_prompt), "image"))
    return safe_stem(result.prompt or result.job_id)


def _hook_secrets(result: ImagesResponse | JobSnapshot | JobResult) -> list[str]:
    hook = result.hook_url if isinstance(result, JobSnapshot) else None
    if not hook:
        return []
    # The token is the hook URL's last path segment (see WebhookReceiver.register). This
    # is the server's word: a short "secret" would hide every match of it in the sidecar.
    token = hook.rstrip("/").rsplit("/", 1)[-1]
    return [s for s in (hook, token) if len(s) >= _MIN_SECRET]


async def save_result(
    transport: AiohttpTransport,
    result: ImagesResponse | JobSnapshot | JobResult,
    directory: str | os.PathLike[str],
    *,
    stem: str | None = None,
    sidecar: bool = True,
    metadata: Mapping[str, Any] | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
    deadline: float | None = None,
    redactor: Redactor = _NO_SECRETS,
) -> list[SavedImage]:
    """Save every image of a result, one after another, as ``<stem>-<i>.<ext>``.

    ``stem`` defaults to a safe slug of ``metadata["prompt"]``, else of the result's
    prompt, revised prompt or job id. Each sidecar holds :func:`result_metadata`, then
    ``metadata`` over it, then the file's own facts (sha256, bytes, mime, size, source,
    query-less url, saved_at). ``deadline`` bounds all the downloads together.

    Images are saved in order; if one fails, the error is raised and the ones before it
    stay saved (complete, with their sidecars).

    Raises:
        ValidationError: a job result without an image, or a bad ``stem``.
        Otherwise as :func:`save_url` and :func:`save_b64`.
    """
    # The result's own hook URL and token (a snapshot echoes them) join what is hidden.
    hooks = _hook_secrets(result)
    hidden = redactor.with_literals(hooks) if hooks else redactor
    sources: list[ImageData | str]
    if isinstance(result, ImagesResponse):
        sources = list(result.data)
    elif result.image_url:
        sources = [result.image_url]
    else:
        status = result.status.value if isinstance(result, JobSnapshot) else "no image_url"
        raise ValidationError("result", status, "the job has no image to save")
    base = stem if stem is not None else _default_stem(result, metadata)
    _check_stem(base, _MAX_STEM_BYTES)
    saved: list[SavedImage] = []
    for i, item in enumerate(sources):
        meta = {**result_metadata(result, i), **(metadata or {})}
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
            )
        saved.append(one)
    return saved
