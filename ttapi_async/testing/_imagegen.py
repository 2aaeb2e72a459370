"""Real image bytes for the emulator, drawn with Pillow once per kind and then cached.

Strictly private. The emulator is benchmarked at thousands of requests per second, so no
request may encode an image: each ``(format, width, height, alpha)`` is drawn once per
process, and its bytes and base64 text are kept. The pictures are plain on purpose (a
flat background, a disc, a frame): they compress to a few kilobytes, which keeps the
emulator's replies cheap, yet they are real files any decoder opens at the asked size.
"""

from __future__ import annotations

import base64
import io
import struct
import threading
import zlib
from typing import Final

import attrs


try:
    from PIL import Image, ImageDraw
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "the TTAPI emulator draws real images with Pillow: pip install 'ttapi-async[testing]'"
    ) from exc


__all__ = [
    "JOB_SIZE",
    "MIME_TYPES",
    "TAG_KEYWORD",
    "Rendered",
    "cached",
    "image",
    "job_image",
    "read_tag",
    "tag_png",
]

#: Width and height of a 4o-image job result.
JOB_SIZE: Final = (1024, 1024)

#: MIME type of each output format the image endpoints produce.
MIME_TYPES: Final = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp"}

#: Keyword of the PNG text chunk that names the job an image belongs to.
TAG_KEYWORD: Final = b"ttapi-emulator-job"
_PNG_MAGIC: Final = b"\x89PNG\r\n\x1a\n"
# Magic (8) + the IHDR chunk (4 length + 4 type + 13 data + 4 CRC): PNG puts IHDR first.
_AFTER_IHDR: Final = 8 + 25

# One colour per format, so a test looking at a picture can tell them apart.
_BACKGROUND: Final = {"png": (52, 101, 164), "jpeg": (204, 102, 0), "webp": (78, 154, 6)}
_DISC: Final = (238, 238, 236)
_FRAME: Final = (46, 52, 54)


@attrs.frozen
class Rendered:
    """One drawn image: its bytes, the same bytes as base64 text, and its MIME type."""

    data: bytes = attrs.field(repr=False)
    b64: str = attrs.field(repr=False)
    mime: str
    width: int
    height: int


_cache: dict[tuple[str, int, int, bool], Rendered] = {}
# Rendering may run in a worker thread (a cache miss during a request); the lock keeps two
# threads from drawing the same kind twice. Reads of the dict need no lock.
_lock = threading.Lock()


def cached(fmt: str, width: int, height: int, *, alpha: bool) -> Rendered | None:
    """Return the image when it was drawn before, else None (never draws)."""
    return _cache.get((fmt, width, height, alpha))


def image(fmt: str, width: int, height: int, *, alpha: bool) -> Rendered:
    """Return the image of this kind, drawing it on first use (slow: call it off the loop).

    ``fmt`` is ``png``, ``jpeg`` or ``webp``; ``alpha`` asks for a transparent background
    (RGBA), which JPEG cannot carry and so ignores.
    """
    key = (fmt, width, height, alpha)
    found = _cache.get(key)
    if found is not None:
        return found
    with _lock:
        found = _cache.get(key)
        if found is None:
            found = _cache[key] = _render(fmt, width, height, alpha=alpha)
    return found


def _render(fmt: str, width: int, height: int, *, alpha: bool) -> Rendered:
    if fmt not in MIME_TYPES:
        raise ValueError(f"unknown image format {fmt!r}")
    alpha = alpha and fmt != "jpeg"
    mode = "RGBA" if alpha else "RGB"
    background = (0, 0, 0, 0) if alpha else _BACKGROUND[fmt]
    img = Image.new(mode, (width, height), background)
    draw = ImageDraw.Draw(img)
    side = min(width, height)
    border = max(2, side // 64)
    if not alpha:
        draw.rectangle((0, 0, width - 1, height - 1), outline=_FRAME, width=border)
    cx, cy, r = width // 2, height // 2, side // 4
    draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=_DISC, outline=_FRAME, width=border)
    draw.text((border * 3, border * 3), f"TTAPI emulator {width}x{height} {fmt}", fill=_FRAME)
    buf = io.BytesIO()
    if fmt == "png":
        img.save(buf, "PNG", optimize=False, compress_level=6)
    elif fmt == "jpeg":
        img.save(buf, "JPEG", quality=80)
    else:
        img.save(buf, "WEBP", quality=80)
    data = buf.getvalue()
    return Rendered(
        data=data,
        b64=base64.b64encode(data).decode("ascii"),
        mime=MIME_TYPES[fmt],
        width=width,
        height=height,
    )


def job_image() -> Rendered:
    """Return the picture every successful 4o-image job points to (a 1024x1024 PNG)."""
    return image("png", *JOB_SIZE, alpha=False)


def tag_png(data: bytes, text: str) -> bytes:
    """``data`` (a PNG) with a ``tEXt`` chunk ``TAG_KEYWORD: text`` right after IHDR.

    Any decoder ignores the chunk; the picture and its size stay the same.
    """
    payload = TAG_KEYWORD + b"\0" + text.encode("latin-1")
    chunk = (
        struct.pack(">I", len(payload))
        + b"tEXt"
        + payload
        + struct.pack(">I", zlib.crc32(b"tEXt" + payload))
    )
    return data[:_AFTER_IHDR] + chunk + data[_AFTER_IHDR:]


def read_tag(data: bytes) -> str | None:
    """The text of the ``TAG_KEYWORD`` chunk :func:`tag_png` wrote, or None (not tagged)."""
    if not data.startswith(_PNG_MAGIC):
        return None
    pos = len(_PNG_MAGIC)
    while pos + 8 <= len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        body = data[pos + 8 : pos + 8 + length]
        if kind == b"tEXt":
            keyword, _, text = body.partition(b"\0")
            if keyword == TAG_KEYWORD:
                return text.decode("latin-1")
        if kind in {b"IDAT", b"IEND"}:  # text chunks used here come before the pixels
            return None
        pos += 12 + length
    return None
