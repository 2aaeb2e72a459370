"""Real image bytes for the emulator, drawn with Pillow and cached.

Strictly private. The pictures are plain on purpose (a flat background, a disc, a
frame): they compress to a few kilobytes, which keeps the emulator's replies cheap, yet
they are real files any decoder opens at the asked size.

By default each picture also shows its prompt, so the outputs of a demo or a test can be
told apart by looking at them. Drawing costs 3 ms (an opaque PNG, drawn with a palette) to
40 ms (a large WebP) a picture, so the last
``_PROMPTED_CACHE`` prompted pictures are kept (a test that asks twice pays once) and
drawing runs in a worker thread. A benchmark at thousands of requests per second turns
it off (``Emulator(draw_prompts=False)``): then each ``(format, width, height, alpha)`` is
drawn once per process and no request encodes an image.
"""

from __future__ import annotations

import base64
import io
import struct
import textwrap
import threading
import zlib
from collections import OrderedDict
from typing import Final

import attrs


try:
    from PIL import Image, ImageDraw, ImageFont
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
#: Pictures that show a prompt, newest last; at most ``_PROMPTED_CACHE`` are kept.
_prompted: OrderedDict[tuple[str, int, int, bool, str], Rendered] = OrderedDict()
_PROMPTED_CACHE: Final = 128
# Rendering may run in a worker thread (a cache miss during a request); the lock keeps two
# threads from drawing the same kind twice, and guards the prompted pictures' order.
_lock = threading.Lock()


def cached(
    fmt: str, width: int, height: int, *, alpha: bool, prompt: str | None = None
) -> Rendered | None:
    """Return the image when it was drawn before, else None (never draws)."""
    if prompt is None:
        return _cache.get((fmt, width, height, alpha))
    with _lock:
        return _prompted.get((fmt, width, height, alpha, prompt))


def image(fmt: str, width: int, height: int, *, alpha: bool, prompt: str | None = None) -> Rendered:
    """Return the image of this kind, drawing it on first use (slow: call it off the loop).

    ``fmt`` is ``png``, ``jpeg`` or ``webp``; ``alpha`` asks for a transparent background
    (RGBA), which JPEG cannot carry and so ignores. With a ``prompt``, the picture shows
    it (wrapped, cut after a few lines).
    """
    if prompt is not None:
        return _prompted_image((fmt, width, height, alpha, prompt))
    key = (fmt, width, height, alpha)
    found = _cache.get(key)
    if found is not None:
        return found
    with _lock:
        found = _cache.get(key)
        if found is None:
            found = _cache[key] = _render(fmt, width, height, alpha=alpha)
    return found


def _prompted_image(key: tuple[str, int, int, bool, str]) -> Rendered:
    with _lock:
        found = _prompted.get(key)
        if found is not None:
            _prompted.move_to_end(key)
            return found
    fmt, width, height, alpha, prompt = key
    # Drawn outside the lock: two threads may draw the same prompt once each, which is
    # cheaper than making every other drawing wait.
    drawn = _render(fmt, width, height, alpha=alpha, prompt=prompt)
    with _lock:
        _prompted[key] = drawn
        while len(_prompted) > _PROMPTED_CACHE:
            _prompted.popitem(last=False)
    return drawn


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)  # Pillow 10.1+ with FreeType
    except (TypeError, OSError, ImportError):  # older Pillow, or no FreeType
        return ImageFont.load_default()


#: Lines of the prompt a picture shows; a longer prompt ends in "…".
_PROMPT_LINES: Final = 4


def _draw_prompt(
    draw: ImageDraw.ImageDraw, prompt: str, width: int, height: int, ink: int | tuple[int, ...]
) -> None:
    """Write the prompt across the top of the picture, as large as its width allows."""
    size = max(10, min(width, height) // 16)
    columns = max(8, int(width / (size * 0.55)) - 2)
    wrapped = textwrap.wrap(" ".join(prompt.split()), columns)
    lines = wrapped[:_PROMPT_LINES] or [""]
    if len(wrapped) > _PROMPT_LINES:
        lines[-1] = lines[-1][: columns - 1] + "…"
    text, font = "\n".join(lines), _font(size)
    try:
        draw.multiline_text((size // 2, size // 2), text, fill=ink, font=font, spacing=size // 4)
    except UnicodeEncodeError:  # the bitmap font of a Pillow without FreeType: Latin-1 only
        text = text.encode("latin-1", "replace").decode("latin-1")
        draw.multiline_text((size // 2, size // 2), text, fill=ink, font=font, spacing=size // 4)


def _render(
    fmt: str, width: int, height: int, *, alpha: bool, prompt: str | None = None
) -> Rendered:
    if fmt not in MIME_TYPES:
        raise ValueError(f"unknown image format {fmt!r}")
    alpha = alpha and fmt != "jpeg"
    # A prompted opaque PNG is drawn per prompt: with a palette of three colours it encodes
    # in about 3 ms at 1024x1024, against 17 ms in RGB (the text is not antialiased).
    palette = prompt is not None and fmt == "png" and not alpha
    disc: int | tuple[int, ...] = _DISC
    frame: int | tuple[int, ...] = _FRAME
    if palette:
        img = Image.new("P", (width, height), 0)
        img.putpalette([*_BACKGROUND[fmt], *_DISC, *_FRAME])
        disc, frame = 1, 2
    else:
        mode = "RGBA" if alpha else "RGB"
        img = Image.new(mode, (width, height), (0, 0, 0, 0) if alpha else _BACKGROUND[fmt])
    draw = ImageDraw.Draw(img)
    side = min(width, height)
    border = max(2, side // 64)
    if not alpha:
        draw.rectangle((0, 0, width - 1, height - 1), outline=frame, width=border)
    cx, cy, r = width // 2, height // 2, side // 4
    if prompt is not None:  # room above the disc for the prompt's lines
        cy, r = height * 5 // 8, side // 5
    draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=disc, outline=frame, width=border)
    label = f"TTAPI emulator {width}x{height} {fmt}"
    if prompt is None:
        draw.text((border * 3, border * 3), label, fill=frame)
    else:
        _draw_prompt(draw, prompt, width, height, frame)
        draw.text((border * 3, height - border * 3 - 12), label, fill=frame)
    buf = io.BytesIO()
    if fmt == "png":
        # Drawn per prompt: the fastest level. The shared, once-drawn kind: the smallest file.
        img.save(buf, "PNG", optimize=False, compress_level=6 if prompt is None else 1)
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


def job_image(prompt: str | None = None) -> Rendered:
    """Return the picture a successful 4o-image job points to (a 1024x1024 PNG).

    Without a ``prompt``, the one picture every job shares (drawn at startup).
    """
    return image("png", *JOB_SIZE, alpha=False, prompt=prompt)


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
