"""Helpers the tests of saving share (test_downloads, test_images, test_files, test_sidecar).

Real images (Pillow), real results, and tiny aiohttp apps for replies no good server sends.
"""

from __future__ import annotations

import base64
import io
import json
import os
import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import web
from PIL import Image

import ttapi_async as tt
from ttapi_async._models import SavedImage
from ttapi_async.testing import Emulator


Serve = Callable[[web.Application], Awaitable[str]]
FAST = tt.RetryPolicy(max_retries=2, initial_delay=0.01, max_delay=0.05)
QUICK = tt.PollPolicy(initial_delay=0.05, growth=1.5, max_interval=0.2, dense_interval=0.05)
SAFE_NAME = re.compile(r"^[a-z0-9][a-z0-9-]*\.(png|jpg|webp|gif)$")


def sdk(emu: Emulator, **kwargs: object) -> tt.Client:
    kwargs.setdefault("retry", FAST)
    kwargs.setdefault("poll_policy", QUICK)
    return tt.Client(emu.api_key, base_url=emu.url, **kwargs)  # type: ignore[arg-type]


def client(base_url: str = "http://127.0.0.1:9") -> tt.Client:
    return tt.Client("test-key-123", base_url=base_url, retry=FAST)


def png(size: tuple[int, int] = (8, 6), *, noise: bool = False) -> bytes:
    """A real PNG; with noise it does not compress (so it spans many 64 KiB chunks)."""
    if noise:
        img = Image.frombytes("RGB", size, os.urandom(size[0] * size[1] * 3))
    else:
        img = Image.new("RGB", size, (200, 30, 30))
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def url_result(*urls: str) -> tt.ImagesResponse:
    return tt.ImagesResponse(created=1_700_000_000, data=tuple(tt.ImageData(url=u) for u in urls))


def b64_result(**fields: Any) -> tt.ImagesResponse:
    """A one-image b64 result; ``created`` and image fields may be anything."""
    created = fields.pop("created", 1_700_000_000)
    item = tt.ImageData(b64_json=base64.b64encode(png()).decode(), **fields)
    return tt.ImagesResponse(created=created, data=(item,))


def listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def sidecar_of(saved: SavedImage) -> dict[str, Any]:
    assert saved.sidecar is not None
    doc: dict[str, Any] = json.loads(saved.sidecar.read_text())
    return doc


def image_app(body: bytes, content_type: str | None = "image/png") -> web.Application:
    """Serve ``body`` at any path; ``content_type=None`` sends no Content-Type at all."""

    async def handler(_: web.Request) -> web.StreamResponse:
        return web.Response(body=body, headers={"Content-Type": content_type or "x/y"})

    async def strip(_: web.Request, resp: web.StreamResponse) -> None:
        # aiohttp would otherwise add application/octet-stream.
        resp.headers.popall("Content-Type", None)

    app = web.Application()
    app.router.add_get("/{name}", handler)
    if content_type is None:
        app.on_response_prepare.append(strip)
    return app
