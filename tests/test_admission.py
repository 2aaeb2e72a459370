"""A bulk run's admission (``ttapi_async._admission``): what starts, and what is sent.

The pause on an account error, the job cap a 499 lowers, calls queued for the request
budget that are never sent when the run stops or the caller leaves, and the producer
reading the caller's inputs. Everything runs against the emulator over real HTTP; the
moments that matter are triggered by progress counts and emulator counters.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest
from bulk_helpers import (
    assert_journal_matches_the_bill,
    billed,
    client_for,
    generations,
    journal_states,
    prompts,
)

import ttapi_async as tt
from ttapi_async import (
    BulkOutcome,
    BulkPausedError,
    BulkProgress,
    GenerateRequest,
    GPT4oRequest,
    ItemState,
)
from ttapi_async._journal import Journal
from ttapi_async._protocol import PATH_GENERATE
from ttapi_async.testing import Emulator


pytestmark = pytest.mark.anyio


async def test_account_error_pauses_and_a_resume_finishes(
    emulator: Emulator, tmp_path: Path
) -> None:
    """402 stops submissions (no item fails for it); the rerun after a top-up does the rest."""
    emulator.balance = 10  # a 4o submit costs 2: five jobs
    reqs = prompts(12)
    journal = tmp_path / "run.sqlite"
    progress: list[BulkProgress] = []
    done: list[tt.BulkOutcome] = []
    async with client_for(emulator) as c:
        with pytest.raises(BulkPausedError) as info:
            async with c.bulk(
                reqs, max_jobs=2, journal=journal, on_progress=progress.append
            ) as run:
                async for o in run:
                    done.append(o)
    assert isinstance(info.value.cause, tt.InsufficientBalanceError)
    assert progress[-1].paused
    assert len(done) == 5
    assert all(o.ok for o in done)
    with Journal.open(journal) as j:
        counts = j.counts()
    assert counts[ItemState.DONE] == 5
    assert counts[ItemState.FAILED] == 0
    emulator.balance = None
    async with client_for(emulator) as c, c.bulk(reqs, max_jobs=4, journal=journal) as run:
        second = [o async for o in run]
    assert sum(o.resumed for o in second) == 5
    assert sum(o.ok and not o.resumed for o in second) == 7
    assert emulator.counters.submits_by_prompt == {r.prompt: 1 for r in reqs}


async def test_queue_full_lowers_the_job_cap_and_nothing_fails() -> None:
    async with Emulator(job_duration=(0.03, 0.06), max_in_flight=3, seed=7) as emu:
        progress: list[BulkProgress] = []
        async with client_for(emu, max_retries=0) as c:
            async with c.bulk(prompts(20), max_jobs=12, on_progress=progress.append) as run:
                got = [o async for o in run]
        assert all(o.ok for o in got)
        assert len(got) == 20
        assert emu.counters.responses[499] >= 1
        assert min(p.jobs_cap for p in progress) <= 3
        assert emu.counters.submits_by_prompt == {f"p {i}": 1 for i in range(20)}


async def test_break_sends_none_of_the_submits_queued_for_the_budget(
    emulator: Emulator, tmp_path: Path
) -> None:
    """Break while 4o submits queue for a 4-per-second budget: the queued ones are never sent.

    Only what was on the wire is billed, the exit does not wait for the queue to drain,
    nothing is sent afterwards, and the journal matches the bill: every billed item is
    submitted or done, every other one pending, none left in ``submitting``.
    """
    emulator.job_duration = (0.05, 0.05)
    reqs = prompts(12)
    journal = tmp_path / "j.sqlite"
    async with client_for(emulator, timeout=60, requests_per_second=4) as c:
        async with c.bulk(reqs, max_jobs=12, max_requests=12, journal=journal) as run:
            async for _ in run:
                at_break = billed(emulator)
                break
        at_exit = billed(emulator)
        await anyio.sleep(0.5)  # two budget tokens' time: a queued submit would go now
        assert billed(emulator) == at_exit
        assert c.waiter.pending == 0
    # At most the sends already under way when the caller left; far from all twelve.
    assert at_exit <= at_break + 2
    assert at_exit <= len(reqs) // 2
    assert_journal_matches_the_bill(journal, reqs, emulator)


async def test_cancelled_block_sends_none_of_the_submits_queued_for_the_budget(
    emulator: Emulator, tmp_path: Path
) -> None:
    """The caller's scope is cancelled (as by move_on_after) once two submits went out.

    The other ten, waiting for the request budget, are never sent or billed, and the block
    is left at once rather than after the queue has drained at two per second.
    """
    emulator.job_duration = (5.0, 5.0)
    reqs = prompts(12)
    journal = tmp_path / "j.sqlite"
    with anyio.CancelScope() as leave:

        def leave_after_two_submits(p: BulkProgress) -> None:
            if p.submitted >= 2:
                leave.cancel()

        async with client_for(emulator, timeout=60, requests_per_second=2) as c:
            async with c.bulk(
                reqs,
                max_jobs=12,
                max_requests=12,
                journal=journal,
                on_progress=leave_after_two_submits,
            ) as run:
                async for _ in run:
                    pass
    assert leave.cancelled_caught
    at_exit = billed(emulator)
    await anyio.sleep(1.0)
    assert billed(emulator) == at_exit
    assert 2 <= at_exit <= 3
    assert_journal_matches_the_bill(journal, reqs, emulator)


@pytest.mark.parametrize("leave", ["break", "stop"])
async def test_items_never_sent_stay_pending_not_unknown(
    emulator: Emulator, tmp_path: Path, leave: str
) -> None:
    """Sync calls still waiting for the budget when the run ends were never sent.

    They stay pending (a resume sends them), not ``outcome_unknown``: only a call that was
    written may have been billed.
    """
    reqs = generations(8)
    journal = tmp_path / "j.sqlite"
    got: list[BulkOutcome] = []
    async with client_for(emulator, requests_per_second=1) as c:
        async with c.bulk(reqs, max_jobs=8, max_requests=8, journal=journal) as run:
            async for o in run:
                got.append(o)
                if leave == "break":
                    break
                run.stop()
    sent = emulator.counters.requests[PATH_GENERATE]
    with Journal.open(journal) as j:
        counts = j.counts()
        assert j.recovered == 0
    done, unknown = counts[ItemState.DONE], counts[ItemState.OUTCOME_UNKNOWN]
    assert done >= 1
    assert unknown <= sent - done
    assert counts[ItemState.PENDING] == len(reqs) - done - unknown
    assert counts[ItemState.PENDING] >= len(reqs) - sent
    if leave == "stop":
        # stop() lets what was sent finish (every billed call is handed back done) and
        # sends nothing more: at one token a second, the queue is still long when it comes.
        assert unknown == 0
        assert len(got) == done == billed(emulator) <= len(reqs) // 2
        assert all(o.ok for o in got)


@pytest.mark.parametrize("bad", ["wrong type", "iterator raises"])
async def test_a_bad_input_lets_started_items_finish_then_raises(
    emulator: Emulator, tmp_path: Path, bad: str
) -> None:
    """The input breaks while a 4o job runs, a sync call is on the wire and a third waits.

    The job and the call finish and are handed back; the waiting item is never sent and
    stays pending; then the input's error is raised from the loop.
    """
    emulator.sync_latency = 0.25
    emulator.job_duration = (0.1, 0.1)
    counters = emulator.counters

    async def feed() -> AsyncIterator[tt.Request]:
        yield GPT4oRequest(prompt="o 0")
        yield GenerateRequest(prompt="g 1", model="gpt-image-1", quality="low")
        yield GPT4oRequest(prompt="o 2")  # waits for the one HTTP slot the call holds
        while not (counters.submits_by_prompt["o 0"] and counters.requests[PATH_GENERATE]):
            await anyio.sleep(0.01)
        if bad == "wrong type":
            yield {"prompt": "not a request"}  # type: ignore[misc]
        else:
            raise RuntimeError("input source broke")

    expected = tt.ValidationError if bad == "wrong type" else RuntimeError
    journal = tmp_path / "j.sqlite"
    got: list[BulkOutcome] = []
    async with client_for(emulator) as c:
        with pytest.raises(expected):
            async with c.bulk(feed(), journal=journal, max_requests=1) as run:
                async for o in run:
                    got.append(o)
    assert sorted(o.index for o in got) == [0, 1]
    assert all(o.ok for o in got)
    states, recovered = journal_states(journal)
    assert recovered == 0
    assert states == {0: ItemState.DONE, 1: ItemState.DONE, 2: ItemState.PENDING}
    assert dict(counters.submits_by_prompt) == {"o 0": 1, "g 1": 1}


async def test_the_callers_async_iterator_is_closed_before_the_block_exits(
    emulator: Emulator,
) -> None:
    """Leaving early closes the caller's async generator (its ``finally`` runs) in time."""
    events: list[str] = []

    async def feed() -> AsyncIterator[GPT4oRequest]:
        try:
            for r in prompts(100):
                yield r
        finally:
            events.append("input closed")

    async with client_for(emulator) as c:
        async with c.bulk(feed(), max_jobs=2, window=2) as run:
            async for _ in run:
                break
        events.append("bulk exited")
    assert events == ["input closed", "bulk exited"]
