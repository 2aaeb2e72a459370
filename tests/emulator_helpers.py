"""Helpers the emulator's test modules share: plain HTTP calls, images, a webhook receiver.

Fixtures live in conftest.py (``emulator``) or in each module (``http``).
"""

from __future__ import annotations

import base64
import io
import json
import random
import re
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import aiohttp
import attrs
from aiohttp import web
from PIL import Image


if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from ttapi_async.testing import Emulator


GEN = "/v1/images/generations"
EDIT = "/v1/images/edits"
DALLE3 = "/openai/v1/images/generations"
SUBMIT = "/openai/4o-image/generations"
FETCH = "/openai/4o-image/fetch"
UNAUTHORIZED = b'{"status":"FAILED","message":"Wrong TT-API-KEY or email is not activated."}'
FINISH_TIME = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$")
MAGIC = {"png": b"\x89PNG\r\n\x1a\n", "jpeg": b"\xff\xd8\xff", "webp": b"RIFF"}
PIL_FORMAT = {"png": "PNG", "jpeg": "JPEG", "webp": "WEBP"}


def key(emu: Emulator) -> dict[str, str]:
    return {"TT-API-KEY": emu.api_key}


async def post_json(
    http: aiohttp.ClientSession, emu: Emulator, path: str, body: Any
) -> tuple[int, Any]:
    async with http.post(emu.url + path, json=body, headers=key(emu)) as resp:
        return resp.status, json.loads(await resp.read())


async def fetch(http: aiohttp.ClientSession, emu: Emulator, job_id: str) -> tuple[int, Any]:
    async with http.get(emu.url + FETCH, params={"jobId": job_id}, headers=key(emu)) as resp:
        return resp.status, json.loads(await resp.read())


async def submit(http: aiohttp.ClientSession, emu: Emulator, **body: Any) -> str:
    status, reply = await post_json(http, emu, SUBMIT, {"prompt": "draw a cat", **body})
    assert status == 200, reply
    job_id = reply["data"]["jobId"]
    assert isinstance(job_id, str)
    return job_id


def decode(b64: str) -> tuple[bytes, Image.Image]:
    raw = base64.b64decode(b64)
    img = Image.open(io.BytesIO(raw))
    img.load()
    return raw, img


def png(width: int, height: int, *, alpha: bool = False) -> bytes:
    mode = "RGBA" if alpha else "RGB"
    img = Image.new(mode, (width, height), (10, 20, 30, 0) if alpha else (10, 20, 30))
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def webp(width: int, height: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (width, height), (200, 10, 10)).save(buf, "WEBP")
    return buf.getvalue()


def edit_form(
    fields: dict[str, str], images: list[tuple[str, bytes, str]], mask: bytes | None = None
) -> aiohttp.FormData:
    form = aiohttp.FormData(default_to_multipart=True)
    for name, value in fields.items():
        form.add_field(name, value)
    for field, data, mime in images:
        form.add_field(field, data, filename="img", content_type=mime)
    if mask is not None:
        form.add_field("mask", mask, filename="mask.png", content_type="image/png")
    return form


async def post_edit(
    http: aiohttp.ClientSession, emu: Emulator, form: aiohttp.FormData
) -> tuple[int, Any]:
    async with http.post(emu.url + EDIT, data=form, headers=key(emu)) as resp:
        return resp.status, json.loads(await resp.read())


@attrs.define
class Receiver:
    """A tiny webhook receiver: records every POST (``url`` and ``url/<token>``)."""

    url: str = ""
    status: int = 200
    bodies: list[Any] = attrs.Factory(list)
    content_types: list[str] = attrs.Factory(list)
    paths: list[str] = attrs.Factory(list)


@asynccontextmanager
async def receiver() -> AsyncIterator[Receiver]:
    rec = Receiver()

    async def hook(request: web.Request) -> web.Response:
        rec.content_types.append(request.content_type)
        rec.bodies.append(json.loads(await request.read()))
        rec.paths.append(request.path)
        return web.Response(status=rec.status, text="ok")

    app = web.Application()
    app.router.add_post("/hook", hook)
    app.router.add_post("/hook/{token}", hook)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    rec.url = f"http://127.0.0.1:{site.port}/hook"
    try:
        yield rec
    finally:
        await runner.cleanup()


def noise_png(size: int) -> bytes:
    """A valid PNG of about ``size`` bytes: random pixels do not compress."""
    side = int((size / 3) ** 0.5) + 1
    rng = random.Random(size)
    img = Image.frombytes("RGB", (side, side), rng.randbytes(side * side * 3))
    buf = io.BytesIO()
    img.save(buf, "PNG", compress_level=1)
    return buf.getvalue()
