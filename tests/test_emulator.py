"""The emulator over real HTTP, with a plain aiohttp client: wire shapes, images, money, jobs,
callbacks, faults and clean shutdown."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import json
import os
import random
import re
import signal
import sys
import time
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp
import anyio
import attrs
import openai
import pytest
from aiohttp import web
from anyio.streams.text import TextReceiveStream
from PIL import Image

import ttapi_async as tt
from ttapi_async._errors import ValidationError
from ttapi_async._rules import check_dalle3, check_generate
from ttapi_async.testing import (
    CallbackFaults,
    Charge,
    Counters,
    EmulatedJob,
    Emulator,
    Fault,
    job_of_image,
)
from ttapi_async.testing._emulator import DEFAULT_MAX_BODY


if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable


pytestmark = pytest.mark.anyio

GEN = "/v1/images/generations"
EDIT = "/v1/images/edits"
DALLE3 = "/openai/v1/images/generations"
SUBMIT = "/openai/4o-image/generations"
FETCH = "/openai/4o-image/fetch"
UNAUTHORIZED = b'{"status":"FAILED","message":"Wrong TT-API-KEY or email is not activated."}'
FINISH_TIME = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$")
MAGIC = {"png": b"\x89PNG\r\n\x1a\n", "jpeg": b"\xff\xd8\xff", "webp": b"RIFF"}
PIL_FORMAT = {"png": "PNG", "jpeg": "JPEG", "webp": "WEBP"}


# --------------------------------------------------------------------------- helpers


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


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


async def wait_until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    with anyio.fail_after(timeout):
        # Polling: the counters and lists under test have no event to wait on.
        while not predicate():
            await anyio.sleep(0.01)


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


# --------------------------------------------------------------------------- auth and routes


async def test_tt_api_key_is_accepted(emulator: Emulator, http: aiohttp.ClientSession) -> None:
    """A request with the right TT-API-KEY gets a 200."""
    status, _ = await post_json(http, emulator, GEN, {"model": "gpt-image-1", "prompt": "a"})
    assert status == 200


async def test_bearer_is_accepted_on_v1(emulator: Emulator, http: aiohttp.ClientSession) -> None:
    """On /v1 the key may come as ``Authorization: Bearer`` (what the openai package sends)."""
    headers = {"Authorization": f"Bearer {emulator.api_key}"}
    async with http.post(emulator.url + GEN, json={"prompt": "a"}, headers=headers) as resp:
        assert resp.status == 200


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", GEN, {"prompt": "a"}),
        ("POST", EDIT, {"prompt": "a"}),
        ("POST", DALLE3, {"prompt": "a", "size": "1024x1024"}),
        ("POST", SUBMIT, {"prompt": "a"}),
        ("GET", FETCH, None),
    ],
)
@pytest.mark.parametrize("headers", ["none", "wrong", "bearer-off-v1"])
async def test_bad_key_gets_exact_401(
    emulator: Emulator,
    http: aiohttp.ClientSession,
    *,
    method: str,
    path: str,
    body: Any,
    headers: str,
) -> None:
    """A missing or wrong key (or Bearer outside /v1) gets the gateway's exact 401 body."""
    sent = {
        "none": {},
        "wrong": {"TT-API-KEY": "nope", "Authorization": "Bearer nope"},
        "bearer-off-v1": {"Authorization": f"Bearer {emulator.api_key}"},
    }[headers]
    if headers == "bearer-off-v1" and path.startswith("/v1/"):
        sent = {"Authorization": "Bearer nope"}
    async with http.request(
        method, emulator.url + path, json=body, headers=sent, params={"jobId": "x"}
    ) as resp:
        assert resp.status == 401
        assert await resp.read() == UNAUTHORIZED
        assert resp.content_type == "application/json"
    assert emulator.counters.billed.total() == 0


async def test_unknown_route_and_wrong_method(
    emulator: Emulator, http: aiohttp.ClientSession
) -> None:
    """An unknown path is a 404 envelope; a known path with the wrong method is refused."""
    async with http.get(emulator.url + "/nope", headers=key(emulator)) as resp:
        assert resp.status == 404
        assert await resp.json() == {"status": "FAILED", "message": "Not Found", "data": None}
    async with http.get(emulator.url + GEN, headers=key(emulator)) as resp:
        assert resp.status == 405
        assert (await resp.json())["status"] == "FAILED"
    assert emulator.counters.requests["/nope"] == 1
    assert emulator.counters.responses[404] == 1


def test_url_before_start_raises() -> None:
    """The URL is not known before the server starts."""
    with pytest.raises(RuntimeError, match="not running"):
        _ = Emulator().url


def test_generated_api_key_and_repr() -> None:
    """Without a key the emulator makes one up, and its repr never shows it."""
    emu = Emulator()
    assert emu.api_key.startswith("emu-")
    assert len(emu.api_key) == 4 + 32
    assert emu.api_key not in repr(emu)
    assert Emulator("k").api_key == "k"


# --------------------------------------------------------------------------- /v1 generations


async def test_gpt_image_generation_shape(emulator: Emulator, http: aiohttp.ClientSession) -> None:
    """gpt-image-1 answers the raw OpenAI body: b64 items, usage and the echo fields."""
    status, body = await post_json(
        http, emulator, GEN, {"model": "gpt-image-1", "prompt": "a sea otter", "quality": "low"}
    )
    assert status == 200
    assert set(body) == {
        "created",
        "data",
        "usage",
        "background",
        "output_format",
        "quality",
        "size",
    }
    assert isinstance(body["created"], int)
    assert abs(body["created"] - time.time()) < 5
    assert [set(item) for item in body["data"]] == [{"b64_json"}]
    usage = body["usage"]
    assert set(usage) == {"input_tokens", "input_tokens_details", "output_tokens", "total_tokens"}
    assert set(usage["input_tokens_details"]) == {"image_tokens", "text_tokens"}
    assert usage["output_tokens"] == 272
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]
    assert (body["background"], body["output_format"], body["quality"], body["size"]) == (
        "opaque",
        "png",
        "low",
        "1024x1024",
    )
    raw, img = decode(body["data"][0]["b64_json"])
    assert raw.startswith(MAGIC["png"])
    assert (img.format, img.size) == ("PNG", (1024, 1024))


@pytest.mark.parametrize(
    ("fmt", "size", "expected"),
    [
        ("png", "1536x1024", (1536, 1024)),
        ("jpeg", "1024x1536", (1024, 1536)),
        ("webp", "auto", (1024, 1024)),
        ("jpeg", "1024x1024", (1024, 1024)),
    ],
)
async def test_gpt_image_formats_are_real(
    emulator: Emulator,
    http: aiohttp.ClientSession,
    fmt: str,
    size: str,
    expected: tuple[int, int],
) -> None:
    """The bytes are a real image of the requested format and size."""
    status, body = await post_json(
        http,
        emulator,
        GEN,
        {"model": "gpt-image-1", "prompt": "p", "output_format": fmt, "size": size},
    )
    assert status == 200, body
    raw, img = decode(body["data"][0]["b64_json"])
    assert raw.startswith(MAGIC[fmt])
    assert img.format == PIL_FORMAT[fmt]
    assert img.size == expected
    assert img.mode == "RGB"
    assert body["size"] == f"{expected[0]}x{expected[1]}"


@pytest.mark.parametrize("fmt", ["png", "webp"])
async def test_transparent_background_is_rgba(
    emulator: Emulator, http: aiohttp.ClientSession, fmt: str
) -> None:
    """background=transparent gives an RGBA image whose corner is see-through."""
    status, body = await post_json(
        http,
        emulator,
        GEN,
        {"model": "gpt-image-1", "prompt": "p", "background": "transparent", "output_format": fmt},
    )
    assert status == 200, body
    _, img = decode(body["data"][0]["b64_json"])
    assert img.mode == "RGBA"
    pixel = img.getpixel((0, 0))
    assert isinstance(pixel, tuple)
    assert pixel[3] == 0
    assert body["background"] == "transparent"


async def test_n_images_bill_per_image(http: aiohttp.ClientSession) -> None:
    """n items come back and each image costs one unit of balance."""
    async with Emulator(balance=10) as emu:
        status, body = await post_json(
            http, emu, GEN, {"model": "gpt-image-1", "prompt": "p", "n": 3}
        )
        assert status == 200
        assert len(body["data"]) == 3
        assert emu.balance == 7
        assert emu.counters.billed[GEN] == 1
        assert emu.counters.submits_by_prompt["p"] == 1


async def test_dalle2_is_the_default_and_returns_urls(
    emulator: Emulator, http: aiohttp.ClientSession
) -> None:
    """No model means dall-e-2, which answers served URLs of real PNGs and no usage."""
    status, body = await post_json(http, emulator, GEN, {"prompt": "p", "size": "256x256", "n": 2})
    assert status == 200, body
    assert set(body) == {"created", "data"}
    urls = [item["url"] for item in body["data"]]
    assert len(set(urls)) == 2
    assert all(u.startswith(emulator.url + "/files/") for u in urls)
    async with http.get(urls[0]) as resp:
        assert resp.status == 200
        assert resp.content_type == "image/png"
        data = await resp.read()
        assert resp.content_length == len(data)
    assert Image.open(io.BytesIO(data)).size == (256, 256)
    assert emulator.counters.files_served == 1


async def test_dalle3_url_with_revised_prompt_or_b64(
    emulator: Emulator, http: aiohttp.ClientSession
) -> None:
    """dall-e-3 adds revised_prompt, and honours response_format=b64_json."""
    status, body = await post_json(
        http, emulator, GEN, {"model": "dall-e-3", "prompt": "p", "size": "1792x1024"}
    )
    assert status == 200
    (item,) = body["data"]
    assert set(item) == {"url", "revised_prompt"}
    assert "p" in item["revised_prompt"]
    status, body = await post_json(
        http,
        emulator,
        GEN,
        {"model": "dall-e-3", "prompt": "p", "size": "1024x1792", "response_format": "b64_json"},
    )
    assert status == 200
    _, img = decode(body["data"][0]["b64_json"])
    assert img.size == (1024, 1792)


async def test_unknown_model_passes_through_like_gpt_image(
    emulator: Emulator, http: aiohttp.ClientSession
) -> None:
    """A model the rules do not know is accepted and answers the gpt-image way."""
    status, body = await post_json(
        http, emulator, GEN, {"model": "gpt-image-9", "prompt": "p", "size": "640x480"}
    )
    assert status == 200, body
    assert "usage" in body
    _, img = decode(body["data"][0]["b64_json"])
    assert img.size == (640, 480)


def _rule_message(check: Callable[[dict[str, Any]], None], params: dict[str, Any]) -> str:
    with pytest.raises(ValidationError) as info:
        check(params)
    return str(info.value)


@pytest.mark.parametrize(
    ("body", "param", "code"),
    [
        (
            {"model": "gpt-image-1", "prompt": "p", "response_format": "url"},
            "response_format",
            "unknown_parameter",
        ),
        (
            {"model": "dall-e-2", "prompt": "p", "response_format": "png"},
            "response_format",
            "invalid_value",
        ),
        ({"model": "dall-e-2", "prompt": "p", "size": "1536x1024"}, "size", "invalid_size"),
        ({"model": "dall-e-2", "prompt": "x" * 1001}, "prompt", "string_above_max_length"),
        ({"model": "gpt-image-1", "prompt": "p", "n": 11}, "n", "invalid_value"),
        ({"model": "gpt-image-1"}, "prompt", "invalid_value"),
        (
            {"model": "dall-e-2", "prompt": "p", "background": "transparent"},
            "background",
            "invalid_value",
        ),
    ],
)
async def test_generation_validation_errors_have_openai_shape(
    emulator: Emulator, http: aiohttp.ClientSession, body: dict[str, Any], param: str, code: str
) -> None:
    """A broken rule is a 400 in OpenAI's error shape, with the shared rule table's message."""
    status, reply = await post_json(http, emulator, GEN, body)
    assert status == 400
    assert reply == {
        "error": {
            "message": _rule_message(check_generate, body),
            "type": "invalid_request_error",
            "param": param,
            "code": code,
        }
    }
    assert emulator.counters.billed.total() == 0


async def test_gpt_only_parameter_without_model_is_gpt_image(
    emulator: Emulator, http: aiohttp.ClientSession
) -> None:
    """No model and a GPT-only parameter: OpenAI serves it with gpt-image-1 (wire section 8)."""
    status, body = await post_json(
        http, emulator, GEN, {"prompt": "p", "background": "transparent", "output_format": "webp"}
    )
    assert status == 200, body
    assert "usage" in body
    assert body["background"] == "transparent"
    raw, img = decode(body["data"][0]["b64_json"])
    assert raw.startswith(MAGIC["webp"])
    assert img.mode == "RGBA"


async def test_malformed_json_is_an_openai_400(
    emulator: Emulator, http: aiohttp.ClientSession
) -> None:
    """A body that is not a JSON object is a 400 in OpenAI's shape."""
    for raw in (b'{"prompt": ', b"[1, 2]"):
        async with http.post(emulator.url + GEN, data=raw, headers=key(emulator)) as resp:
            assert resp.status == 400
            err = (await resp.json())["error"]
            assert err["type"] == "invalid_request_error"
            assert "JSON" in err["message"]


@pytest.mark.parametrize(
    ("model", "code"),
    [("gpt-image-1", "moderation_blocked"), ("dall-e-3", "content_policy_violation")],
)
async def test_moderation_marker_is_refused(
    emulator: Emulator, http: aiohttp.ClientSession, model: str, code: str
) -> None:
    """A prompt with [moderation] is refused by the safety system and not billed."""
    status, reply = await post_json(
        http, emulator, GEN, {"model": model, "prompt": "a [moderation] b"}
    )
    assert status == 400
    assert reply["error"]["code"] == code
    assert reply["error"]["param"] is None
    assert "safety system" in reply["error"]["message"]
    if model == "gpt-image-1":
        assert reply["error"]["type"] == "image_generation_user_error"
    assert emulator.counters.billed.total() == 0


# --------------------------------------------------------------------------- /v1 edits


async def test_gpt_image_edit_with_several_images(
    emulator: Emulator, http: aiohttp.ClientSession
) -> None:
    """gpt-image-1 edits take several image[] files and answer b64 + usage counting them."""
    form = edit_form(
        {"model": "gpt-image-1", "prompt": "gift basket", "n": "2", "size": "1536x1024"},
        [("image[]", png(64, 64), "image/png"), ("image[]", webp(32, 48), "image/webp")],
    )
    status, body = await post_edit(http, emulator, form)
    assert status == 200, body
    assert len(body["data"]) == 2
    assert body["usage"]["input_tokens_details"]["image_tokens"] == 2 * 323
    _, img = decode(body["data"][0]["b64_json"])
    assert img.size == (1536, 1024)
    assert emulator.counters.billed[EDIT] == 1


async def test_edit_accepts_repeated_image_field(
    emulator: Emulator, http: aiohttp.ClientSession
) -> None:
    """Several files under a repeated ``image`` field count as several images."""
    form = edit_form(
        {"model": "gpt-image-1", "prompt": "p", "output_format": "webp"},
        [("image", png(8, 8), "image/png")] * 3,
    )
    status, body = await post_edit(http, emulator, form)
    assert status == 200, body
    assert body["usage"]["input_tokens_details"]["image_tokens"] == 3 * 323
    raw, img = decode(body["data"][0]["b64_json"])
    assert raw.startswith(MAGIC["webp"])
    assert img.size == (1024, 1024)


async def test_dalle2_edit_with_transparent_square_png(
    emulator: Emulator, http: aiohttp.ClientSession
) -> None:
    """dall-e-2 edits a square RGBA PNG and answers a URL of the asked size."""
    form = edit_form(
        {"model": "dall-e-2", "prompt": "p", "size": "512x512"},
        [("image", png(64, 64, alpha=True), "image/png")],
    )
    status, body = await post_edit(http, emulator, form)
    assert status == 200, body
    assert "usage" not in body
    async with http.get(body["data"][0]["url"]) as resp:
        assert Image.open(io.BytesIO(await resp.read())).size == (512, 512)


@pytest.mark.parametrize(
    ("fields", "images", "mask", "param"),
    [
        ({"model": "dall-e-2", "prompt": "p"}, [png(64, 32, alpha=True)], None, "image"),
        ({"model": "dall-e-2", "prompt": "p"}, [png(64, 64)], None, "image"),
        ({"model": "dall-e-2", "prompt": "p"}, [png(64, 64)], png(32, 32, alpha=True), "mask"),
        ({"model": "gpt-image-1", "prompt": "p", "n": "two"}, [png(8, 8)], None, "n"),
        (
            {"model": "gpt-image-1", "prompt": "p", "output_compression": "x"},
            [png(8, 8)],
            None,
            "output_compression",
        ),
        ({"model": "gpt-image-1", "prompt": "p"}, [], None, "image"),
        ({"model": "dall-e-3", "prompt": "p"}, [png(8, 8)], None, "model"),
        ({"model": "gpt-image-1", "prompt": "p"}, [b"GIF89a" + bytes(20)], None, "image"),
    ],
)
async def test_edit_validation_errors(
    emulator: Emulator,
    http: aiohttp.ClientSession,
    *,
    fields: dict[str, str],
    images: list[bytes],
    mask: bytes | None,
    param: str,
) -> None:
    """Edits are checked (images sniffed from their bytes) and refused in OpenAI's shape."""
    form = edit_form(fields, [("image", b, "image/png") for b in images], mask)
    status, body = await post_edit(http, emulator, form)
    assert status == 400, body
    assert body["error"]["param"] == param
    assert body["error"]["type"] == "invalid_request_error"
    assert emulator.counters.billed.total() == 0


async def test_edit_needs_multipart(emulator: Emulator, http: aiohttp.ClientSession) -> None:
    """A JSON edit body is refused with a 400 naming the expected content type."""
    status, body = await post_json(http, emulator, EDIT, {"prompt": "p"})
    assert status == 400
    assert "multipart/form-data" in body["error"]["message"]


# --------------------------------------------------------------------------- request bodies


def noise_png(size: int) -> bytes:
    """A valid PNG of about ``size`` bytes: random pixels do not compress."""
    side = int((size / 3) ** 0.5) + 1
    rng = random.Random(size)
    img = Image.frombytes("RGB", (side, side), rng.randbytes(side * side * 3))
    buf = io.BytesIO()
    img.save(buf, "PNG", compress_level=1)
    return buf.getvalue()


async def test_edit_with_a_2mb_image_is_accepted_by_sdk_and_openai(emulator: Emulator) -> None:
    """A valid gpt-image-1 edit with a 2 MB image is served (aiohttp alone stops at 1 MiB)."""
    big = noise_png(2 * 1024 * 1024)
    assert len(big) > 2 * 1024 * 1024
    async with tt.Client(api_key=emulator.api_key, base_url=emulator.url, max_retries=0) as c:
        r = await c.images.edit(image=[big], prompt="frame it", model="gpt-image-1")
    assert r.usage is not None
    assert r.usage.input_tokens_details is not None
    assert r.usage.input_tokens_details.image_tokens == 323
    async with openai.AsyncOpenAI(
        base_url=emulator.url + "/v1", api_key=emulator.api_key, max_retries=0
    ) as oc:
        resp = await oc.images.edit(
            model="gpt-image-1", image=("big.png", big, "image/png"), prompt="frame it"
        )
    assert resp.data is not None
    assert resp.data[0].b64_json
    assert emulator.counters.billed[EDIT] == 2
    assert emulator.max_body == DEFAULT_MAX_BODY == 64 * 1024 * 1024


async def test_body_over_max_body_is_a_json_413(http: aiohttp.ClientSession) -> None:
    """Past max_body: 413 in the route's shape (OpenAI's on /v1), declared or chunked."""
    limit = 64 * 1024
    async with Emulator(max_body=limit) as emu:
        status, body = await post_json(http, emu, GEN, {"prompt": "p", "user": "x" * limit})
        assert status == 413
        assert body == {
            "error": {
                "message": f"Request body too large: the limit is {limit} bytes.",
                "type": "invalid_request_error",
                "param": None,
                "code": None,
            }
        }

        async def chunked() -> AsyncIterator[bytes]:
            for _ in range(4):
                yield b"x" * (limit // 2)

        async with http.post(emu.url + SUBMIT, data=chunked(), headers=key(emu)) as resp:
            assert resp.status == 413
            assert "Content-Length" not in resp.request_info.headers
            assert (await resp.json())["status"] == "FAILED"
        async with openai.AsyncOpenAI(
            base_url=emu.url + "/v1", api_key=emu.api_key, max_retries=0
        ) as oc:
            with pytest.raises(openai.APIStatusError) as info:
                await oc.images.edit(
                    model="gpt-image-1",
                    image=("big.png", noise_png(2 * limit), "image/png"),
                    prompt="p",
                )
        assert info.value.status_code == 413
        assert isinstance(info.value.body, dict)
        assert info.value.body["type"] == "invalid_request_error"
        async with tt.Client(api_key=emu.api_key, base_url=emu.url, max_retries=0) as c:
            with pytest.raises(tt.APIStatusError) as sdk_info:
                await c.images.edit(image=[noise_png(2 * limit)], prompt="p", model="gpt-image-1")
        assert sdk_info.value.status == 413
        assert sdk_info.value.type == "invalid_request_error"
        assert f"the limit is {limit} bytes" in sdk_info.value.message
        assert emu.counters.bodies_too_large == 4
        assert emu.counters.billed.total() == 0
        # Still serving, and a body under the cap is fine.
        assert (await post_json(http, emu, GEN, {"prompt": "p"}))[0] == 200


@pytest.mark.parametrize(("path", "shape"), [(SUBMIT, "envelope"), (EDIT, "openai")])
async def test_stalled_body_gets_408_and_the_connection_closes(path: str, shape: str) -> None:
    """Headers, part of a body, then silence: 408 after read_timeout, then the socket closes."""
    async with Emulator(read_timeout=0.3) as emu:
        port = int(emu.url.rsplit(":", 1)[1])
        content_type = (
            "application/json" if shape == "envelope" else "multipart/form-data; boundary=b"
        )
        head = (
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nTT-API-KEY: {emu.api_key}\r\n"
            f"Content-Type: {content_type}\r\nContent-Length: 1000\r\n\r\n"
        )
        start = time.perf_counter()
        async with await anyio.connect_tcp("127.0.0.1", port) as sock:
            await sock.send(head.encode() + b'--b\r\nContent-Disposition: form-data; name="p')
            reply = b""
            with anyio.fail_after(5):
                while True:
                    try:
                        reply += await sock.receive()
                    except anyio.EndOfStream:
                        break  # the server closed the connection
        assert time.perf_counter() - start >= 0.3
        head_line, _, rest = reply.partition(b"\r\n")
        assert head_line == b"HTTP/1.1 408 Request Timeout"
        body = json.loads(rest.split(b"\r\n\r\n", 1)[1])
        if shape == "envelope":
            assert (body["status"], body["data"]) == ("FAILED", None)
        else:
            assert body["error"]["type"] == "invalid_request_error"
        assert emu.counters.bodies_timed_out == 1
        assert emu.jobs == {}
        async with aiohttp.ClientSession() as http:
            assert (await submit(http, emu)) in emu.jobs  # still serving


# --------------------------------------------------------------------------- legacy DALL-E 3


async def test_legacy_dalle3_success_envelope(
    emulator: Emulator, http: aiohttp.ClientSession
) -> None:
    """The legacy route wraps the OpenAI body in the TTAPI envelope."""
    status, body = await post_json(http, emulator, DALLE3, {"prompt": "a cat", "size": "1024x1792"})
    assert status == 200
    assert body["status"] == "SUCCESS"
    assert body["message"] == "success"
    inner = body["data"]
    assert isinstance(inner["created"], int)
    (item,) = inner["data"]
    assert set(item) == {"url", "revised_prompt"}
    async with http.get(item["url"]) as resp:
        assert Image.open(io.BytesIO(await resp.read())).size == (1024, 1792)
    assert emulator.counters.billed[DALLE3] == 1


@pytest.mark.parametrize(
    "body",
    [{"prompt": "a cat"}, {"prompt": "a", "size": "1024x1024", "n": 2}, {"size": "1024x1024"}],
)
async def test_legacy_dalle3_errors_are_envelopes(
    emulator: Emulator, http: aiohttp.ClientSession, body: dict[str, Any]
) -> None:
    """Rule violations on the legacy route are 400 envelopes with the rule's message."""
    status, reply = await post_json(http, emulator, DALLE3, body)
    assert status == 400
    assert reply == {"status": "FAILED", "message": _rule_message(check_dalle3, body), "data": None}


# --------------------------------------------------------------------------- 4o jobs


async def test_4o_job_lifecycle_to_success(emulator: Emulator, http: aiohttp.ClientSession) -> None:
    """A job is ON_QUEUE, then SUCCESS with a served 1024x1024 PNG, quota and finishTime."""
    refs = ["https://example.com/a.png"]
    job_id = await submit(http, emulator, referImages=refs)
    status, body = await fetch(http, emulator, job_id)
    assert status == 200
    assert body == {
        "status": "ON_QUEUE",
        "message": None,
        "jobId": job_id,
        "data": {
            "prompt": "draw a cat",
            "referImages": refs,
            "imageUrl": None,
            "quota": "2",
            "finishTime": None,
            "hookUrl": None,
        },
    }
    await anyio.sleep(0.2)
    status, body = await fetch(http, emulator, job_id)
    assert body["status"] == "SUCCESS"
    assert body["message"] == "success"
    assert body["data"]["quota"] == "2"
    assert FINISH_TIME.match(body["data"]["finishTime"])
    async with http.get(body["data"]["imageUrl"]) as resp:
        assert resp.status == 200
        img = Image.open(io.BytesIO(await resp.read()))
    assert (img.format, img.size) == ("PNG", (1024, 1024))
    job = emulator.jobs[job_id]
    assert (job.status, job.fetches) == ("SUCCESS", 2)
    assert emulator.counters.fetches == 2
    assert emulator.counters.billed[SUBMIT] == 1


async def test_fetch_by_post_json_and_form(emulator: Emulator, http: aiohttp.ClientSession) -> None:
    """Fetch also takes jobId in a JSON body or a form body."""
    job_id = await submit(http, emulator)
    status, body = await post_json(http, emulator, FETCH, {"jobId": job_id})
    assert (status, body["jobId"]) == (200, job_id)
    async with http.post(
        emulator.url + FETCH, data={"jobId": job_id}, headers=key(emulator)
    ) as resp:
        assert resp.status == 200
        assert (await resp.json())["jobId"] == job_id
    assert emulator.jobs[job_id].fetches == 2


@pytest.mark.parametrize(
    ("prompt", "rate", "reason"),
    [("draw [fail] it", 0.0, "prompt violation"), ("draw it", 1.0, "image generation failed")],
)
async def test_4o_job_can_fail(
    http: aiohttp.ClientSession, prompt: str, rate: float, reason: str
) -> None:
    """The [fail] marker, or job_fail_rate, ends a job FAILED with a reason."""
    async with Emulator(job_duration=0.05, job_fail_rate=rate) as emu:
        job_id = await submit(http, emu, prompt=prompt)
        await anyio.sleep(0.1)
        status, body = await fetch(http, emu, job_id)
    assert status == 200
    assert body["status"] == "FAILED"
    assert body["message"].startswith(reason)
    assert body["data"]["imageUrl"] is None
    assert FINISH_TIME.match(body["data"]["finishTime"])


async def test_fetch_errors(emulator: Emulator, http: aiohttp.ClientSession) -> None:
    """Unknown and foreign jobs are 404 envelopes; a missing jobId is a 400 envelope."""
    not_found = {"status": "FAILED", "message": "job not found", "data": None}
    assert await fetch(http, emulator, "nope") == (404, not_found)
    job_id = await submit(http, emulator)
    emulator.api_key = "another-key"
    assert await fetch(http, emulator, job_id) == (404, not_found)
    async with http.get(emulator.url + FETCH, headers=key(emulator)) as resp:
        assert resp.status == 400
        body = await resp.json()
        assert (body["status"], body["data"]) == ("FAILED", None)
        assert "job_id" in body["message"]


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({}, "prompt"),
        ({"prompt": "p", "hookUrl": "ftp://x"}, "hook_url"),
        ({"prompt": "p", "referImages": "https://x/a.png"}, "refer_images"),
    ],
)
async def test_submit_validation_errors_are_envelopes(
    emulator: Emulator, http: aiohttp.ClientSession, body: dict[str, Any], fragment: str
) -> None:
    """4o submit refuses bad parameters with a 400 envelope and creates nothing."""
    status, reply = await post_json(http, emulator, SUBMIT, body)
    assert status == 400
    assert reply["status"] == "FAILED"
    assert reply["data"] is None
    assert fragment in reply["message"]
    assert emulator.jobs == {}


# --------------------------------------------------------------------------- balance and queue


async def test_balance_402_bills_nothing(http: aiohttp.ClientSession) -> None:
    """A call that costs more than the balance is a 402 envelope and bills nothing."""
    async with Emulator(balance=3) as emu:
        assert (await post_json(http, emu, GEN, {"prompt": "p", "n": 2}))[0] == 200
        assert emu.balance == 1
        status, body = await post_json(http, emu, SUBMIT, {"prompt": "p"})
        assert status == 402
        assert body == {
            "status": "FAILED",
            "message": "Insufficient balance, please recharge.",
            "data": None,
        }
        assert emu.balance == 1
        assert emu.counters.billed[SUBMIT] == 0
        assert emu.jobs == {}
        emu.balance = None
        assert (await post_json(http, emu, SUBMIT, {"prompt": "p"}))[0] == 200


async def test_max_in_flight_counts_running_jobs(http: aiohttp.ClientSession) -> None:
    """Running 4o jobs fill the per-key queue; one more is a 499 until a job ends."""
    async with Emulator(job_duration=0.3, max_in_flight=2) as emu:
        await submit(http, emu)
        await submit(http, emu)
        status, body = await post_json(http, emu, SUBMIT, {"prompt": "p"})
        assert status == 499
        assert body == {
            "status": "FAILED",
            "message": "Queue is full, please try again later.",
            "data": None,
        }
        assert emu.counters.billed[SUBMIT] == 2
        assert emu.counters.in_flight_peak == 2
        await anyio.sleep(0.4)
        await submit(http, emu)


async def test_max_in_flight_counts_sync_calls(http: aiohttp.ClientSession) -> None:
    """A sync call in progress holds a slot: a concurrent one beyond the cap gets 499."""
    async with Emulator(sync_latency=0.3, max_in_flight=1) as emu:
        results = await asyncio.gather(
            post_json(http, emu, GEN, {"prompt": "a"}),
            post_json(http, emu, GEN, {"prompt": "b"}),
        )
        assert sorted(status for status, _ in results) == [200, 499]
        assert (await post_json(http, emu, GEN, {"prompt": "c"}))[0] == 200


async def test_sync_latency_delays_replies(http: aiohttp.ClientSession) -> None:
    """sync_latency holds /v1 and DALL-E 3 replies, and can change at runtime."""
    async with Emulator(sync_latency=0.2) as emu:
        start = time.perf_counter()
        await post_json(http, emu, DALLE3, {"prompt": "p", "size": "1024x1024"})
        assert time.perf_counter() - start >= 0.2
        emu.sync_latency = 0.0
        start = time.perf_counter()
        await post_json(http, emu, GEN, {"prompt": "p"})
        assert time.perf_counter() - start < 0.2


# --------------------------------------------------------------------------- callbacks


async def test_callback_is_the_fetch_body(http: aiohttp.ClientSession) -> None:
    """When a job ends, its hookUrl gets one JSON POST identical to the fetch reply."""
    async with receiver() as rec, Emulator(job_duration=0.05) as emu:
        job_id = await submit(http, emu, hookUrl=rec.url)
        await wait_until(lambda: len(rec.bodies) == 1)
        _, fetched = await fetch(http, emu, job_id)
        assert rec.bodies == [fetched]
        assert fetched["status"] == "SUCCESS"
        assert fetched["data"]["hookUrl"] == rec.url
        assert rec.content_types == ["application/json"]
        await anyio.sleep(0.1)
        assert len(rec.bodies) == 1
        assert emu.counters.callbacks_sent == 1
        assert emu.counters.callbacks_failed == 0
        assert emu.jobs[job_id].callbacks == 1


async def test_callback_for_failed_job(http: aiohttp.ClientSession) -> None:
    """A FAILED job is called back too, with its reason."""
    async with receiver() as rec, Emulator(job_duration=0.02) as emu:
        await submit(http, emu, prompt="[fail]", hookUrl=rec.url)
        await wait_until(lambda: len(rec.bodies) == 1)
        assert rec.bodies[0]["status"] == "FAILED"
        assert rec.bodies[0]["message"] == "prompt violation"


async def test_callbacks_lost_and_duplicated(http: aiohttp.ClientSession) -> None:
    """lose_rate skips deliveries; duplicate_rate delivers twice."""
    async with receiver() as rec, Emulator(job_duration=0.02) as emu:
        emu.callbacks = CallbackFaults(lose_rate=1.0)
        await submit(http, emu, hookUrl=rec.url)
        await wait_until(lambda: emu.counters.callbacks_lost == 1)
        emu.callbacks = CallbackFaults(duplicate_rate=1.0)
        job_id = await submit(http, emu, hookUrl=rec.url)
        await wait_until(lambda: len(rec.bodies) == 2)
        assert [b["jobId"] for b in rec.bodies] == [job_id, job_id]
        assert emu.counters.callbacks_sent == 2
        assert emu.jobs[job_id].callbacks == 2


async def test_callback_failures_are_counted(http: aiohttp.ClientSession) -> None:
    """A non-2xx answer or an unreachable receiver counts as a failed delivery."""
    async with receiver() as rec, Emulator(job_duration=0.02) as emu:
        rec.status = 500
        await submit(http, emu, hookUrl=rec.url)
        await wait_until(lambda: emu.counters.callbacks_failed == 1)
        await submit(http, emu, hookUrl="http://127.0.0.1:9/closed")
        await wait_until(lambda: emu.counters.callbacks_failed == 2)
        assert emu.counters.callbacks_sent == 2


async def test_callback_delay(http: aiohttp.ClientSession) -> None:
    """CallbackFaults.delay holds the delivery after the job ended."""
    async with receiver() as rec, Emulator(job_duration=0.0) as emu:
        emu.callbacks.delay = 0.3
        job_id = await submit(http, emu, hookUrl=rec.url)
        assert emu.jobs[job_id].status == "SUCCESS"
        await anyio.sleep(0.15)
        assert rec.bodies == []
        await wait_until(lambda: len(rec.bodies) == 1)


async def test_callback_before_reply(http: aiohttp.ClientSession) -> None:
    """With before_reply and an instant job, the callback lands before the submit reply."""
    async with (
        receiver() as rec,
        Emulator(job_duration=0, callbacks=CallbackFaults(before_reply=True)) as emu,
    ):
        job_id = await submit(http, emu, hookUrl=rec.url)
        assert [b["jobId"] for b in rec.bodies] == [job_id]
        assert rec.bodies[0]["status"] == "SUCCESS"


async def test_many_jobs_all_called_back(http: aiohttp.ClientSession) -> None:
    """Hundreds of concurrent jobs each get exactly one callback."""
    async with receiver() as rec, Emulator(job_duration=(0.05, 0.2), seed=7) as emu:
        ids = await asyncio.gather(*(submit(http, emu, hookUrl=rec.url) for _ in range(300)))
        await wait_until(lambda: len(rec.bodies) == 300, timeout=15)
        assert sorted(b["jobId"] for b in rec.bodies) == sorted(ids)
        assert emu.counters.callbacks_failed == 0
        assert emu._timers == {}
        assert emu._in_flight == {}


async def test_early_callback_with_a_running_job(http: aiohttp.ClientSession) -> None:
    """early_rate: the job ends at once and its callback lands before the submit reply."""
    async with (
        receiver() as rec,
        Emulator(job_duration=10, callbacks=CallbackFaults(early_rate=1.0)) as emu,
    ):
        job_id = await submit(http, emu, hookUrl=rec.url)
        assert [b["jobId"] for b in rec.bodies] == [job_id]
        assert rec.bodies[0]["status"] == "SUCCESS"
        assert emu._timers == {}


async def test_forged_callbacks(http: aiohttp.ClientSession) -> None:
    """forge_rate: a SUCCESS on a made-up token and one on the job's own hook, while it runs."""
    async with (
        receiver() as rec,
        aiohttp.ClientSession() as files,
        Emulator(job_duration=0.3, callbacks=CallbackFaults(forge_rate=1.0)) as emu,
    ):
        hook = rec.url + "/the-token"
        job_id = await submit(http, emu, hookUrl=hook)
        await wait_until(lambda: emu.counters.callbacks_forged == 2)
        assert emu.jobs[job_id].status == "ON_QUEUE"
        assert len(rec.paths) == 2
        assert rec.paths[0] != "/hook/the-token"
        assert rec.paths[0].startswith("/hook/")
        assert rec.paths[1] == "/hook/the-token"
        for body in rec.bodies:
            assert (body["jobId"], body["status"]) == (job_id, "SUCCESS")
        async with files.get(rec.bodies[1]["data"]["imageUrl"]) as resp:
            assert job_of_image(await resp.read()) == "forged"
        await wait_until(lambda: len(rec.bodies) == 3)  # then the genuine callback
        assert rec.bodies[2]["data"]["imageUrl"] == emu.jobs[job_id].image_url


async def test_cross_job_callback(http: aiohttp.ClientSession) -> None:
    """cross_rate: a job's hook first gets another (ended) job's body, then its own."""
    async with receiver() as rec, Emulator(job_duration=0.05) as emu:
        first = await submit(http, emu)
        await anyio.sleep(0.1)
        assert (await fetch(http, emu, first))[1]["status"] == "SUCCESS"
        emu.callbacks.cross_rate = 1.0
        second = await submit(http, emu, hookUrl=rec.url)
        await wait_until(lambda: len(rec.bodies) == 2)
        assert [b["jobId"] for b in rec.bodies] == [first, second]
        assert rec.bodies[0]["data"]["imageUrl"] == emu.jobs[first].image_url
        assert emu.counters.callbacks_crossed == 1


# --------------------------------------------------------------------------- faults


async def test_status_fault_before_accept(emulator: Emulator, http: aiohttp.ClientSession) -> None:
    """A status fault replaces the reply before processing: nothing billed, no job."""
    fault = emulator.add_fault(Fault(route=SUBMIT, status=500, count=1))
    status, body = await post_json(http, emulator, SUBMIT, {"prompt": "p"})
    assert status == 500
    assert body == {"status": "FAILED", "message": "Internal server error", "data": None}
    assert fault.fired == 1
    assert emulator.jobs == {}
    assert emulator.counters.billed.total() == 0
    assert (await post_json(http, emulator, SUBMIT, {"prompt": "p"}))[0] == 200
    assert fault.fired == 1
    assert emulator.counters.responses[500] == 1


async def test_status_fault_after_accept_bills(
    emulator: Emulator, http: aiohttp.ClientSession
) -> None:
    """An after_accept fault processes the request (billed, counted) and then fails the reply."""
    emulator.add_fault(Fault(route=GEN, status=502, after_accept=True))
    emulator.add_fault(Fault(route=SUBMIT, status=504, after_accept=True))
    status, body = await post_json(http, emulator, GEN, {"prompt": "once"})
    assert status == 502
    assert body["status"] == "FAILED"
    status, _ = await post_json(http, emulator, SUBMIT, {"prompt": "job"})
    assert status == 504
    assert emulator.counters.billed == {GEN: 1, SUBMIT: 1}
    assert emulator.counters.submits_by_prompt == {"once": 1, "job": 1}
    assert len(emulator.jobs) == 1


@pytest.mark.parametrize(
    ("route", "status", "shape"),
    [
        (GEN, 400, "openai"),
        (EDIT, 404, "openai"),
        (GEN, 429, "envelope"),
        (GEN, 499, "envelope"),
        (GEN, 503, "envelope"),
        (SUBMIT, 400, "envelope"),
        (FETCH, 403, "envelope"),
    ],
)
async def test_status_fault_body_shape(
    emulator: Emulator, http: aiohttp.ClientSession, route: str, status: int, shape: str
) -> None:
    """Status faults use OpenAI's shape for /v1 4xx and the envelope for gateway codes and 5xx."""
    emulator.add_fault(Fault(route=route, status=status, retry_after=1.5))
    async with http.post(emulator.url + route, json={}, headers=key(emulator)) as resp:
        assert resp.status == status
        assert resp.headers["Retry-After"] == "1.5"
        body = await resp.json()
    if shape == "openai":
        assert set(body["error"]) == {"message", "type", "param", "code"}
    else:
        assert (body["status"], body["data"]) == ("FAILED", None)


async def test_status_fault_401_and_custom_body(
    emulator: Emulator, http: aiohttp.ClientSession
) -> None:
    """A 401 fault sends the gateway's exact body; ``body`` overrides any fault body."""
    emulator.add_fault(Fault(route=GEN, status=401, count=1))
    emulator.add_fault(Fault(route=GEN, status=500, body=b"<html>oops</html>", count=1))
    async with http.post(emulator.url + GEN, json={}, headers=key(emulator)) as resp:
        assert (resp.status, await resp.read()) == (401, UNAUTHORIZED)
    async with http.post(emulator.url + GEN, json={}, headers=key(emulator)) as resp:
        assert (resp.status, await resp.read()) == (500, b"<html>oops</html>")


@pytest.mark.parametrize("after_accept", [False, True])
async def test_drop_fault_disconnects(
    emulator: Emulator, http: aiohttp.ClientSession, after_accept: bool
) -> None:
    """A drop closes the connection with no response; after_accept still creates the job."""
    emulator.add_fault(Fault(route=SUBMIT, kind="drop", count=1, after_accept=after_accept))
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await post_json(http, emulator, SUBMIT, {"prompt": "p"})
    assert emulator.counters.drops == 1
    assert emulator.counters.billed[SUBMIT] == (1 if after_accept else 0)
    assert len(emulator.jobs) == (1 if after_accept else 0)
    assert (await post_json(http, emulator, SUBMIT, {"prompt": "p"}))[0] == 200


async def test_malformed_fault(emulator: Emulator, http: aiohttp.ClientSession) -> None:
    """A malformed fault answers 200 application/json with a body that is not JSON."""
    emulator.add_fault(Fault(route=FETCH, kind="malformed"))
    async with http.get(emulator.url + FETCH, params={"jobId": "x"}, headers=key(emulator)) as resp:
        assert resp.status == 200
        assert resp.content_type == "application/json"
        raw = await resp.read()
    with pytest.raises(ValueError, match=r"Unterminated|Expecting"):
        json.loads(raw)
    assert emulator.counters.fetches == 0


async def test_latency_fault_combines_with_status(
    emulator: Emulator, http: aiohttp.ClientSession
) -> None:
    """A latency fault delays the request, and another fault still applies to it."""
    emulator.add_fault(Fault(kind="latency", delay=0.25, count=1))
    emulator.add_fault(Fault(status=503, count=1))
    start = time.perf_counter()
    status, _ = await post_json(http, emulator, GEN, {"prompt": "p"})
    assert time.perf_counter() - start >= 0.25
    assert status == 503
    start = time.perf_counter()
    assert (await post_json(http, emulator, GEN, {"prompt": "p"}))[0] == 200
    assert time.perf_counter() - start < 0.25


async def test_fault_rate_is_seeded(http: aiohttp.ClientSession) -> None:
    """A fault with rate fires on about that share of requests, the same way for one seed."""

    async def run() -> list[int]:
        async with Emulator(seed=42) as emu:
            emu.add_fault(Fault(route=FETCH, status=429, rate=0.3))
            statuses = []
            for _ in range(100):
                statuses.append((await fetch(http, emu, "x"))[0])
            return statuses

    first, second = await run(), await run()
    assert first == second
    assert 15 <= first.count(429) <= 45
    assert set(first) == {404, 429}


async def test_fault_route_matching(emulator: Emulator, http: aiohttp.ClientSession) -> None:
    """A route fault hits only its path, ``*`` hits every API path but never /files."""
    _, body = await post_json(http, emulator, GEN, {"prompt": "p"})
    url = body["data"][0]["url"]
    emulator.add_fault(Fault(route=FETCH, status=500))
    assert (await post_json(http, emulator, GEN, {"prompt": "p"}))[0] == 200
    emulator.clear_faults()
    emulator.add_fault(Fault(status=500))
    assert (await post_json(http, emulator, GEN, {"prompt": "p"}))[0] == 500
    assert (await fetch(http, emulator, "x"))[0] == 500
    async with http.get(url) as resp:
        assert resp.status == 200


def test_fault_kind_is_checked() -> None:
    """An unknown fault kind is refused at construction."""
    with pytest.raises(ValueError, match="kind"):
        Fault(kind="explode")  # type: ignore[arg-type]


async def test_status_fault_with_an_html_page(
    emulator: Emulator, http: aiohttp.ClientSession
) -> None:
    """content_type sends a fault body as it is, e.g. a gateway's HTML error page."""
    page = b"<html><body><h1>502 Bad Gateway</h1></body></html>"
    emulator.add_fault(Fault(route=SUBMIT, status=502, body=page, content_type="text/html"))
    async with http.post(emulator.url + SUBMIT, json={"prompt": "p"}, headers=key(emulator)) as r:
        assert (r.status, r.content_type, await r.read()) == (502, "text/html", page)
    assert emulator.jobs == {}


async def test_hanging_reply_after_accept(emulator: Emulator, http: aiohttp.ClientSession) -> None:
    """An after_accept latency fault holds the reply of a job that already exists."""
    emulator.add_fault(Fault(route=SUBMIT, kind="latency", delay=0.4, after_accept=True))
    async with anyio.create_task_group() as tg:
        replies: list[str] = []

        async def send() -> None:
            replies.append(await submit(http, emulator))

        tg.start_soon(send)
        await wait_until(lambda: len(emulator.jobs) == 1)
        assert replies == []
    assert replies == list(emulator.jobs)


async def test_swap_fault_answers_another_jobs_body(
    emulator: Emulator, http: aiohttp.ClientSession
) -> None:
    """A swap fault answers a fetch with another (ended) job's body; its jobId is not asked."""
    other = await submit(http, emulator, prompt="other")
    await anyio.sleep(0.2)
    mine = await submit(http, emulator, prompt="mine")
    emulator.add_fault(Fault(route=FETCH, kind="swap", count=1))
    status, body = await fetch(http, emulator, mine)
    assert (status, body["jobId"], body["status"]) == (200, other, "SUCCESS")
    assert body["data"]["prompt"] == "other"
    assert emulator.counters.fetches_swapped == 1
    assert (await fetch(http, emulator, mine))[1]["jobId"] == mine
    # No other job, or not a 200: the reply is the real one.
    async with Emulator() as lone:
        lone.add_fault(Fault(route=FETCH, kind="swap"))
        only = await submit(http, lone)
        assert (await fetch(http, lone, only))[1]["jobId"] == only
        assert (await fetch(http, lone, "nope"))[0] == 404
        assert lone.counters.fetches_swapped == 0


async def test_job_images_name_their_job_and_charges_are_kept(
    emulator: Emulator, http: aiohttp.ClientSession
) -> None:
    """Each 4o image carries its job id (and still decodes); the ledger lists each charge."""
    ids = [await submit(http, emulator, prompt=f"p{i}") for i in range(2)]
    await post_json(http, emulator, GEN, {"prompt": "sync", "n": 2})
    await anyio.sleep(0.2)
    for job_id in ids:
        _, body = await fetch(http, emulator, job_id)
        async with http.get(body["data"]["imageUrl"]) as resp:
            data = await resp.read()
            assert resp.content_length == len(data)
        assert job_of_image(data) == job_id
        with Image.open(io.BytesIO(data)) as img:
            img.load()
            assert (img.format, img.size) == ("PNG", (1024, 1024))
    assert emulator.charges == [
        Charge(SUBMIT, "p0", 2, ids[0]),
        Charge(SUBMIT, "p1", 2, ids[1]),
        Charge(GEN, "sync", 2),
    ]
    assert job_of_image(png(8, 8)) is None
    assert job_of_image(b"not an image") is None


# --------------------------------------------------------------------------- files


async def test_image_urls_expire(http: aiohttp.ClientSession) -> None:
    """A served image answers 404 once url_ttl has passed."""
    async with Emulator(url_ttl=0.2) as emu:
        _, body = await post_json(http, emu, GEN, {"prompt": "p"})
        url = body["data"][0]["url"]
        async with http.get(url) as resp:
            assert resp.status == 200
        await anyio.sleep(0.3)
        async with http.get(url) as resp:
            assert resp.status == 404
        async with http.get(emu.file_url("missing.png")) as resp:
            assert resp.status == 404
        assert emu.counters.files_served == 1
        assert emu.counters.files_expired == 1


async def test_key_seen_on_files(emulator: Emulator, http: aiohttp.ClientSession) -> None:
    """A file request that carries the key is counted (a correct SDK never sends it there)."""
    _, body = await post_json(http, emulator, GEN, {"prompt": "p"})
    url = body["data"][0]["url"]
    async with http.get(url) as resp:
        assert resp.status == 200
    assert emulator.counters.key_seen_on_files == 0
    async with http.get(url, headers=key(emulator)) as resp:
        assert resp.status == 200
    async with http.get(url, headers={"Authorization": "Bearer x"}) as resp:
        assert resp.status == 200
    assert emulator.counters.key_seen_on_files == 2
    assert emulator.counters.requests.get("/files/" + url.rsplit("/", 1)[1]) is None


# --------------------------------------------------------------------------- lifecycle


async def test_clean_exit_leaves_no_tasks(http: aiohttp.ClientSession) -> None:
    """Exit cancels pending timers, slow replies and callback deliveries: no task is left."""
    before = asyncio.all_tasks()
    async with receiver() as rec:
        emu = Emulator(job_duration=0.02, sync_latency=5, callbacks=CallbackFaults(delay=10))
        async with emu:
            await submit(http, emu, hookUrl=rec.url)
            emu.job_duration = 10
            await submit(http, emu, hookUrl=rec.url)
            slow = asyncio.ensure_future(post_json(http, emu, GEN, {"prompt": "slow"}))
            await anyio.sleep(0.1)
            assert len(emu._timers) == 1
            assert len(asyncio.all_tasks()) > len(before)
            start = time.perf_counter()
        assert time.perf_counter() - start < 2
        with pytest.raises(aiohttp.ClientError):
            await slow
        assert rec.bodies == []
    assert asyncio.all_tasks() == before
    assert emu._timers == {}


async def test_failed_start_cleans_up(emulator: Emulator) -> None:
    """A port already in use fails the start, and the half-started emulator leaves nothing."""
    port = int(emulator.url.rsplit(":", 1)[1])
    before = asyncio.all_tasks()
    second = Emulator(port=port)
    with pytest.raises(OSError, match="address already in use"):
        async with second:
            pytest.fail("the second emulator should not start")
    assert asyncio.all_tasks() == before
    assert second._session is None
    assert second._tg is None


async def test_errors_in_the_block_come_out_unwrapped() -> None:
    """An error raised inside ``async with Emulator()`` propagates as itself."""
    with pytest.raises(KeyError):
        async with Emulator():
            raise KeyError("boom")


async def test_cancelled_block_stops_cleanly(http: aiohttp.ClientSession) -> None:
    """Cancelling the block (a timeout around it) still stops the emulator and leaves no task."""
    before = asyncio.all_tasks()
    with anyio.move_on_after(0.3) as scope:
        async with Emulator(job_duration=5) as emu:
            await submit(http, emu)
            await anyio.sleep(10)
    assert scope.cancelled_caught
    assert asyncio.all_tasks() == before
    assert emu._timers == {}
    with pytest.raises(RuntimeError):
        _ = emu.url


async def test_counters_snapshot_is_plain(emulator: Emulator, http: aiohttp.ClientSession) -> None:
    """snapshot() gives plain dicts and numbers."""
    await post_json(http, emulator, GEN, {"prompt": "p"})
    snap = emulator.counters.snapshot()
    assert snap["requests"] == {GEN: 1}
    assert type(snap["requests"]) is dict
    assert snap["responses"] == {200: 1}
    assert snap["billed"] == {GEN: 1}
    assert set(snap) == {f.name for f in attrs.fields(Counters)}
    job = EmulatedJob("j", "secret", "p", [], "https://h/tok", 0.0, 1.0, will_fail=False)
    assert "secret" not in repr(job)
    assert "tok" not in repr(job)


@pytest.fixture
def cli_env() -> dict[str, str]:
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    return env


async def test_standalone_main(http: aiohttp.ClientSession, cli_env: dict[str, str]) -> None:
    """``python -m ttapi_async.testing --port 0`` prints its URL, serves, and stops on SIGTERM."""
    command = [
        sys.executable, "-m", "ttapi_async.testing", "--port", "0", "--api-key", "k1",
        "--job-duration", "0.01", "0.02", "--sync-latency", "0", "--read-timeout", "0.3",
        "--max-body", "4096",
    ]  # fmt: skip
    async with await anyio.open_process(command, env=cli_env, stderr=None) as proc:
        try:
            assert proc.stdout is not None
            line = ""
            with anyio.fail_after(20):
                async for chunk in TextReceiveStream(proc.stdout):
                    line += chunk
                    if "\n" in line:
                        break
            match = re.fullmatch(
                r"TTAPI emulator on (http://127\.0\.0\.1:(\d+)) \(api key: k1\)\n", line
            )
            assert match, line
            assert match.group(2) != "0"
            headers = {"TT-API-KEY": "k1"}
            url = match.group(1) + SUBMIT
            async with http.post(url, json={"prompt": "p"}, headers=headers) as resp:
                assert resp.status == 200
            async with http.post(url, json={"prompt": "p" * 5000}, headers=headers) as resp:
                assert resp.status == 413
            port = int(match.group(2))
            async with await anyio.connect_tcp("127.0.0.1", port) as sock:
                await sock.send(
                    f"POST {SUBMIT} HTTP/1.1\r\nHost: h\r\nTT-API-KEY: k1\r\n"
                    "Content-Length: 9\r\n\r\n{".encode()
                )
                with anyio.fail_after(5):
                    reply = b""
                    with contextlib.suppress(anyio.EndOfStream):
                        while True:  # until the server closes the stalled connection
                            reply += await sock.receive()
                assert reply.startswith(b"HTTP/1.1 408 ")
            proc.send_signal(signal.SIGTERM)
            with anyio.fail_after(10):
                assert await proc.wait() == 0
        finally:
            if proc.returncode is None:
                proc.kill()
