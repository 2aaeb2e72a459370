"""The client over real HTTP against tiny aiohttp apps: retries, timeouts, drops, redirects."""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from PIL import Image

import ttapi_async as tt


pytestmark = pytest.mark.anyio

Serve = Callable[[web.Application], Awaitable[str]]
FAST = tt.RetryPolicy(max_retries=2, initial_delay=0.01, max_delay=0.02)
OK_IMAGES = {"created": 1, "data": [{"b64_json": "aGk="}]}
ON_QUEUE = {"status": "ON_QUEUE", "message": None, "jobId": "j1", "data": {"imageUrl": None}}


class Recorder:
    """An app whose replies are scripted per call; it records every request it sees."""

    def __init__(self, *replies: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> None:
        self.replies = list(replies)
        self.seen: list[dict[str, Any]] = []

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        self.seen.append(
            {
                "path": request.path,
                "headers": dict(request.headers),
                "body": body,
                "query": dict(request.query),
            }
        )
        reply = self.replies[min(len(self.seen), len(self.replies)) - 1]
        return await reply(request)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self.handle)
        return app


def reply_json(
    obj: object, status: int = 200, headers: dict[str, str] | None = None
) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def handler(_: web.Request) -> web.StreamResponse:
        return web.json_response(obj, status=status, headers=headers)

    return handler


def reply_raw(
    raw: bytes, status: int = 200
) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def handler(_: web.Request) -> web.StreamResponse:
        return web.Response(body=raw, status=status, content_type="application/json")

    return handler


async def drop(request: web.Request) -> web.StreamResponse:
    """Close the connection without answering."""
    assert request.transport is not None
    request.transport.close()
    await asyncio.sleep(0.05)
    return web.Response()


def sleeper(seconds: float) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def handler(_: web.Request) -> web.StreamResponse:
        await asyncio.sleep(seconds)
        return web.json_response(OK_IMAGES)

    return handler


def client(url: str, **kwargs: Any) -> tt.Client:
    kwargs.setdefault("retry", FAST)
    return tt.Client("test-key-123", base_url=url, **kwargs)


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


async def test_validation_error_sends_nothing(serve: Serve) -> None:
    """A broken rule raises before any request is made."""
    rec = Recorder(reply_json(OK_IMAGES))
    async with client(await serve(rec.app())) as c:
        with pytest.raises(tt.ValidationError, match="size"):
            await c.images.generate(prompt="fox", model="dall-e-3", size="256x256")
        with pytest.raises(tt.ValidationError, match="quality"):
            await c.dalle3.generate(prompt="fox", size="1024x1024", quality="low")
        with pytest.raises(tt.ValidationError, match="refer_images"):
            await c.gpt4o.submit(prompt="fox", refer_images=["not-a-url"])
    assert rec.seen == []


async def test_rate_limit_is_retried_after_retry_after(serve: Serve) -> None:
    """A 429 with Retry-After is retried once the hint has passed, even for a billable call."""
    rec = Recorder(
        reply_json(
            {"status": "FAILED", "message": "slow down", "data": None}, 429, {"Retry-After": "0.2"}
        ),
        reply_json(OK_IMAGES),
    )
    async with client(await serve(rec.app())) as c:
        loop = asyncio.get_running_loop()
        start = loop.time()
        r = await c.images.generate(prompt="fox", model="gpt-image-1")
        waited = loop.time() - start
    assert len(rec.seen) == 2
    assert waited >= 0.2
    assert r.http is not None
    assert r.http.attempts == 2
    assert c.stats.retries == 1


async def test_queue_full_is_retried_for_submit(serve: Serve) -> None:
    """A 499 (queue full) was refused before acceptance: the submit is retried."""
    rec = Recorder(
        reply_json({"status": "FAILED", "message": "queue full", "data": None}, 499),
        reply_json({"status": "SUCCESS", "message": "success", "data": {"jobId": "j9"}}),
    )
    async with client(await serve(rec.app())) as c:
        job = await c.gpt4o.submit(prompt="draw")
    assert job.job_id == "j9"
    assert len(rec.seen) == 2


async def test_retries_give_up_with_the_last_error(serve: Serve) -> None:
    """After max_retries the last error surfaces, with retry_after on it."""
    rec = Recorder(
        reply_json({"status": "FAILED", "message": "slow", "data": None}, 429, {"Retry-After": "0"})
    )
    async with client(await serve(rec.app())) as c:
        with pytest.raises(tt.RateLimitError) as info:
            await c.images.generate(prompt="fox", model="gpt-image-1")
    assert len(rec.seen) == 3
    assert info.value.retry_after == 0.0


async def test_retry_after_above_cap_is_not_waited(serve: Serve) -> None:
    """A Retry-After above max_retry_after surfaces at once."""
    rec = Recorder(
        reply_json(
            {"status": "FAILED", "message": "slow", "data": None}, 429, {"Retry-After": "3600"}
        )
    )
    async with client(await serve(rec.app())) as c:
        with pytest.raises(tt.RateLimitError):
            await c.images.generate(prompt="fox", model="gpt-image-1")
    assert len(rec.seen) == 1


async def test_insufficient_quota_is_not_retried(serve: Serve) -> None:
    """OpenAI's 429 insufficient_quota is a billing error, raised at once."""
    rec = Recorder(
        reply_json(
            {
                "error": {
                    "message": "quota",
                    "type": "insufficient_quota",
                    "param": None,
                    "code": "insufficient_quota",
                }
            },
            429,
        )
    )
    async with client(await serve(rec.app())) as c:
        with pytest.raises(tt.InsufficientBalanceError):
            await c.images.generate(prompt="fox", model="gpt-image-1")
    assert len(rec.seen) == 1


@pytest.mark.parametrize("status", [500, 502, 504])
async def test_server_error_on_billable_call_is_outcome_unknown(serve: Serve, status: int) -> None:
    """A 5xx after a billable POST is not retried; the error says the outcome is unknown."""
    rec = Recorder(reply_json({"status": "FAILED", "message": "boom", "data": None}, status))
    async with client(await serve(rec.app())) as c:
        with pytest.raises(tt.OutcomeUnknownError) as info:
            await c.gpt4o.submit(prompt="draw")
    assert len(rec.seen) == 1
    assert c.stats.outcome_unknown == 1
    assert isinstance(info.value.cause, tt.ServerError)
    assert info.value.cause.status == status
    assert info.value.__cause__ is info.value.cause
    assert info.value.operation == "gpt4o.submit"


async def test_opt_in_retries_unknown_outcomes(serve: Serve) -> None:
    """retry_unknown_outcome=True retries a billable call after a 5xx."""
    rec = Recorder(
        reply_json({"status": "FAILED", "message": "boom", "data": None}, 500),
        reply_json(OK_IMAGES),
    )
    policy = tt.RetryPolicy(initial_delay=0.01, retry_unknown_outcome=True)
    async with client(await serve(rec.app()), retry=policy) as c:
        await c.images.generate(prompt="fox", model="gpt-image-1")
    assert len(rec.seen) == 2


async def test_fetch_retries_server_errors_and_garbage(serve: Serve) -> None:
    """Fetch is free: 5xx and a malformed body are retried."""
    rec = Recorder(
        reply_json({"status": "FAILED", "message": "boom", "data": None}, 503),
        reply_raw(b'{"status": "ON_Q'),
        reply_json(ON_QUEUE),
    )
    async with client(await serve(rec.app())) as c:
        snap = await c.gpt4o.fetch("j1")
    assert snap.status is tt.JobStatus.ON_QUEUE
    assert len(rec.seen) == 3
    assert rec.seen[0]["query"] == {"jobId": "j1"}


async def test_dropped_connection_on_billable_call(serve: Serve) -> None:
    """A connection closed after the POST was written leaves the outcome unknown."""
    rec = Recorder(drop)
    async with client(await serve(rec.app())) as c:
        with pytest.raises(tt.OutcomeUnknownError) as info:
            await c.images.generate(prompt="fox", model="gpt-image-1")
    assert isinstance(info.value.cause, tt.ConnectionDroppedError)
    assert len(rec.seen) == 1


async def test_dropped_connection_on_fetch_is_retried(serve: Serve) -> None:
    """A dropped fetch is simply tried again."""
    rec = Recorder(drop, reply_json(ON_QUEUE))
    async with client(await serve(rec.app())) as c:
        await c.gpt4o.fetch("j1")
    assert len(rec.seen) == 2


async def test_malformed_success_on_billable_call_is_outcome_unknown(serve: Serve) -> None:
    """A 200 whose body cannot be read may still have been billed: outcome unknown."""
    rec = Recorder(reply_raw(b"<html>ok</html>"))
    async with client(await serve(rec.app())) as c:
        with pytest.raises(tt.OutcomeUnknownError) as info:
            await c.dalle3.generate(prompt="cat", size="1024x1024")
    assert isinstance(info.value.cause, tt.ResponseFormatError)
    assert "<html>ok</html>" in str(info.value.cause)


async def test_connect_refused_is_retried_then_raised() -> None:
    """Nothing listening: the request never left, so it is retried, then ConnectError."""
    async with client("http://127.0.0.1:9") as c:
        with pytest.raises(tt.ConnectError) as info:
            await c.images.generate(prompt="fox", model="gpt-image-1")
    assert not info.value.request_sent


async def test_timeout_while_waiting_for_answer(serve: Serve) -> None:
    """A timeout after sending: outcome unknown for billable calls, RequestTimeout for fetch."""
    rec = Recorder(sleeper(2.0))
    async with client(await serve(rec.app())) as c:
        with pytest.raises(tt.OutcomeUnknownError) as info:
            await c.images.generate(prompt="fox", model="gpt-image-1", timeout=0.2)
        assert isinstance(info.value.cause, tt.RequestTimeout)
        assert info.value.cause.request_sent
        with pytest.raises(tt.RequestTimeout) as tinfo:
            await c.gpt4o.fetch("j1", timeout=0.2)
        assert isinstance(tinfo.value, TimeoutError)


async def test_timeout_before_sending_is_a_plain_timeout(serve: Serve) -> None:
    """Waiting for a pooled connection past the deadline: never sent, so not 'unknown'."""
    rec = Recorder(sleeper(1.0))
    async with client(await serve(rec.app()), max_connections=1) as c:
        slow = asyncio.create_task(c.images.generate(prompt="a", model="gpt-image-1"))
        await asyncio.sleep(0.1)
        with pytest.raises(tt.RequestTimeout) as info:
            await c.images.generate(prompt="b", model="gpt-image-1", timeout=0.2)
        assert not info.value.request_sent
        await slow
    assert len(rec.seen) == 1  # the second request never left


async def test_pool_timeout_is_a_connect_error(serve: Serve) -> None:
    """No connection from the pool in time raises ConnectError (never sent, retried)."""
    rec = Recorder(sleeper(0.6))
    async with client(await serve(rec.app()), max_connections=1, pool_timeout=0.05) as c:
        slow = asyncio.create_task(c.images.generate(prompt="a", model="gpt-image-1"))
        await asyncio.sleep(0.05)
        with pytest.raises(tt.ConnectError):
            await c.images.generate(prompt="b", model="gpt-image-1")
        await slow
    assert len(rec.seen) == 1


async def test_timeout_bounds_retries_too(serve: Serve) -> None:
    """timeout= covers the whole call: a retry that cannot fit is not attempted."""
    rec = Recorder(
        reply_json({"status": "FAILED", "message": "slow", "data": None}, 429, {"Retry-After": "5"})
    )
    async with client(await serve(rec.app())) as c:
        with pytest.raises(tt.RateLimitError):
            await c.images.generate(prompt="fox", model="gpt-image-1", timeout=1.0)
    assert len(rec.seen) == 1


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


async def test_edit_uploads_with_sniffed_mime_types(serve: Serve, tmp_path: Any) -> None:
    """Paths, bytes and files are uploaded as multipart with types read from the bytes."""
    seen: list[tuple[str, str | None, str | None]] = []

    async def handler(request: web.Request) -> web.StreamResponse:
        reader = await request.multipart()
        async for part in reader:
            assert isinstance(part, aiohttp.BodyPartReader)
            seen.append((part.name or "", part.filename, part.headers.get("Content-Type")))
        return web.json_response(OK_IMAGES)

    app = web.Application()
    app.router.add_post("/v1/images/edits", handler)
    png, webp, jpg = io.BytesIO(), io.BytesIO(), io.BytesIO()
    Image.new("RGB", (8, 8)).save(png, "PNG")
    Image.new("RGB", (8, 8)).save(webp, "WEBP")
    Image.new("RGB", (8, 8)).save(jpg, "JPEG")
    path = tmp_path / "photo.bin"  # the name lies; the bytes decide
    path.write_bytes(jpg.getvalue())
    async with client(await serve(app)) as c:
        await c.images.edit(
            image=[str(path), webp.getvalue(), png], prompt="basket", model="gpt-image-1"
        )
    files = [s for s in seen if s[1]]
    assert [(f[0], f[2]) for f in files] == [
        ("image[]", "image/jpeg"),
        ("image[]", "image/webp"),
        ("image[]", "image/png"),
    ]
    assert ("prompt", None, None) in [(s[0], s[1], None) for s in seen]


async def test_edit_input_errors_name_the_parameter(tmp_path: Any) -> None:
    """Missing files, URLs and text-mode files are refused before sending."""
    async with client("http://127.0.0.1:9") as c:
        with pytest.raises(tt.ValidationError, match="cannot read"):
            await c.images.edit(image=str(tmp_path / "missing.png"), prompt="x")
        with pytest.raises(tt.ValidationError, match="URLs"):
            await c.images.edit(image="https://example.com/a.png", prompt="x")
        with pytest.raises(tt.ValidationError, match="binary"):
            await c.images.edit(image=io.StringIO("text"), prompt="x")  # type: ignore[arg-type]


async def test_lifecycle(serve: Serve) -> None:
    """Opens lazily, refuses use after close and reopening; the repr never shows the key."""
    rec = Recorder(reply_json(OK_IMAGES))
    c = client(await serve(rec.app()))
    assert "test-key-123" not in repr(c)
    await c.images.generate(prompt="fox", model="gpt-image-1")
    await c.aclose()
    assert c.closed
    with pytest.raises(tt.ClientClosedError):
        await c.images.generate(prompt="fox", model="gpt-image-1")
    with pytest.raises(tt.ClientClosedError):
        async with c:
            pass
    assert len(rec.seen) == 1


def test_configuration_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """TTAPI_API_KEY and TTAPI_BASE_URL are read; a missing key is a clear error."""
    monkeypatch.setenv("TTAPI_API_KEY", "env-key")
    monkeypatch.setenv("TTAPI_BASE_URL", "https://api.ttapi.org/")
    c = tt.Client()
    assert c.base_url == "https://api.ttapi.org"
    monkeypatch.delenv("TTAPI_API_KEY")
    with pytest.raises(tt.ValidationError, match="TTAPI_API_KEY"):
        tt.Client()
    with pytest.raises(tt.ValidationError, match="base_url"):
        tt.Client("k", base_url="api.ttapi.io")


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


async def test_result_models_are_frozen(serve: Serve) -> None:
    """Results are frozen attrs models."""
    rec = Recorder(reply_json(OK_IMAGES))
    async with client(await serve(rec.app())) as c:
        r = await c.images.generate(prompt="fox", model="gpt-image-1")
    with pytest.raises(AttributeError):
        r.created = 2  # type: ignore[misc]


async def test_exhausted_timeout_sends_nothing(serve: Serve) -> None:
    """timeout=0 (or less) raises RequestTimeout before anything is written."""
    rec = Recorder(reply_json(OK_IMAGES))
    async with client(await serve(rec.app())) as c:
        for timeout in (0, -5):
            with pytest.raises(tt.RequestTimeout) as info:
                await c.images.generate(prompt="fox", model="gpt-image-1", timeout=timeout)
            assert not info.value.request_sent
    assert rec.seen == []


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


async def test_doubt_survives_a_later_definite_error(serve: Serve) -> None:
    """With retry_unknown_outcome, a 500 then a 429 is still an unknown outcome."""
    rec = Recorder(
        reply_json({"status": "FAILED", "message": "boom", "data": None}, 500),
        reply_json(
            {"status": "FAILED", "message": "slow", "data": None}, 429, {"Retry-After": "3600"}
        ),
    )
    policy = tt.RetryPolicy(initial_delay=0.01, retry_unknown_outcome=True)
    async with client(await serve(rec.app()), retry=policy) as c:
        with pytest.raises(tt.OutcomeUnknownError) as info:
            await c.gpt4o.submit(prompt="draw")
    assert isinstance(info.value.cause, tt.ServerError)
    assert len(rec.seen) == 2


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
