"""Hostile callbacks and lagging confirmations, over real HTTP on 127.0.0.1.

Most tests here run against a tiny scripted TTAPI (an aiohttp app in the test) whose
fetch replies are given one by one, so "the fetch says another job", "429 once", "the
fetch lags behind its own callback" are exact. The backstop is made huge (an hour):
a job that would wait for it fails its (generous) wait timeout instead of passing late.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import aiohttp
import anyio
import pytest
from aiohttp import web
from helpers import TinyTTAPI, body, connect_sending, served

import ttapi_async as tt
from ttapi_async.testing import Emulator


pytestmark = pytest.mark.anyio

Serve = Callable[[web.Application], Awaitable[str]]

QUICK = tt.PollPolicy(initial_delay=0.05, growth=1.5, max_interval=0.2, dense_interval=0.05)
# Only callbacks (and their re-confirms, 50-200 ms apart here) end jobs.
HOOKED = tt.PollPolicy(
    backstop_interval=3600.0,
    confirm_retry=tt.RetryPolicy(max_retries=100, initial_delay=0.05, max_delay=0.2),
)
FAST_RETRY = tt.RetryPolicy(initial_delay=0.01, max_delay=0.05)
WAIT = 20.0  # a wait that needs the backstop fails this; a working one ends in well under 5 s


def client(url: str, **kwargs: object) -> tt.Client:
    kwargs.setdefault("retry", FAST_RETRY)
    kwargs.setdefault("poll_policy", QUICK)
    return tt.Client("sk-test", base_url=url, **kwargs)  # type: ignore[arg-type]


async def post(url: str, payload: object) -> int:
    async with aiohttp.ClientSession() as http, http.post(url, json=payload) as resp:
        return resp.status


# ----------------------------------------------------------------------------- wrong job


async def test_a_fetch_about_another_job_is_a_passing_poll_error(serve: Serve) -> None:
    """wait("job-X") never resolves with job-Y's image when the fetch answers about job-Y."""
    tiny = TinyTTAPI()
    tiny.script["job-X"] = [(200, body("job-Y"), {})] * 3
    url = await serve(tiny.app)
    # Three poll errors in a row: a flat 50 ms schedule instead of QUICK's backoff.
    flat = tt.PollPolicy(initial_delay=0.05, dense_interval=0.05, max_interval=0.05)
    async with client(url, poll_policy=flat) as c:
        result = await c.waiter.wait("job-X", timeout=WAIT)
        stats = c.waiter.stats
    assert result.job_id == "job-X"
    assert result.image_url == "https://img.example/job-X.png"
    assert tiny.fetches["job-X"] == 4
    assert stats.poll_errors == 3
    assert stats.succeeded == 1
    assert stats.failed == 0


# ----------------------------------------------------------------------------- routing


async def test_one_receiver_two_clients_each_get_their_callbacks(emulator: Emulator) -> None:
    """Two clients share a receiver: each one's jobs end by their own callbacks."""
    emulator.job_duration = 0.1
    async with anyio.create_task_group() as tg:
        rec = await served(tg)
        first = tt.Client(emulator.api_key, base_url=emulator.url, webhook=rec, poll_policy=HOOKED)
        second = tt.Client(emulator.api_key, base_url=emulator.url, webhook=rec, poll_policy=HOOKED)
        async with first, second:
            results = await asyncio.gather(
                *(
                    c.gpt4o.generate(prompt=f"{n} {i}", timeout=WAIT)
                    for n, c in (("first", first), ("second", second))
                    for i in range(3)
                )
            )
        tg.cancel_scope.cancel()
    assert {r.source for r in results} == {"webhook"}
    for c in (first, second):
        assert c.waiter.stats.callbacks_accepted == 3
        assert c.waiter.stats.succeeded == 3
        assert c.waiter.stats.polls_sent == 3  # one confirming fetch per job, no polling
    assert emulator.counters.callbacks_sent == 6
    assert emulator.counters.callbacks_failed == 0


# ----------------------------------------------------------------------------- re-confirm


async def test_confirmation_rate_limited_is_retried_soon(serve: Serve) -> None:
    """The confirming fetch gets 429 Retry-After: 0.2; the next one, soon after, agrees."""
    tiny = TinyTTAPI()
    tiny.script["job-1"] = [
        (429, {"status": "FAILED", "message": "slow down"}, {"Retry-After": "0.2"})
    ]
    url = await serve(tiny.app)
    async with anyio.create_task_group() as tg:
        rec = await served(tg)
        async with client(url, webhook=rec, poll_policy=HOOKED) as c:
            job = await c.gpt4o.submit(prompt="p")
            assert await post(tiny.hooks[job.job_id], body(job.job_id)) == 200
            result = await job.wait(timeout=WAIT)
            stats = c.waiter.stats
        tg.cancel_scope.cancel()
    assert result.source == "webhook"
    assert tiny.fetches[job.job_id] == 2
    assert stats.poll_errors == 1
    assert stats.callbacks_accepted == 1


async def test_confirmation_lagging_behind_the_callback(serve: Serve) -> None:
    """The callback says SUCCESS, the fetch still says ON_QUEUE twice: re-confirmed soon."""
    tiny = TinyTTAPI()
    tiny.script["job-1"] = [(200, body("job-1", "ON_QUEUE"), {})] * 2
    url = await serve(tiny.app)
    async with anyio.create_task_group() as tg:
        rec = await served(tg)
        async with client(url, webhook=rec, poll_policy=HOOKED) as c:
            job = await c.gpt4o.submit(prompt="p")
            assert await post(tiny.hooks[job.job_id], body(job.job_id)) == 200
            result = await job.wait(timeout=WAIT)
        tg.cancel_scope.cancel()
    assert result.source == "webhook"
    assert result.image_url == "https://img.example/job-1.png"
    assert tiny.fetches[job.job_id] == 3


# ----------------------------------------------------------------------------- counters


async def test_identical_callbacks_while_confirming_count_one_duplicate(serve: Serve) -> None:
    """A second identical callback during the first one's confirmation is a duplicate."""
    tiny = TinyTTAPI()
    tiny.gate = anyio.Event()  # the confirming fetch waits until both callbacks are in
    url = await serve(tiny.app)
    async with anyio.create_task_group() as tg:
        rec = await served(tg)
        async with client(url, webhook=rec, poll_policy=HOOKED) as c:
            job = await c.gpt4o.submit(prompt="p")
            hook = tiny.hooks[job.job_id]
            assert [await post(hook, body(job.job_id)) for _ in range(2)] == [200, 200]
            tiny.gate.set()
            result = await job.wait(timeout=WAIT)
            stats = c.waiter.stats
        tg.cancel_scope.cancel()
    assert result.source == "webhook"
    assert stats.callbacks_accepted == 1
    assert stats.callbacks_duplicate == 1
    assert tiny.fetches[job.job_id] == 1


@pytest.mark.parametrize("confirm", [True, False])
@pytest.mark.parametrize("true_first", [True, False])
async def test_a_cross_job_early_callback_never_displaces_the_true_one(
    serve: Serve, *, confirm: bool, true_first: bool
) -> None:
    """Two callbacks beat the submit reply, the true one and one naming another job."""
    tiny = TinyTTAPI()
    statuses: list[int] = []

    async def early(job_id: str, hook: str) -> None:
        true = body(job_id, image="https://img.example/from-the-callback.png")
        forged = body("someone-else", image="https://evil.example/x.png")
        for payload in (true, forged) if true_first else (forged, true):
            statuses.append(await post(hook, payload))

    tiny.on_submit = early
    url = await serve(tiny.app)
    async with anyio.create_task_group() as tg:
        rec = await served(tg)
        async with client(url, webhook=rec, poll_policy=HOOKED, confirm_callbacks=confirm) as c:
            job = await c.gpt4o.submit(prompt="p")
            result = await job.wait(timeout=WAIT)
            stats = c.waiter.stats
        tg.cancel_scope.cancel()
    assert statuses == [202, 202]
    assert result.source == "webhook"
    assert result.job_id == job.job_id
    # Confirmed, the fetch's own image; trusted, the true callback's; never the forged one.
    expected = "img.example/job-1.png" if confirm else "img.example/from-the-callback.png"
    assert result.image_url == f"https://{expected}"
    assert stats.callbacks_accepted == 1
    assert stats.callbacks_refused == 1
    assert rec.refused == 1


# ----------------------------------------------------------------------------- stalled bodies


async def raw_request(port: int, head: bytes, body_part: bytes) -> bytes:
    """Send a request head and part of its body, then read the status line (or b'')."""
    reader, writer = await connect_sending(port, head + body_part)
    try:
        return await reader.readline()
    finally:
        writer.close()


def stalled_head(path: str, length: int) -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {length}\r\n\r\n"
    ).encode()


async def test_serve_answers_a_stalled_body_with_408_and_keeps_serving() -> None:
    """A body that stops arriving gets 408 after read_timeout; the server still answers."""
    async with anyio.create_task_group() as tg:
        rec = await served(tg, read_timeout=0.1)
        token, url = await rec.register()
        await rec.bind(token, "j1")
        port = int(url.split(":")[2].split("/")[0])
        with anyio.fail_after(10):  # without a read timeout this would hang
            line = await raw_request(port, stalled_head(f"/hook/{token}", 100), b'{"status"')
        assert b" 408 " in line
        assert await post(url, body("j1")) == 200
        tg.cancel_scope.cancel()
    assert rec.accepted == 1
    assert rec.refused == 1


async def test_serve_closes_a_connection_whose_headers_never_end() -> None:
    """A request head cut short is not held open either: closed after read_timeout."""
    async with anyio.create_task_group() as tg:
        rec = await served(tg, read_timeout=0.1)
        port = int(rec.public_url.split(":")[2].split("/")[0])
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"POST /hook/x HTTP/1.1\r\nHost: 127.")  # and nothing more
        await writer.drain()
        with anyio.fail_after(10):  # aiohttp's own limit is over an hour
            assert await reader.read() == b""  # the server hung up
        writer.close()
        assert await post(rec.public_url + "/x", {}) == 404  # and still serves
        tg.cancel_scope.cancel()


async def test_aiohttp_mount_answers_a_stalled_body_with_408(serve: Serve) -> None:
    """The same bound holds for the handler mounted in an application of one's own."""
    rec = tt.WebhookReceiver("http://127.0.0.1/ttapi/hook", read_timeout=0.1)
    app = web.Application()
    rec.add_to_app(app)
    base = await serve(app)
    port = int(base.rsplit(":", 1)[1])
    token, _ = await rec.register()
    with anyio.fail_after(10):
        line = await raw_request(port, stalled_head(f"/ttapi/hook/{token}", 100), b"{")
    assert b" 408 " in line


async def test_asgi_app_answers_a_stalled_body_with_408() -> None:
    """The ASGI app bounds the wait for the rest of a body too."""
    rec = tt.WebhookReceiver("https://example.com/hook", read_timeout=0.1)
    token, _ = await rec.register()
    sent: list[dict[str, object]] = []
    calls = 0

    async def receive() -> dict[str, object]:
        nonlocal calls
        calls += 1
        if calls == 1:
            return {"type": "http.request", "body": b"{", "more_body": True}
        await anyio.sleep_forever()  # the rest of the body never comes
        raise AssertionError  # pragma: no cover

    async def send(message: dict[str, object]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": f"/hook/{token}"}
    with anyio.fail_after(10):
        await rec.asgi_app(scope, receive, send)  # type: ignore[arg-type]
    assert [m["status"] for m in sent if m["type"] == "http.response.start"] == [408]
    assert rec.refused == 1


async def test_finished_tokens_expire_behind_a_long_lived_one() -> None:
    """A finished job's token goes after its grace period even when an older one is live.

    The purge once stopped at the first live token in minting order, so one long job
    kept every later finished job's token for its whole ``token_ttl`` (hours).
    """
    rec = tt.WebhookReceiver("https://hooks.example.com/t", grace=0.0)
    long_token, _ = await rec.register()
    await rec.bind(long_token, "job-long")  # still running: its token must stay
    short_token, _ = await rec.register()
    await rec.bind(short_token, "job-short")
    rec._job_ended(None, "job-short")  # what the waiter reports when the job ends
    await rec.register()  # minting purges what expired
    status, _ = rec.handle(short_token, b"{}")
    assert status == 404
    assert short_token not in rec._hooks
    assert long_token in rec._hooks


async def test_a_flood_of_early_callbacks_never_shuts_out_the_true_one() -> None:
    """Eight forged early callbacks, then the true one: it is kept and wins at bind.

    Each early callback is counted once, when bind() says whose it is: the true one
    accepted, the forged ones refused (not both, as once).
    """
    import json  # noqa: PLC0415

    rec = tt.WebhookReceiver("https://hooks.example.com/t")
    token, _ = await rec.register()
    forged = [json.dumps(body(f"job-forged-{i}")).encode() for i in range(8)]
    assert {rec.handle(token, b)[0] for b in forged} == {202}
    assert rec.handle(token, json.dumps(body("job-true")).encode())[0] == 202
    await rec.bind(token, "job-true")
    assert (rec.accepted, rec.refused) == (1, 8)
