"""JobWaiter and WebhookReceiver against the emulator, with its faults on, over real HTTP."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import aiohttp
import anyio
import pytest
from helpers import served, wait_until

import ttapi_async as tt
from ttapi_async.testing import CallbackFaults, Emulator, Fault


pytestmark = pytest.mark.anyio

QUICK = tt.PollPolicy(initial_delay=0.05, growth=1.5, max_interval=0.2, dense_interval=0.05)
FAST_RETRY = tt.RetryPolicy(initial_delay=0.01, max_delay=0.05)


def sdk(emu: Emulator, **kwargs: object) -> tt.Client:
    kwargs.setdefault("retry", FAST_RETRY)
    kwargs.setdefault("poll_policy", QUICK)
    return tt.Client(emu.api_key, base_url=emu.url, **kwargs)  # type: ignore[arg-type]


def no_stray_tasks() -> None:
    current = asyncio.current_task()
    others = [t for t in asyncio.all_tasks() if t is not current and not t.done()]
    names = [t.get_coro().__qualname__ for t in others]  # type: ignore[union-attr]
    assert not [n for n in names if n.startswith(("JobWaiter.", "WebhookReceiver.", "Client."))], (
        names
    )


async def test_generate_returns_a_result_and_events(emulator: Emulator) -> None:
    """gpt4o.generate submits and waits; events go queued, running, succeeded."""
    seen: list[tt.JobEventKind] = []
    async with sdk(emulator) as c:
        c.waiter.add_listener(lambda e: seen.append(e.kind))
        result = await c.gpt4o.generate(prompt="draw a lighthouse", timeout=10)
        assert c.waiter.pending == 0
    assert isinstance(result, tt.JobResult)
    assert result.image_url.startswith(emulator.url)
    assert result.quota == 2.0
    assert result.source == "poll"
    assert result.elapsed > 0
    assert seen[0] is tt.JobEventKind.QUEUED
    assert seen[-1] is tt.JobEventKind.SUCCEEDED
    assert emulator.counters.submits_by_prompt["draw a lighthouse"] == 1


async def test_failed_job_reaches_every_waiter_once(emulator: Emulator) -> None:
    """Three waits on a failing job all get JobFailedError with the reason; resolved once."""
    async with sdk(emulator) as c:
        job = await c.gpt4o.submit(prompt="[fail] draw")
        outcomes = await asyncio.gather(
            *(job.wait(timeout=10) for _ in range(3)), return_exceptions=True
        )
        late = await asyncio.gather(c.waiter.wait(job.job_id, timeout=1), return_exceptions=True)
    for outcome in [*outcomes, *late]:
        assert isinstance(outcome, tt.JobFailedError)
        assert outcome.job_id == job.job_id
        assert outcome.reason
    assert c.waiter.stats.failed == 1
    assert len({id(o) for o in outcomes}) == 3  # a fresh error per waiter


async def test_waiters_share_polls_and_result(emulator: Emulator) -> None:
    """Many waits on one job share one poll stream and the same result."""
    emulator.job_duration = 0.25
    async with sdk(emulator) as c:
        job = await c.gpt4o.submit(prompt="shared")
        results = await asyncio.gather(*(job.wait(timeout=10) for _ in range(20)))
    assert len({r.image_url for r in results}) == 1
    assert c.waiter.stats.succeeded == 1
    assert emulator.jobs[job.job_id].fetches == c.waiter.stats.polls_sent
    assert c.waiter.stats.polls_sent < 20


async def test_timeout_then_wait_again(emulator: Emulator) -> None:
    """A wait that times out raises JobTimeoutError with the id; the job is not lost."""
    emulator.job_duration = 0.4
    async with sdk(emulator) as c:
        job = await c.gpt4o.submit(prompt="slow")
        with pytest.raises(tt.JobTimeoutError) as info:
            await job.wait(timeout=0.2)
        assert info.value.job_id == job.job_id
        assert isinstance(info.value, TimeoutError)
        result = await c.waiter.wait(job.job_id, timeout=10)
    assert result.job_id == job.job_id
    assert c.waiter.stats.timeouts == 1


async def test_cancelled_wait_does_not_lose_the_job(emulator: Emulator) -> None:
    """Cancelling a wait leaves the job to be waited on again."""
    emulator.job_duration = 0.3
    async with sdk(emulator) as c:
        job = await c.gpt4o.submit(prompt="cancel me")
        with anyio.move_on_after(0.1):
            await job.wait(timeout=10)
        assert c.waiter.pending == 0  # nobody waits: polling stopped
        result = await job.wait(timeout=10)
    assert result.job_id == job.job_id


async def test_poll_errors_never_fail_a_paid_job(emulator: Emulator) -> None:
    """429, 499, 5xx, garbage and drops while polling are passing errors; the job succeeds."""
    emulator.job_duration = 0.3
    route = "/openai/4o-image/fetch"
    faults = [
        Fault(route=route, status=429, count=2, retry_after=0.01),
        Fault(route=route, status=499, count=2),
        Fault(route=route, status=503, count=2),
        Fault(route=route, kind="malformed", count=2),
        Fault(route=route, kind="drop", count=2),
    ]
    for fault in faults:
        emulator.add_fault(fault)
    # Ten poll errors in a row: a flat 50 ms schedule instead of QUICK's backoff to 0.2 s.
    policy = tt.PollPolicy(initial_delay=0.05, dense_interval=0.05, max_interval=0.05)
    async with sdk(emulator, poll_policy=policy) as c:
        result = await c.gpt4o.generate(prompt="through the storm", timeout=20)
    assert result.job_id
    # aiohttp itself re-sends a GET once when a kept-alive connection was dropped, so a
    # poll may eat two faults.
    assert all(f.fired == 2 for f in faults)
    assert 8 <= c.waiter.stats.poll_errors <= 10
    assert c.waiter.stats.failed == 0


async def test_auth_errors_while_polling_time_out_with_the_reason(emulator: Emulator) -> None:
    """A poll that keeps failing ends in JobTimeoutError carrying the last poll error."""
    async with sdk(emulator) as c:
        job = await c.gpt4o.submit(prompt="x")
        emulator.add_fault(Fault(route="/openai/4o-image/fetch", status=401))
        with pytest.raises(tt.JobTimeoutError) as info:
            await job.wait(timeout=0.25)
    assert isinstance(info.value.last_error, tt.AuthenticationError)


async def test_close_ends_waits_and_leaves_no_task(emulator: Emulator) -> None:
    """A wait in progress when the client closes ends with ClientClosedError; nothing runs on."""
    emulator.job_duration = 5.0
    c = sdk(emulator)
    errors: list[BaseException] = []

    async def waiter(job: tt.Job) -> None:
        try:
            await job.wait(timeout=30)
        except tt.ClientClosedError as exc:
            errors.append(exc)

    async with anyio.create_task_group() as tg, c:
        job = await c.gpt4o.submit(prompt="never seen")
        tg.start_soon(waiter, job)
        await anyio.sleep(0.1)
    assert len(errors) == 1
    assert job.job_id in str(errors[0])
    no_stray_tasks()


async def test_wait_needs_async_with(emulator: Emulator) -> None:
    """Waiting without `async with` says how to fix it."""
    c = sdk(emulator)
    job = await c.gpt4o.submit(prompt="x")
    with pytest.raises(tt.ClientClosedError, match="async with"):
        await job.wait(timeout=1)
    await c.aclose()


async def test_many_jobs_each_resolve_exactly_once(emulator: Emulator) -> None:
    """300 concurrent jobs, some failing: every one ends once, nothing stays pending."""
    emulator.job_duration = (0.05, 0.4)
    emulator.job_fail_rate = 0.2
    async with sdk(emulator, max_concurrent_polls=16) as c:

        async def one(i: int) -> str:
            try:
                await c.gpt4o.generate(prompt=f"job {i}", timeout=30)
            except tt.JobFailedError:
                return "failed"
            return "ok"

        outcomes = await asyncio.gather(*(one(i) for i in range(300)))
        assert c.waiter.pending == 0
    expected_failed = sum(1 for j in emulator.jobs.values() if j.status == "FAILED")
    assert outcomes.count("failed") == expected_failed == c.waiter.stats.failed
    assert outcomes.count("ok") == c.waiter.stats.succeeded == 300 - expected_failed
    assert all(n == 1 for n in emulator.counters.submits_by_prompt.values())


async def test_event_stream(emulator: Emulator) -> None:
    """waiter.events() yields the job's events as an async iterator."""
    async with sdk(emulator) as c, c.waiter.events() as events:
        await c.gpt4o.generate(prompt="streamed", timeout=10)
        kinds = []
        with anyio.fail_after(5):  # fail, not hang, if SUCCEEDED never comes
            async for event in events:
                kinds.append(event.kind)
                if event.kind is tt.JobEventKind.SUCCEEDED:
                    break
    assert kinds[0] is tt.JobEventKind.QUEUED


# ----------------------------------------------------------------------------- webhooks


async def test_webhook_resolves_with_confirmation(emulator: Emulator) -> None:
    """With a receiver, the hook URL is made per job; the callback (confirmed) ends the wait."""
    emulator.job_duration = 0.2
    async with anyio.create_task_group() as tg:
        rec = await served(tg)
        async with sdk(emulator, webhook=rec, poll_policy=tt.PollPolicy(backstop_interval=30)) as c:
            result = await c.gpt4o.generate(prompt="hooked", timeout=10)
        tg.cancel_scope.cancel()
    assert result.source == "webhook"  # the callback ended the wait ...
    assert rec.accepted == 1
    assert emulator.counters.callbacks_sent == 1
    job = next(iter(emulator.jobs.values()))
    assert job.hook_url is not None
    assert job.hook_url.startswith(rec.public_url + "/")
    assert job.fetches == 1  # exactly one confirming fetch, no polling before it


async def test_webhook_without_confirmation_is_instant(emulator: Emulator) -> None:
    """confirm_callbacks=False trusts the callback: no fetch at all."""
    emulator.job_duration = 0.1
    async with anyio.create_task_group() as tg:
        rec = await served(tg)
        async with sdk(emulator, webhook=rec, confirm_callbacks=False) as c:
            result = await c.gpt4o.generate(prompt="trusted", timeout=10)
        tg.cancel_scope.cancel()
    assert result.source == "webhook"
    assert emulator.counters.fetches == 0


async def test_lost_callback_is_caught_by_the_backstop(emulator: Emulator) -> None:
    """A callback that never arrives: the slow backstop poll still ends the job."""
    emulator.job_duration = 0.1
    emulator.callbacks = CallbackFaults(lose_rate=1.0)
    async with anyio.create_task_group() as tg:
        rec = await served(tg)
        policy = tt.PollPolicy(backstop_interval=0.15)
        async with sdk(emulator, webhook=rec, poll_policy=policy) as c:
            result = await c.gpt4o.generate(prompt="lost", timeout=10)
        tg.cancel_scope.cancel()
    assert result.job_id
    assert emulator.counters.callbacks_lost == 1
    assert rec.accepted == 0


async def test_duplicate_and_early_callbacks(emulator: Emulator) -> None:
    """A callback before the submit reply is kept; duplicates are ignored."""
    emulator.job_duration = 0.0
    emulator.callbacks = CallbackFaults(before_reply=True, duplicate_rate=1.0)
    async with anyio.create_task_group() as tg:
        rec = await served(tg)
        async with sdk(emulator, webhook=rec, confirm_callbacks=False) as c:
            result = await c.gpt4o.generate(prompt="early", timeout=10)
            await anyio.sleep(0.2)  # let the duplicate land
            stats = c.waiter.stats
        tg.cancel_scope.cancel()
    assert result.source == "webhook"
    assert stats.succeeded == 1
    assert rec.accepted == 2  # both deliveries were well-formed ...
    assert stats.callbacks_accepted == 1  # ... and the job was resolved from one of them


async def test_forged_and_bad_callbacks_change_nothing(emulator: Emulator) -> None:
    """Unknown tokens get 404, junk 400, oversize 413; a forged SUCCESS is confirmed away."""
    emulator.job_duration = 0.4  # the five posts below take about 20 ms
    async with anyio.create_task_group() as tg:
        rec = await served(tg, max_body=2048)
        async with sdk(emulator, webhook=rec) as c, aiohttp.ClientSession() as http:
            job = await c.gpt4o.submit(prompt="victim")
            hook = emulator.jobs[job.job_id].hook_url
            assert hook is not None
            forged = {
                "status": "SUCCESS",
                "message": "success",
                "jobId": job.job_id,
                "data": {"imageUrl": "https://evil.example/x.png"},
            }
            replies = []
            for url, body in (
                (rec.public_url + "/not-a-token", json.dumps(forged)),
                (hook, "not json"),
                (hook, "x" * 5000),
                (hook, json.dumps({**forged, "jobId": "someone-else"})),
                (hook, json.dumps(forged)),
            ):
                async with http.post(url, data=body) as resp:
                    replies.append(resp.status)
            result = await job.wait(timeout=10)
        tg.cancel_scope.cancel()
    assert replies == [404, 400, 413, 400, 200]
    assert result.image_url.startswith(emulator.url)  # the real result, not the forged one
    assert c.waiter.stats.callbacks_refused >= 3


async def test_asgi_adapter() -> None:
    """The ASGI app accepts a chunked valid callback and refuses junk, GETs and oversize bodies."""
    rec = tt.WebhookReceiver("https://example.com/hook", max_body=4096)
    token, _ = await rec.register()
    await rec.bind(token, "j1")
    good = json.dumps(
        {"status": "SUCCESS", "message": "success", "jobId": "j1", "data": {}}
    ).encode()
    sent: list[dict[str, object]] = []

    def receiver_of(*chunks: bytes) -> Any:
        queue = list(chunks)

        async def receive() -> dict[str, object]:
            chunk = queue.pop(0)
            return {"type": "http.request", "body": chunk, "more_body": bool(queue)}

        return receive

    async def send(message: dict[str, object]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": f"/ttapi/hook/{token}"}
    await rec.asgi_app(scope, receiver_of(good[:20], good[20:]), send)  # type: ignore[arg-type]
    await rec.asgi_app(scope, receiver_of(b"{}"), send)  # type: ignore[arg-type]
    await rec.asgi_app({**scope, "method": "GET"}, receiver_of(b""), send)  # type: ignore[arg-type]
    await rec.asgi_app(scope, receiver_of(b"x" * 3000, b"x" * 3000), send)  # type: ignore[arg-type]
    statuses = [m["status"] for m in sent if m["type"] == "http.response.start"]
    assert statuses == [200, 400, 405, 413]
    assert rec.accepted == 1


async def test_many_jobs_due_at_the_same_instant(emulator: Emulator) -> None:
    """Jobs re-planned to the same instant (same due time) schedule without comparing jobs."""
    emulator.job_duration = 0.2
    async with sdk(emulator) as c:
        start = anyio.current_time()
        for i in range(50):
            c.waiter.track(f"missing-{i}", started=start)  # unknown ids: polls fail, passing
        c.waiter._sched.replan(start)  # all due "now" with equal seq numbers
        c.waiter._poller.kick()  # as the waiter does after a re-plan
        # Every job gets polled (a scheduler that compared two jobs would have crashed);
        # waited for, not slept on: under load 50 polls may take longer than 0.3 s.
        await wait_until(lambda: c.waiter.stats.polls_sent >= 50, timeout=10)


async def test_callback_delayed_past_the_backstop(emulator: Emulator) -> None:
    """The backstop poll ends the job first; the late callback is a harmless duplicate."""
    emulator.job_duration = 0.1
    emulator.callbacks = CallbackFaults(delay=0.4)
    async with anyio.create_task_group() as tg:
        rec = await served(tg)
        policy = tt.PollPolicy(backstop_interval=0.15)
        async with sdk(emulator, webhook=rec, poll_policy=policy) as c:
            result = await c.gpt4o.generate(prompt="late hook", timeout=10)
            assert result.source == "poll"
            # The callback lands after the job ended; wait until the receiver has taken it.
            await wait_until(lambda: rec.accepted + rec.refused >= 1)
            assert c.waiter.stats.callbacks_duplicate == 1
            assert c.waiter.stats.succeeded == 1
            assert c.waiter.pending == 0
        tg.cancel_scope.cancel()
    assert emulator.counters.callbacks_sent == 1


async def test_poll_in_flight_when_a_wait_times_out(emulator: Emulator) -> None:
    """A poll that outlives its wait hands its answer to the next wait: resolved once, promptly."""
    emulator.job_duration = 0.15
    async with sdk(emulator, poll_policy=tt.PollPolicy.fixed(3.0)) as c:
        job = await c.gpt4o.submit(prompt="slow poll")
        emulator.add_fault(
            Fault(route="/openai/4o-image/fetch", kind="latency", delay=0.3, count=1)
        )
        with pytest.raises(tt.JobTimeoutError):
            await c.waiter.wait(job.job_id, timeout=0.2)  # its first poll is still in flight
        start = anyio.current_time()
        result = await c.waiter.wait(job.job_id, timeout=10)
        waited = anyio.current_time() - start
        assert c.waiter.stats.succeeded == 1
    assert result.job_id == job.job_id
    assert waited < 1.5  # the stale poll's SUCCESS, not the next poll 3 s later


async def test_callback_during_an_in_flight_poll_is_not_lost(emulator: Emulator) -> None:
    """A callback that lands while a backstop poll is in flight triggers a poll right after it."""
    emulator.job_duration = 1.05
    emulator.add_fault(
        Fault(route="/openai/4o-image/fetch", kind="latency", delay=0.2, count=1, after_accept=True)
    )
    async with anyio.create_task_group() as tg:
        rec = await served(tg)
        policy = tt.PollPolicy(backstop_interval=1.0)
        async with sdk(emulator, webhook=rec, poll_policy=policy) as c:
            start = anyio.current_time()
            result = await c.gpt4o.generate(prompt="in flight", timeout=10)
            waited = anyio.current_time() - start
        tg.cancel_scope.cancel()
    assert result.source == "webhook"
    assert waited < 1.7  # not another full backstop interval (1 s) after the stale reply


async def test_early_callback_for_another_job_is_refused() -> None:
    """A callback kept before the submit returned must name the job the token was made for."""
    rec = tt.WebhookReceiver("https://example.com/hook")
    token, _ = await rec.register()
    forged = {
        "status": "SUCCESS",
        "message": "success",
        "jobId": "victim",
        "data": {"imageUrl": "https://evil/x.png"},
    }
    assert rec.handle(token, json.dumps(forged).encode()) == (202, "kept")
    await rec.bind(token, "mine")
    assert rec.refused == 1


async def test_callback_body_in_several_segments() -> None:
    """The aiohttp handler reads the whole body even when it arrives in pieces."""
    async with anyio.create_task_group() as tg:
        rec = await served(tg)
        token, url = await rec.register()
        await rec.bind(token, "j1")
        body = json.dumps(
            {
                "status": "SUCCESS",
                "message": "success",
                "jobId": "j1",
                "data": {"prompt": "x" * 2000},
            }
        ).encode()
        port = int(url.split(":")[2].split("/")[0])
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        head = (
            f"POST /hook/{token} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        ).encode()
        writer.write(head + body[:700])
        await writer.drain()
        await anyio.sleep(0.1)
        writer.write(body[700:])
        await writer.drain()
        status_line = await reader.readline()
        writer.close()
        tg.cancel_scope.cancel()
    assert b" 200 " in status_line
    assert rec.accepted == 1


async def test_outcomes_taken_by_a_wait_are_not_held(emulator: Emulator) -> None:
    """A long run does not keep every result it handed out (the soak found that growth).

    A job that ends before anyone waits (here: its callback came first) is remembered for
    ``result_ttl``; once a wait takes an outcome it is kept only briefly (60 s).
    """
    emulator.job_duration = 0.05
    ended = anyio.Event()
    count = 0

    def on_event(event: tt.JobEvent) -> None:
        nonlocal count
        if event.kind is tt.JobEventKind.SUCCEEDED:
            count += 1
            if count == 6:
                ended.set()

    async with anyio.create_task_group() as tg:
        rec = await served(tg)
        async with sdk(emulator, webhook=rec, confirm_callbacks=False) as c:
            c.waiter.add_listener(on_event)
            watched = [await c.gpt4o.submit(prompt=f"watched {i}") for i in range(3)]
            results = [await j.wait(timeout=10) for j in watched]
            unwatched = [await c.gpt4o.submit(prompt=f"unwatched {i}") for i in range(3)]
            with anyio.fail_after(10):
                await ended.wait()  # all three ended before anyone waits on them
            assert len(c.waiter._memory._unclaimed) == 3
            later = [await j.wait(timeout=10) for j in unwatched]
            assert [r.job_id for r in results + later] == [j.job_id for j in watched + unwatched]
            assert len(c.waiter._memory._unclaimed) == 0
            # Taken outcomes stay a short while for repeated waits, then go.
            assert len(c.waiter._memory._taken) == 6
            again = await watched[0].wait(timeout=10)
            assert again is results[0]
        tg.cancel_scope.cancel()


async def test_the_waiter_measures_by_its_one_clock(emulator: Emulator) -> None:
    """Given a clock, the waiter keeps outcomes and stamps events by it, and by it alone.

    The clock jumps 61 s ahead after two waits: the taken outcome (kept 60 s for repeated
    waits) is gone by that clock, so the next wait polls again, and the events' Unix
    timestamps jump with it.
    """
    loop = asyncio.get_running_loop()
    skew = 0.0

    def clock() -> float:
        return loop.time() + skew

    async with sdk(emulator) as c:

        async def fetch(job_id: str, route: str, deadline: float) -> tt.JobSnapshot:
            assert route == "4o-image"
            return await c.gpt4o.fetch(job_id, timeout=deadline - loop.time())

        waiter = tt.JobWaiter(fetch, QUICK, clock=clock)
        events: list[tt.JobEvent] = []
        waiter.add_listener(events.append)
        async with anyio.create_task_group() as tg:
            await tg.start(waiter._run)
            job = await c.gpt4o.submit(prompt="clocked")
            first = await waiter.wait(job.job_id, timeout=10)
            again = await waiter.wait(job.job_id, timeout=10)
            polls = waiter.stats.polls_sent
            skew = 61.0
            late = await waiter.wait(job.job_id, timeout=10)
            tg.cancel_scope.cancel()
    assert again is first  # kept for a repeated wait ...
    assert late is not first  # ... 60 s by the waiter's clock
    assert late.job_id == job.job_id
    assert waiter.stats.polls_sent > polls
    assert abs(events[0].at - time.time()) < 30  # a Unix timestamp
    ends = [e.at for e in events if e.kind is tt.JobEventKind.SUCCEEDED]
    assert len(ends) == 2
    assert 61.0 <= ends[1] - ends[0] < 71.0
