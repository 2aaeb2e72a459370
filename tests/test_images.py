"""Byte checks of saved and downloaded images (:mod:`ttapi_async._images`).

Content-Type, magic bytes, the size cap and base64: through real HTTP on 127.0.0.1 (tiny
aiohttp apps for replies no good server sends), and :class:`ImageCheck` on its own.
"""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path

import pytest
from aiohttp import web
from saving import Serve, client, image_app, listing, png, url_result

import ttapi_async as tt
from ttapi_async._images import ImageCheck, b64_slices


pytestmark = pytest.mark.anyio


# ----------------------------------------------------------------------------- refusals


@pytest.mark.parametrize("chunked", [False, True])
async def test_oversize_refused_and_nothing_left(
    serve: Serve, tmp_path: Path, chunked: bool
) -> None:
    """Over max_bytes (declared, or counted while streaming): an error, no file at all."""
    body = png((300, 300), noise=True)

    async def handler(request: web.Request) -> web.StreamResponse:
        if not chunked:
            return web.Response(body=body, content_type="image/png")
        resp = web.StreamResponse(headers={"Content-Type": "image/png"})
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        for i in range(0, len(body), 10_000):
            await resp.write(body[i : i + 10_000])
        await resp.write_eof()
        return resp

    app = web.Application()
    app.router.add_get("/big.png", handler)
    base = await serve(app)
    async with client(base) as c:
        with pytest.raises(tt.ResponseFormatError, match="larger than 50000 bytes"):
            await c.save(url_result(base + "/big.png"), tmp_path, max_bytes=50_000)
        with pytest.raises(tt.ResponseFormatError, match="larger than"):
            await c.download(base + "/big.png", max_bytes=50_000)
        assert len(await c.save(url_result(base + "/big.png"), tmp_path)) == 1
    assert len(listing(tmp_path)) == 2  # only the last save: image and sidecar


async def test_oversize_b64_refused(tmp_path: Path) -> None:
    """The cap holds for b64_json images too."""
    b64 = base64.b64encode(png((300, 300), noise=True)).decode()
    result = tt.ImagesResponse(created=0, data=(tt.ImageData(b64_json=b64),))
    async with client() as c:
        with pytest.raises(tt.ResponseFormatError, match="larger than"):
            await c.save(result, tmp_path, max_bytes=10_000)
    assert listing(tmp_path) == []


@pytest.mark.parametrize("ctype", ["text/html", "application/json", "text/plain; charset=utf-8"])
async def test_non_image_content_type_refused(serve: Serve, tmp_path: Path, ctype: str) -> None:
    """A login page or an error in JSON served with 200 is refused by its Content-Type."""
    base = await serve(image_app(png(), ctype))
    async with client(base) as c:
        with pytest.raises(tt.ResponseFormatError) as info:
            await c.save(url_result(base + "/a.png"), tmp_path)
    assert ctype.split(";", maxsplit=1)[0] in str(info.value)
    assert listing(tmp_path) == []


@pytest.mark.parametrize("ctype", [None, "application/octet-stream", "image/png"])
async def test_acceptable_content_types(serve: Serve, tmp_path: Path, ctype: str | None) -> None:
    """No Content-Type, octet-stream and image/* are fine: the bytes decide."""
    body = png()
    base = await serve(image_app(body, ctype))
    async with client(base) as c:
        (saved,) = await c.save(url_result(base + "/a.png"), tmp_path)
    assert saved.path.read_bytes() == body


@pytest.mark.parametrize(
    "body", [b"this is certainly not an image, whatever the header says", b"GIF8", b""]
)
async def test_bytes_that_are_not_an_image_refused(
    serve: Serve, tmp_path: Path, body: bytes
) -> None:
    """image/png on the label, not an image inside: refused, no file."""
    base = await serve(image_app(body, "image/png"))
    async with client(base) as c:
        with pytest.raises(tt.ResponseFormatError):
            await c.save(url_result(base + "/a.png"), tmp_path)
        with pytest.raises(tt.ResponseFormatError):
            await c.download(base + "/a.png")
    assert listing(tmp_path) == []


@pytest.mark.parametrize("b64", ["!!!not base64!!!", "iVBORw0KGgo", "iVBO\nRw0K", "é" * 8])
async def test_invalid_b64_refused(tmp_path: Path, b64: str) -> None:
    """Junk, bad padding, whitespace and non-ASCII in b64_json: refused, no file."""
    result = tt.ImagesResponse(created=0, data=(tt.ImageData(b64_json=b64),))
    async with client() as c:
        with pytest.raises(tt.ResponseFormatError):
            await c.save(result, tmp_path)
    assert listing(tmp_path) == []


# ----------------------------------------------------------------------------- the check itself


def test_image_check_passes_an_image_on_chunk_by_chunk() -> None:
    """Byte by byte (the magic bytes spread over many chunks): every byte passed on, in
    order, counted and hashed; the type read from the bytes."""
    data = png((40, 30), noise=True)
    out: list[bytes] = []
    check = ImageCheck(out.append, max_bytes=len(data))
    check.headers(200, {"Content-Type": "binary/octet-stream"})
    for i in range(len(data)):
        check(data[i : i + 1])
    check(b"")  # an empty chunk is nothing
    assert check.finish() == "image/png"
    assert b"".join(out) == data
    assert check.size == len(data)
    assert check.sha256 == hashlib.sha256(data).hexdigest()


def test_image_check_refuses_a_web_page_at_its_first_chunk() -> None:
    """Not after 64 MiB: as soon as the magic bytes are in, and before passing any on."""
    out: list[bytes] = []
    check = ImageCheck(out.append, max_bytes=64 * 1024 * 1024)
    with pytest.raises(tt.ResponseFormatError, match="not a PNG, JPEG, WebP or GIF") as info:
        check(b"<!doctype html><html>" + b"x" * 65_536)
    assert out == []
    assert "<!doctype html>" in info.value.body


def test_b64_slices_decode_lazily_slice_by_slice() -> None:
    """Many 64 KiB slices decode to exactly the bytes; a bad slice fails when reached."""
    data = png((300, 300), noise=True)
    b64 = base64.b64encode(data).decode()
    slices = list(b64_slices(b64))
    assert len(slices) > 3
    assert b"".join(slices) == data
    broken = b64_slices(b64[: 1 << 16] + "!" * 8)
    assert next(broken) == data[: 3 << 14]  # the first slice, before the junk is read
    with pytest.raises(tt.ResponseFormatError, match="not valid base64"):
        next(broken)
