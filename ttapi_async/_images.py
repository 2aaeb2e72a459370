"""Judging image bytes: type, dimensions, transparency, and checks on the way to disk.

Strictly private, and pure: nothing here reads or writes a file or a socket. aiohttp's
multipart writer does not guess content types, and OpenAI-style edit endpoints reject
``application/octet-stream``, so the SDK reads the type from the bytes themselves (never
from a file name, which may lie). Dimensions come from the ``imagesize`` library, which
reads only the headers. :class:`ImageCheck` judges a download or a decoded ``b64_json``
chunk by chunk (Content-Type, size cap, magic bytes, SHA-256) and hands each chunk on to
a sink it is given; the download pipeline (:mod:`._downloads`) supplies the I/O.
"""

from __future__ import annotations

import binascii
import hashlib
import io
import struct
from collections.abc import Callable, Iterator, Mapping
from typing import Final

import attrs
import imagesize

from ._errors import ResponseFormatError, excerpt


__all__ = ["EXTENSIONS", "ImageCheck", "ImageInfo", "b64_slices", "sniff", "sniff_mime"]

#: File name extension for each MIME type the image endpoints deal in.
EXTENSIONS = {"image/png": "png", "image/jpeg": "jpg", "image/webp": "webp", "image/gif": "gif"}

_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
#: Bytes needed to tell PNG, JPEG, WebP and GIF apart (WebP needs 12).
_MAGIC_LEN: Final = 16
#: Content types accepted besides ``image/*``. S3 serves ``binary/octet-stream`` for
#: objects stored without a type; the magic bytes decide in any case.
_BINARY_TYPES: Final = frozenset({"application/octet-stream", "binary/octet-stream"})
#: Base64 characters decoded at a time: a multiple of 4, so slices decode on their own.
_B64_SLICE: Final = 1 << 16


@attrs.frozen
class ImageInfo:
    """What the bytes of one image say about it."""

    mime: str
    width: int
    height: int
    size: int
    has_alpha: bool
    #: The file the bytes were read from, when there was one: messages name it.
    name: str | None = attrs.field(default=None, eq=False)

    def describe(self) -> str:
        """A short human description, used in validation messages (never the bytes)."""
        kind = EXTENSIONS.get(self.mime, self.mime)
        if self.width < 0:
            what = f"{self.size} bytes, not an image"
        else:
            what = f"{kind} {self.width}x{self.height}, {self.size} bytes"
        return f"{self.name} ({what})" if self.name else f"<{what}>"


def sniff_mime(data: bytes) -> str:
    """Return the MIME type named by the magic bytes, or ``application/octet-stream``."""
    if data.startswith(_PNG_MAGIC):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    if data[:6] in {b"GIF87a", b"GIF89a"}:
        return "image/gif"
    return "application/octet-stream"


def _png_has_alpha(data: bytes) -> bool:
    """True when a PNG has an alpha channel (colour type 4 or 6) or a tRNS chunk."""
    # IHDR is always first: 8 magic + 4 length + 4 type, then width, height, depth, colour type.
    if len(data) < 26:  # noqa: PLR2004
        return False
    if data[25] in {4, 6}:
        return True
    pos = 8
    while pos + 8 <= len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        ctype = data[pos + 4 : pos + 8]
        if ctype == b"tRNS":
            return True
        if ctype in {b"IDAT", b"IEND"}:
            return False  # tRNS must come before the image data
        pos += 12 + length
    return False


def _webp_has_alpha(data: bytes) -> bool:
    chunk = data[12:16]
    if chunk == b"VP8L" and len(data) > 24:  # noqa: PLR2004
        return bool(data[24] & 0x10)  # alpha_is_used bit of the VP8L header
    if chunk == b"VP8X" and len(data) > 20:  # noqa: PLR2004
        return bool(data[20] & 0x10)  # ALPHA flag
    return False


def sniff(data: bytes, name: str | None = None) -> ImageInfo:
    """Read MIME type, dimensions and transparency from image bytes.

    Unknown formats come back as ``application/octet-stream`` with dimensions -1; the
    validation rules then name the problem. ``name``: the file the bytes came from.
    """
    mime = sniff_mime(data)
    width = height = -1
    if mime != "application/octet-stream":
        try:
            width, height = imagesize.get(io.BytesIO(data))
        except (ValueError, OSError, struct.error):
            width = height = -1
    if mime == "image/png":
        alpha = _png_has_alpha(data)
    elif mime == "image/webp":
        alpha = _webp_has_alpha(data)
    else:
        alpha = False
    return ImageInfo(
        mime=mime, width=width, height=height, size=len(data), has_alpha=alpha, name=name
    )


class ImageCheck:
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


def b64_slices(b64: str) -> Iterator[bytes]:
    """Decode a ``b64_json`` image 64 KiB of base64 at a time, never whole next to ``b64``.

    Raises:
        ResponseFormatError: not valid base64 (whitespace and misplaced padding included).
    """
    for start in range(0, len(b64), _B64_SLICE):
        try:
            # strict_mode: junk characters and misplaced padding are errors, not bytes
            # silently dropped.
            chunk = binascii.a2b_base64(b64[start : start + _B64_SLICE], strict_mode=True)
        except (binascii.Error, ValueError) as exc:
            raise ResponseFormatError(
                "an image's b64_json is not valid base64", status=200
            ) from exc
        yield chunk
