"""The aiohttp transport over real HTTP: the key header and body on the wire, redirects,
pool and connect errors, malformed replies, downloads without the key, proxies."""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import Awaitable, Callable

import anyio
import pytest
from aiohttp import web
from helpers import wait_until
from PIL import Image
from servers import OK_IMAGES, Recorder, Serve, client, gated, reply_json

import ttapi_async as tt


pytestmark = pytest.mark.anyio


async def test_sends_key_header_and_json(serve: Serve) -> None:
    """The key goes in TT-API-KEY with a JSON body and a User-Agent."""
    rec = Recorder(reply_json(OK_IMAGES))
    async with client(await serve(rec.app()), headers={"X-Trace": "1"}) as c:
        r = await c.images.generate(prompt="fox", model="gpt-image-1", quality="low")
    seen = rec.seen[0]
    assert seen["path"] == "/v1/images/generations"
    assert seen["headers"]["TT-API-KEY"] == "test-key-123"
    assert seen["headers"]["Content-Type"] == "application/json"
    assert seen["headers"]["User-Agent"].startswith("ttapi-async/")
    assert seen["headers"]["X-Trace"] == "1"
    assert json.loads(seen["body"]) == {"prompt": "fox", "model": "gpt-image-1", "quality": "low"}
    assert r.http is not None
    assert (r.http.status, r.http.attempts) == (200, 1)


async def test_cross_host_redirect_is_refused_and_key_stays_home(serve: Serve) -> None:
    """A redirect to another host is not followed, so the key never reaches it."""
    elsewhere = Recorder(reply_json(OK_IMAGES))
    other = await serve(elsewhere.app())
    other = other.replace("127.0.0.1", "localhost")

    async def redirect(_: web.Request) -> web.StreamResponse:
        raise web.HTTPTemporaryRedirect(other + "/v1/images/generations")

    rec = Recorder(redirect)
    async with client(await serve(rec.app())) as c:
        with pytest.raises(tt.RedirectError, match="another host"):
            await c.images.generate(prompt="fox", model="gpt-image-1")
    assert elsewhere.seen == []


async def test_same_origin_redirect_is_followed(serve: Serve) -> None:
    """A 307 within the API's origin is followed with the key and the body."""

    async def redirect(_: web.Request) -> web.StreamResponse:
        raise web.HTTPTemporaryRedirect("/v2/images/generations")

    rec = Recorder(redirect, reply_json(OK_IMAGES))
    async with client(await serve(rec.app())) as c:
        await c.images.generate(prompt="fox", model="gpt-image-1")
    assert [s["path"] for s in rec.seen] == ["/v1/images/generations", "/v2/images/generations"]
    assert rec.seen[1]["headers"]["TT-API-KEY"] == "test-key-123"
    assert json.loads(rec.seen[1]["body"])["prompt"] == "fox"


async def test_one_deadline_across_redirect_hops(serve: Serve) -> None:
    """Redirect hops share the call's deadline instead of restarting it."""

    def hop(to: str) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def handler(_: web.Request) -> web.StreamResponse:
            await asyncio.sleep(0.3)
            raise web.HTTPTemporaryRedirect(to)

        return handler

    rec = Recorder(hop("/hop1"), hop("/hop2"), hop("/hop3"), reply_json(OK_IMAGES))
    async with client(await serve(rec.app())) as c:
        loop = asyncio.get_running_loop()
        start = loop.time()
        with pytest.raises(tt.RequestTimeout):
            await c.gpt4o.fetch("j1", timeout=0.6)
        assert loop.time() - start < 0.9


@pytest.mark.parametrize("location", ["http://[::1", "http://127.0.0.1:99999/x"])
async def test_malformed_location_is_a_redirect_error(serve: Serve, location: str) -> None:
    """A Location header that is not a URL raises RedirectError, not ValueError."""

    async def bad(_: web.Request) -> web.StreamResponse:
        return web.Response(status=307, headers={"Location": location})

    async with client(await serve(Recorder(bad).app())) as c:
        with pytest.raises(tt.RedirectError, match="invalid Location"):
            await c.gpt4o.fetch("j1")


async def test_pool_timeout_is_a_connect_error(serve: Serve) -> None:
    """No connection from the pool in time raises ConnectError (never sent, retried)."""
    release = asyncio.Event()
    rec = Recorder(gated(release))
    async with client(await serve(rec.app()), max_connections=1, pool_timeout=0.05) as c:
        slow = asyncio.create_task(c.images.generate(prompt="a", model="gpt-image-1"))
        await wait_until(lambda: len(rec.seen) == 1)  # it holds the only connection
        with pytest.raises(tt.ConnectError), anyio.fail_after(10):
            await c.images.generate(prompt="b", model="gpt-image-1")
        release.set()
        await slow
    assert len(rec.seen) == 1


async def test_connect_refused_is_retried_then_raised() -> None:
    """Nothing listening: the request never left, so it is retried, then ConnectError."""
    async with client("http://127.0.0.1:9") as c:
        with pytest.raises(tt.ConnectError) as info:
            await c.images.generate(prompt="fox", model="gpt-image-1")
    assert not info.value.request_sent


async def test_malformed_http_reply_does_not_chain_the_key() -> None:
    """An unparseable HTTP reply maps to ResponseFormatError without chaining aiohttp's error,
    whose repr carries the request headers (and so the key)."""

    async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(1024)
        writer.write(b"HTTP/1.1 abc nonsense\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(garbage, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with client(f"http://127.0.0.1:{port}") as c:
            with pytest.raises(tt.TTAPIError) as info:
                await c.gpt4o.fetch("j1")
    finally:
        server.close()
        await server.wait_closed()
    chain: list[BaseException] = []
    exc: BaseException | None = info.value
    while exc is not None:
        chain.append(exc)
        exc = exc.__cause__ or exc.__context__
    assert all("test-key-123" not in repr(e) and "test-key-123" not in str(e) for e in chain)


async def test_download_never_sends_the_key(serve: Serve) -> None:
    """Image downloads go without the API key; an expired URL raises NotFoundError."""
    buf = io.BytesIO()
    Image.new("RGB", (4, 4)).save(buf, "PNG")

    async def image(_: web.Request) -> web.StreamResponse:
        return web.Response(body=buf.getvalue(), content_type="image/png")

    cdn = Recorder(image, reply_json({"status": "FAILED", "message": "gone"}, 404))
    cdn_url = await serve(cdn.app())
    async with client("http://127.0.0.1:9") as c:
        assert await c.download(cdn_url + "/a.png") == buf.getvalue()
        with pytest.raises(tt.NotFoundError):
            await c.download(cdn_url + "/a.png")
    assert all("TT-API-KEY" not in s["headers"] for s in cdn.seen)


async def test_trust_env_uses_the_proxy(serve: Serve, monkeypatch: pytest.MonkeyPatch) -> None:
    """With trust_env=True, HTTP_PROXY from the environment carries the request."""
    rec = Recorder(reply_json(OK_IMAGES))
    proxy = await serve(rec.app())
    monkeypatch.setenv("HTTP_PROXY", proxy)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    async with client("http://api.ttapi.invalid", trust_env=True) as c:
        await c.images.generate(prompt="fox", model="gpt-image-1")
    assert rec.seen[0]["headers"]["Host"] == "api.ttapi.invalid"
