"""Several workers sharing callbacks, waits and outcomes through a real redis-server.

Each worker is a real client with its own receiver served on its own port of 127.0.0.1,
all behind one public hook URL (as behind a load balancer); the test posts each callback
to the worker it chooses, so "the callback lands on another worker" is exact. TTAPI is a
tiny scripted server counting fetches per job. The backstop is an hour: a wait that
needed it would fail its timeout instead of passing late.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import aiohttp
import anyio
import attrs
import pytest
import redis.asyncio as aioredis
from helpers import RedisServer, TinyTTAPI, body, free_port, wait_until

import ttapi_async as tt
from ttapi_async._fleet import encode_outcome
from ttapi_async._protocol import parse_callback


pytestmark = pytest.mark.anyio

PUBLIC = "http://ttapi-hooks.example/hook"  # the balancer's address, as TTAPI sees it
HOOKED = tt.PollPolicy(backstop_interval=3600.0)
# Polls every 0.3 s once degraded (max_interval); the backstop is still an hour.
QUICK_WHEN_DEGRADED = tt.PollPolicy(backstop_interval=3600.0, max_interval=0.3)
WAIT = 20.0


@attrs.define
class Worker:
    client: tt.Client
    receiver: tt.WebhookReceiver
    port: int

    @property
    def broker(self) -> tt.RedisBroker:
        assert self.client.broker is not None
        return self.client.broker


@pytest.fixture
async def tiny_api(serve: Any) -> tuple[TinyTTAPI, str]:
    """A scripted TTAPI counting fetches per job, and its URL."""
    tiny = TinyTTAPI()
    return tiny, await serve(tiny.app)


@asynccontextmanager
async def fleet(
    api: str, redis_url: str, n: int = 2, *, policy: tt.PollPolicy = HOOKED, **broker: Any
) -> AsyncIterator[list[Worker]]:
    """``n`` workers (client + receiver + broker), each serving its receiver."""
    async with AsyncExitStack() as stack:
        tg = await stack.enter_async_context(anyio.create_task_group())
        stack.callback(tg.cancel_scope.cancel)
        workers = []
        for _ in range(n):
            receiver = tt.WebhookReceiver(PUBLIC)
            client = tt.Client(
                "sk-test",
                base_url=api,
                webhook=receiver,
                poll_policy=policy,
                broker=tt.RedisBroker(redis_url, **broker),
            )
            await stack.enter_async_context(client)
            port = free_port()
            await tg.start(receiver.serve, "127.0.0.1", port)
            workers.append(Worker(client, receiver, port))
        yield workers


async def deliver(worker: Worker, hook_url: str, payload: object) -> int:
    """POST a callback for ``hook_url`` to ``worker`` (as the balancer would)."""
    token = hook_url.rsplit("/", 1)[-1]
    url = f"http://127.0.0.1:{worker.port}/hook/{token}"
    async with aiohttp.ClientSession() as http, http.post(url, json=payload) as resp:
        return resp.status


async def test_a_callback_on_another_worker_ends_the_wait(
    tiny_api: tuple[TinyTTAPI, str], redis_server: RedisServer
) -> None:
    tiny, api = tiny_api
    async with fleet(api, redis_server.url) as (a, b):
        job = await a.client.gpt4o.submit(prompt="p")
        async with anyio.create_task_group() as tg:
            results: list[tt.JobResult] = []

            async def wait() -> None:
                results.append(await job.wait(timeout=WAIT))

            tg.start_soon(wait)
            assert await deliver(b, tiny.hooks[job.job_id], body(job.job_id)) == 200
        assert results[0].image_url == f"https://img.example/{job.job_id}.png"
        assert results[0].source == "webhook"
        # One fetch in the whole fleet: worker B's confirmation; A never polled.
        assert tiny.fetches[job.job_id] == 1
        assert a.client.waiter.stats.polls_sent == 0
        assert b.client.waiter.stats.polls_sent == 1
        assert a.broker.stats.received >= 1


async def test_duplicates_on_every_worker_cost_one_fetch(
    tiny_api: tuple[TinyTTAPI, str], redis_server: RedisServer
) -> None:
    tiny, api = tiny_api
    async with fleet(api, redis_server.url, 3) as workers:
        job = await workers[0].client.gpt4o.submit(prompt="p")
        hook = tiny.hooks[job.job_id]
        statuses: list[int] = []

        async def post(worker: Worker) -> None:
            statuses.append(await deliver(worker, hook, body(job.job_id)))

        async with anyio.create_task_group() as tg:
            for worker in workers * 2:  # each worker twice
                tg.start_soon(post, worker)
        result = await job.wait(timeout=WAIT)
        assert result.job_id == job.job_id
        assert statuses == [200] * 6
        assert tiny.fetches[job.job_id] == 1
        assert sum(w.client.waiter.stats.succeeded for w in workers) <= 2  # A, and the confirmer


async def test_any_worker_waits_on_any_job(
    tiny_api: tuple[TinyTTAPI, str], redis_server: RedisServer
) -> None:
    tiny, api = tiny_api
    async with fleet(api, redis_server.url, 3) as (a, b, c):
        job = await a.client.gpt4o.submit(prompt="p")
        record = await b.broker.job_record(job.job_id)
        assert record is not None
        assert (record.route, record.hooked) == ("4o-image", True)
        async with anyio.create_task_group() as tg:
            results: list[tt.JobResult] = []

            async def wait_on_b() -> None:
                results.append(await b.client.waiter.wait(job.job_id, timeout=WAIT))

            tg.start_soon(wait_on_b)
            await wait_until(lambda: b.client.waiter.pending == 1)
            assert await deliver(c, tiny.hooks[job.job_id], body(job.job_id)) == 200
        assert results[0].job_id == job.job_id
        assert tiny.fetches[job.job_id] == 1  # C confirmed; B learned it from Redis
        assert b.client.waiter.stats.polls_sent == 0
        # Late: a wait after the end, on a worker that never tracked it, reads the store.
        late = await c.client.waiter.wait(job.job_id, timeout=WAIT)
        fresh = tt.Client("sk-test", base_url=api, broker=tt.RedisBroker(redis_server.url))
        async with fresh:
            again = await fresh.waiter.wait(job.job_id, timeout=WAIT)
        assert late.image_url == again.image_url == results[0].image_url
        assert tiny.fetches[job.job_id] == 1


async def test_an_early_callback_on_another_worker_waits_for_the_bind(
    tiny_api: tuple[TinyTTAPI, str], redis_server: RedisServer
) -> None:
    tiny, api = tiny_api
    early: list[int] = []
    async with fleet(api, redis_server.url) as (a, b):

        async def beat_the_reply(job_id: str, hook: str) -> None:
            early.append(await deliver(b, hook, body(job_id)))

        tiny.on_submit = beat_the_reply
        result = await a.client.gpt4o.generate(prompt="p", timeout=WAIT)
        assert early == [202]
        assert result.source == "webhook"
        assert tiny.fetches[result.job_id] == 1


async def test_a_token_is_stored_hashed_and_unknown_tokens_get_404(
    tiny_api: tuple[TinyTTAPI, str], redis_server: RedisServer
) -> None:
    tiny, api = tiny_api
    async with fleet(api, redis_server.url) as (a, b):
        job = await a.client.gpt4o.submit(prompt="p")
        token = tiny.hooks[job.job_id].rsplit("/", 1)[-1]
        raw = aioredis.Redis.from_url(redis_server.url)
        async with raw:
            keys = [k async for k in raw.scan_iter("ttapi:*")]
            values = [await raw.get(k) for k in keys if await raw.type(k) == b"string"]
        assert keys
        assert not any(token.encode() in k for k in keys)
        assert not any(v and token.encode() in v for v in values)
        forged = PUBLIC + "/" + "x" * len(token)
        assert await deliver(b, forged, body(job.job_id)) == 404
        other = await a.client.gpt4o.submit(prompt="p")
        # A true token, but another job's body: refused, and nothing resolves.
        assert await deliver(b, tiny.hooks[other.job_id], body(job.job_id)) == 400
        assert tiny.fetches[job.job_id] == 0


async def test_redis_down_at_open_is_a_clear_error(redis_server: RedisServer) -> None:
    secret = RedisServer(redis_server.folder + "-auth", password="s3cret-pw")
    secret.start()
    url = secret.url
    secret.stop()
    broker = tt.RedisBroker(url)
    assert "s3cret-pw" not in repr(broker)
    client = tt.Client("sk-test", base_url="http://127.0.0.1:9", broker=broker)
    with pytest.raises(tt.BrokerError, match="cannot reach Redis") as info:
        async with client:
            pass
    assert "s3cret-pw" not in str(info.value)
    assert "***" in str(info.value)


async def test_a_wrong_password_is_a_clear_error_without_the_password(
    tmp_path: Any,
) -> None:
    server = RedisServer(str(tmp_path / "auth"), password="right-pw")
    server.start()
    try:
        wrong = server.url.replace("right-pw", "wrong-pw")
        client = tt.Client("sk-test", base_url="http://127.0.0.1:9", broker=tt.RedisBroker(wrong))
        with pytest.raises(tt.BrokerError) as info:
            async with client:
                pass
        assert "wrong-pw" not in str(info.value)
        # The right password works.
        ok = tt.Client("sk-test", base_url="http://127.0.0.1:9", broker=tt.RedisBroker(server.url))
        async with ok:
            assert ok.broker is not None
            assert ok.broker.connected
    finally:
        server.stop()


async def test_redis_down_mid_run_falls_back_to_polling_then_reconnects(
    tiny_api: tuple[TinyTTAPI, str], redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    tiny, api = tiny_api
    policy = QUICK_WHEN_DEGRADED
    tiny.script["job-1"] = [(200, body("job-1", "ON_QUEUE"), {})] * 2
    caplog.set_level(logging.WARNING, logger="ttapi_async.broker")
    async with fleet(api, redis_server.url, policy=policy) as (a, b):
        job = await a.client.gpt4o.submit(prompt="p")
        redis_server.stop()
        await wait_until(lambda: not a.broker.connected and not b.broker.connected)
        # The hook on a worker that does not hold the token answers 503 (and only that).
        assert await deliver(b, tiny.hooks[job.job_id], body(job.job_id)) == 503
        result = await job.wait(timeout=WAIT)  # found by polling, not at the backstop
        assert result.source == "poll"
        assert a.client.waiter.stats.polls_sent == 3
        downs = [r for r in caplog.records if "unreachable" in r.getMessage()]
        assert len(downs) == 1 + 1  # once per worker, however long it stays down
        redis_server.start()
        await wait_until(lambda: a.broker.connected and b.broker.connected, timeout=10)
        # Shared again: a new job's callback on B ends A's wait with one fetch.
        job2 = await a.client.gpt4o.submit(prompt="p")
        async with anyio.create_task_group() as tg:
            tg.start_soon(deliver, b, tiny.hooks[job2.job_id], body(job2.job_id))
            result2 = await job2.wait(timeout=WAIT)
        assert result2.source == "webhook"
        assert tiny.fetches[job2.job_id] == 1


async def test_an_outcome_missed_while_unsubscribed_is_reread(
    tiny_api: tuple[TinyTTAPI, str], redis_server: RedisServer
) -> None:
    tiny, api = tiny_api
    async with fleet(api, redis_server.url, 1) as (a,):
        job = await a.client.gpt4o.submit(prompt="p")
        raw = aioredis.Redis.from_url(redis_server.url)
        async with raw:
            # Stored by "another worker" without a publish: only a re-read can find it.
            snap = parse_callback(json.dumps(body(job.job_id)).encode())
            await raw.set(f"ttapi:result:{{{job.job_id}}}", encode_outcome(snap, "webhook"))
            await raw.client_kill_filter(_type="pubsub")
        result = await job.wait(timeout=WAIT)
        assert result.image_url == f"https://img.example/{job.job_id}.png"
        assert a.broker.stats.rechecked == 1
        assert tiny.fetches[job.job_id] == 0


async def test_a_redis_that_came_back_empty_is_noticed_and_nothing_is_lost(
    tiny_api: tuple[TinyTTAPI, str], redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    tiny, api = tiny_api
    policy = QUICK_WHEN_DEGRADED
    caplog.set_level(logging.ERROR, logger="ttapi_async.broker")
    async with fleet(api, redis_server.url, policy=policy) as (a, b):
        job = await a.client.gpt4o.submit(prompt="p")
        redis_server.restart(wipe=True)
        await wait_until(lambda: a.broker.stats.disconnects == 1 and a.broker.connected)
        # Its token is gone from Redis: the callback on B is refused...
        assert await deliver(b, tiny.hooks[job.job_id], body(job.job_id)) == 404
        # ...and the wait still ends, by polling (the job was degraded by the outage).
        result = await job.wait(timeout=WAIT)
        assert result.source == "poll"
        assert any("without its data" in r.getMessage() for r in caplog.records)


async def test_a_burst_of_callbacks_waits_for_a_small_pool(
    tiny_api: tuple[TinyTTAPI, str], redis_server: RedisServer
) -> None:
    tiny, api = tiny_api
    async with fleet(api, redis_server.url, max_connections=3) as (a, b):
        jobs = [await a.client.gpt4o.submit(prompt="p") for _ in range(150)]
        statuses: list[int] = []

        async def post(job: tt.Job) -> None:
            statuses.append(await deliver(b, tiny.hooks[job.job_id], body(job.job_id)))

        async with anyio.create_task_group() as tg:
            for job in jobs:
                tg.start_soon(post, job)
        results = [await job.wait(timeout=WAIT) for job in jobs]
        assert statuses == [200] * len(jobs)
        assert {r.job_id for r in results} == {j.job_id for j in jobs}
        assert sum(tiny.fetches.values()) == len(jobs)


async def test_a_worker_that_dies_while_confirming_leaves_the_job_to_its_awaiter(
    tiny_api: tuple[TinyTTAPI, str], redis_server: RedisServer
) -> None:
    """B accepts the callback (the fleet's one confirmation is B's), then closes before its
    fetch returns. A heard "callback seen": it polls the job after the grace period, not
    at the (hour-long) backstop."""
    tiny, api = tiny_api
    tiny.gate = anyio.Event()  # every fetch waits: B's confirmation never comes back
    async with fleet(api, redis_server.url, 1, confirm_grace=0.3) as (a,):
        job = await a.client.gpt4o.submit(prompt="p")
        receiver = tt.WebhookReceiver(PUBLIC)
        broker = tt.RedisBroker(redis_server.url)
        b_client = tt.Client(
            "sk-test", base_url=api, webhook=receiver, poll_policy=HOOKED, broker=broker
        )
        async with anyio.create_task_group() as tg:
            async with b_client:
                b = Worker(b_client, receiver, free_port())
                await tg.start(receiver.serve, "127.0.0.1", b.port)
                assert await deliver(b, tiny.hooks[job.job_id], body(job.job_id)) == 200
                await wait_until(lambda: tiny.fetches[job.job_id] == 1)  # B's, in flight
            tg.cancel_scope.cancel()  # B is gone
        tiny.gate.set()
        result = await job.wait(timeout=WAIT)
        assert result.source == "poll"
        assert tiny.fetches[job.job_id] == 2  # B's abandoned confirmation, and A's poll
        assert a.client.waiter.stats.polls_sent == 1


async def test_another_workers_gpt_job_is_confirmed_on_the_gpt_route(
    tiny_api: tuple[TinyTTAPI, str], redis_server: RedisServer
) -> None:
    tiny, api = tiny_api
    async with fleet(api, redis_server.url) as (a, b):
        job = await a.client.gpt.submit(prompt="p")
        assert (await b.broker.job_record(job.job_id)).route == "gpt"  # type: ignore[union-attr]
        async with anyio.create_task_group() as tg:
            tg.start_soon(deliver, b, tiny.hooks[job.job_id], body(job.job_id))
            result = await job.wait(timeout=WAIT)
        assert result.source == "webhook"
        assert tiny.fetch_paths == {"/openai/gpt/fetch": 1}  # B's confirmation, on its route
