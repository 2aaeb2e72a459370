"""RedisJournal against a real redis-server: rows, claims, leases and fencing.

A worker "dies" or "stalls" here by its claim lapsing: the test writes the claim's expiry
into the past (the lease's clock is Redis's), so no test sleeps out a lease.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import pytest
import redis.asyncio as aioredis
from helpers import RedisServer

import ttapi_async as tt
from ttapi_async._journalstore import ItemState
from ttapi_async._sharedrun import RunKeys


pytestmark = pytest.mark.anyio


@asynccontextmanager
async def worker(url: str, run: str = "r1", lease: float = 30.0) -> AsyncIterator[tt.RedisJournal]:
    async with tt.RedisJournal.open(url, run, lease=lease) as journal:
        yield journal


async def claim_of(raw: aioredis.Redis, run: str, index: int) -> str:
    """The stored claim on ``index``: ``owner|fence|expires_ms``."""
    value = await raw.hget(RunKeys("ttapi", run).claims, str(index))
    assert isinstance(value, bytes)
    return value.decode()


async def lapse(url: str, run: str, index: int) -> None:
    """Make the claim on ``index`` lapse now (its holder died, or stalled past its lease)."""
    keys = RunKeys("ttapi", run)
    raw = aioredis.Redis.from_url(url)
    async with raw:
        claim = await claim_of(raw, run, index)
        owner, fence, _ = claim.rsplit("|", 2)
        await raw.hset(keys.claims, str(index), f"{owner}|{fence}|0")


async def test_rows_are_shared_and_checked(redis_server: RedisServer) -> None:
    async with worker(redis_server.url) as a, worker(redis_server.url) as b:
        assert a.run_id == b.run_id
        assert a.run_id is not None
        assert a.owner != b.owner
        first = await a.begin(0, "fp0", "4o", "a fox")
        again = await b.begin(0, "fp0", "4o", "a fox")
        assert first == again
        assert first.state is ItemState.PENDING
        with pytest.raises(tt.ValidationError, match="different input"):
            await b.begin(0, "other", "4o", "a fox")
        assert await a.claim(0)
        await a.transition(0, ItemState.SUBMITTING)
        await a.transition(0, ItemState.SUBMITTING)  # a retry: one more attempt
        await a.transition(0, ItemState.SUBMITTED, job_id="j-1", hooked=True)
        row = (await b.load())[0]
        assert (row.state, row.job_id, row.hooked, row.attempts) == (
            ItemState.SUBMITTED,
            "j-1",
            True,
            2,
        )
        with pytest.raises(tt.JournalTransitionError):
            await a.transition(0, ItemState.SUBMITTING)  # submitted -> submitting: illegal
        await a.transition(0, ItemState.DONE, files=["x.png"])
        assert (await b.rows([0, 5]))[0].files == ("x.png",)
        assert await a.release(0)


async def test_one_claim_at_a_time_and_a_lapsed_one_is_taken_over(
    redis_server: RedisServer,
) -> None:
    async with worker(redis_server.url) as a, worker(redis_server.url) as b:
        await a.begin(0, "fp", "4o", "p")
        assert await a.claim(0)
        assert not await b.claim(0)  # a live claim
        assert await a.renew(0)
        await a.transition(0, ItemState.SUBMITTING)
        await lapse(redis_server.url, "r1", 0)  # A stalls past its lease mid-send
        assert await b.claim(0)
        # Caught submitting: it may have been sent, so it is outcome_unknown, as SQLite
        # does with a crashed run's row.
        row = (await b.load())[0]
        assert row.state is ItemState.OUTCOME_UNKNOWN
        assert "may have been" in (row.reason or "")
        # A wakes up: every write it tries is refused; it never gets to send again.
        with pytest.raises(tt.ClaimLostError):
            await a.transition(0, ItemState.SUBMITTED, job_id="late", hooked=False)
        assert not await a.renew(0)
        assert not await a.release(0)
        assert (await b.load())[0].job_id is None
        await b.transition(0, ItemState.SUBMITTING)  # B holds it with the newer fence
        assert (await a.load())[0].attempts == 2


async def test_a_write_without_a_claim_is_refused(redis_server: RedisServer) -> None:
    async with worker(redis_server.url) as a:
        await a.begin(0, "fp", "4o", "p")
        with pytest.raises(tt.ClaimLostError):
            await a.transition(0, ItemState.SUBMITTING)
        with pytest.raises(tt.ValidationError, match="job_id"):
            await a.transition(0, ItemState.SUBMITTED)


async def test_claims_are_renewed_while_the_worker_lives(redis_server: RedisServer) -> None:
    """lease=1: renewed every third of a second, the claim holds past several leases."""
    async with worker(redis_server.url, lease=1.0) as a, worker(redis_server.url, lease=1.0) as b:
        await a.begin(0, "fp", "4o", "p")
        assert await a.claim(0)
        raw = aioredis.Redis.from_url(redis_server.url)
        async with raw:
            first = await claim_of(raw, "r1", 0)
            # Six renewals in a row (the expiry moves each time): two leases' worth.
            for _ in range(6):
                with anyio.fail_after(5):
                    while (await claim_of(raw, "r1", 0)) == first:
                        await anyio.sleep(0.05)  # Redis has no event for this: look again
                first = await claim_of(raw, "r1", 0)
        assert not await b.claim(0)


async def test_a_run_that_vanished_stops_instead_of_submitting_again(
    redis_server: RedisServer,
) -> None:
    async with worker(redis_server.url) as a:
        await a.begin(0, "fp", "4o", "p")
        assert await a.claim(0)
        raw = aioredis.Redis.from_url(redis_server.url)
        async with raw:
            await raw.flushall()  # Redis came back empty
        with pytest.raises(tt.JournalCorruptError, match="vanished"):
            await a.transition(0, ItemState.SUBMITTING)


async def test_unreachable_redis_is_a_broker_error(redis_server: RedisServer) -> None:
    url = redis_server.url
    redis_server.stop()
    with pytest.raises(tt.BrokerError, match="cannot open"):
        async with worker(url):
            pass


async def test_bad_arguments_are_refused_by_name(redis_server: RedisServer) -> None:
    with pytest.raises(tt.ValidationError, match="lease"):
        async with worker(redis_server.url, lease=0.5):
            pass
    with pytest.raises(tt.ValidationError, match="run"):
        async with worker(redis_server.url, run="has space"):
            pass
    with pytest.raises(tt.ValidationError, match="url"):
        async with tt.RedisJournal.open("http://127.0.0.1:1", "r"):
            pass


async def test_a_closed_run_expires_and_its_claims_are_let_go(redis_server: RedisServer) -> None:
    async with worker(redis_server.url) as a:
        await a.begin(0, "fp", "4o", "p")
        assert await a.claim(0)
    # Closed: the claim is released (another worker takes the item at once)...
    async with tt.RedisJournal.open(redis_server.url, "r1", run_ttl=3600) as b:
        assert await b.claim(0)
    # ...and the run's keys expire within the hour of its last close (the claims hash,
    # emptied, is gone already).
    raw = aioredis.Redis.from_url(redis_server.url)
    async with raw:
        keys = RunKeys("ttapi", "r1")
        ttls = [await raw.ttl(k) for k in (keys.meta, keys.rows, keys.fence)]
        assert await raw.exists(keys.claims) == 0
    assert all(3500 < ttl <= 3600 for ttl in ttls), ttls
