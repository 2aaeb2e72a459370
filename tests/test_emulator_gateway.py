"""The emulator's gateway over real HTTP: keys, routing, and the caps and clock on request
bodies (``ttapi_async/testing/_gateway.py``)."""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

import aiohttp
import anyio
import pytest
from emulator_helpers import (
    DALLE3,
    EDIT,
    FETCH,
    GEN,
    SUBMIT,
    UNAUTHORIZED,
    key,
    noise_png,
    post_json,
    submit,
)

import ttapi_async as tt
from ttapi_async.testing import (
    Emulator,
)
from ttapi_async.testing._emulator import DEFAULT_MAX_BODY


if TYPE_CHECKING:
    from collections.abc import AsyncIterator


pytestmark = pytest.mark.anyio


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


# --------------------------------------------------------------------------- request bodies


async def test_edit_with_a_2mb_image_is_accepted_by_sdk_and_openai(emulator: Emulator) -> None:
    """A valid gpt-image-1 edit with a 2 MB image is served (aiohttp alone stops at 1 MiB)."""
    # Imported here, not at the top: about a second, paid only by a worker that runs this.
    import openai  # noqa: PLC0415

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
    # Imported here, not at the top: about a second, paid only by a worker that runs this.
    import openai  # noqa: PLC0415

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
