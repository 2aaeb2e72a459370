"""The send path over real HTTP against tiny aiohttp apps: retries, outcome unknown on
billable calls, fetch retries and the one deadline per call."""

from __future__ import annotations

import asyncio

import anyio
import pytest
from helpers import wait_until
from servers import (
    OK_IMAGES,
    ON_QUEUE,
    Recorder,
    Serve,
    client,
    drop,
    gated,
    reply_json,
    reply_raw,
    sleeper,
)

import ttapi_async as tt


pytestmark = pytest.mark.anyio


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


async def test_dropped_connection_on_billable_call(serve: Serve) -> None:
    """A connection closed after the POST was written leaves the outcome unknown."""
    rec = Recorder(drop)
    async with client(await serve(rec.app())) as c:
        with pytest.raises(tt.OutcomeUnknownError) as info:
            await c.images.generate(prompt="fox", model="gpt-image-1")
    assert isinstance(info.value.cause, tt.ConnectionDroppedError)
    assert len(rec.seen) == 1


async def test_malformed_success_on_billable_call_is_outcome_unknown(serve: Serve) -> None:
    """A 200 whose body cannot be read may still have been billed: outcome unknown."""
    rec = Recorder(reply_raw(b"<html>ok</html>"))
    async with client(await serve(rec.app())) as c:
        with pytest.raises(tt.OutcomeUnknownError) as info:
            await c.dalle3.generate(prompt="cat", size="1024x1024")
    assert isinstance(info.value.cause, tt.ResponseFormatError)
    assert "<html>ok</html>" in str(info.value.cause)


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


async def test_dropped_connection_on_fetch_is_retried(serve: Serve) -> None:
    """A dropped fetch is simply tried again."""
    rec = Recorder(drop, reply_json(ON_QUEUE))
    async with client(await serve(rec.app())) as c:
        await c.gpt4o.fetch("j1")
    assert len(rec.seen) == 2


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
    release = asyncio.Event()
    rec = Recorder(gated(release))
    async with client(await serve(rec.app()), max_connections=1) as c:
        slow = asyncio.create_task(c.images.generate(prompt="a", model="gpt-image-1"))
        await wait_until(lambda: len(rec.seen) == 1)  # it holds the only connection
        with pytest.raises(tt.RequestTimeout) as info, anyio.fail_after(10):
            await c.images.generate(prompt="b", model="gpt-image-1", timeout=0.2)
        assert not info.value.request_sent
        release.set()
        await slow
    assert len(rec.seen) == 1  # the second request never left


async def test_timeout_bounds_retries_too(serve: Serve) -> None:
    """timeout= covers the whole call: a retry that cannot fit is not attempted."""
    rec = Recorder(
        reply_json({"status": "FAILED", "message": "slow", "data": None}, 429, {"Retry-After": "5"})
    )
    async with client(await serve(rec.app())) as c:
        with pytest.raises(tt.RateLimitError):
            await c.images.generate(prompt="fox", model="gpt-image-1", timeout=1.0)
    assert len(rec.seen) == 1


async def test_exhausted_timeout_sends_nothing(serve: Serve) -> None:
    """timeout=0 (or less) raises RequestTimeout before anything is written."""
    rec = Recorder(reply_json(OK_IMAGES))
    async with client(await serve(rec.app())) as c:
        for timeout in (0, -5):
            with pytest.raises(tt.RequestTimeout) as info:
                await c.images.generate(prompt="fox", model="gpt-image-1", timeout=timeout)
            assert not info.value.request_sent
    assert rec.seen == []


async def test_the_clients_default_timeout_bounds_a_call(serve: Serve) -> None:
    """With no timeout= the client's default bounds the call (its prebuilt limits path)."""
    rec = Recorder(sleeper(5.0))
    async with client(await serve(rec.app()), timeout=0.2) as c:
        start = asyncio.get_running_loop().time()
        with pytest.raises(tt.RequestTimeout):
            await c.gpt4o.fetch("j1")
        # Bounded by the 0.2 s default, not by the server's 5 s: generous under load.
        assert asyncio.get_running_loop().time() - start < 2.5
