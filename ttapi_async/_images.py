"""Sniffing image bytes: MIME type, dimensions, transparency. Pure functions, no I/O.

Strictly private. aiohttp's multipart writer does not guess content types, and OpenAI-style
edit endpoints reject ``application/octet-stream``, so the SDK reads the type from the
bytes themselves (never from a file name, which may lie). Dimensions come from the
``imagesize`` library, which reads only the headers.
"""

from __future__ import annotations

import io
import struct

import attrs
import imagesize


__all__ = ["EXTENSIONS", "ImageInfo", "sniff", "sniff_mime"]

#: File name extension for each MIME type the image endpoints deal in.
EXTENSIONS = {"image/png": "png", "image/jpeg": "jpg", "image/webp": "webp", "image/gif": "gif"}

_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@attrs.frozen
class ImageInfo:
    """What the bytes of one image say about it."""

    mime: str
    width: int
    height: int
    size: int
    has_alpha: bool

    def describe(self) -> str:
        """A short human description, used in validation messages (never the bytes)."""
        kind = EXTENSIONS.get(self.mime, self.mime)
        return f"<{kind} {self.width}x{self.height}, {self.size} bytes>"


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


def sniff(data: bytes) -> ImageInfo:
    """Read MIME type, dimensions and transparency from image bytes.

    Unknown formats come back as ``application/octet-stream`` with dimensions -1; the
    validation rules then name the problem.
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
    return ImageInfo(mime=mime, width=width, height=height, size=len(data), has_alpha=alpha)
