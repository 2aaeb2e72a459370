"""Bulk runs at their edges: stopping, leaving early, failed saves, bad inputs, secrets.

Each test pins one fix of the bulk runner's review (it fails on the code before it).
Everything runs against the emulator over real HTTP; the moments that matter (a run
stopped, a caller leaving) are triggered by progress counts and emulator counters, not
by the clock.
"""

from __future__ import annotations

import io
import logging
import os
import re
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import pytest
from aiohttp import web
from PIL import Image

import ttapi_async as tt
from ttapi_async import (
    BulkOutcome,
    BulkPausedError,
    BulkProgress,
    Client,
    GenerateRequest,
    GPT4oRequest,
    ItemState,
)
from ttapi_async._journal import Journal
from ttapi_async._protocol import PATH_GENERATE
from ttapi_async.testing import Emulator, Fault


pytestmark = pytest.mark.anyio

Serve = Callable[[web.Application], Awaitable[str]]


def client_for(emu: Emulator, **kw: object) -> Client:
    kw.setdefault("timeout", 30)
    return Client(emu.api_key, base_url=emu.url, **kw)  # type: ignore[arg-type]


def prompts(n: int, prefix: str = "p") -> list[GPT4oRequest]:
    return [GPT4oRequest(prompt=f"{prefix} {i}") for i in range(n)]


def generations(n: int, prefix: str = "g") -> list[GenerateRequest]:
    return [
        GenerateRequest(prompt=f"{prefix} {i}", model="gpt-image-1", quality="low")
        for i in range(n)
    ]


def billed(emu: Emulator) -> int:
    return sum(emu.counters.submits_by_prompt.values())


def journal_states(path: Path) -> tuple[dict[int, ItemState], int]:
    """Every row's state, and how many rows opening the journal found in ``submitting``."""
    with Journal.open(path) as j:
        return {i: e.state for i, e in j.entries().items()}, j.recovered


def assert_journal_matches_the_bill(path: Path, reqs: list[GPT4oRequest], emu: Emulator) -> None:
    """Billed items are submitted or done, the rest pending (or never reached): none in between."""
    states, recovered = journal_states(path)
    assert recovered == 0
    sent = {i for i, r in enumerate(reqs) if emu.counters.submits_by_prompt[r.prompt]}
    assert {i for i, s in states.items() if s in {ItemState.SUBMITTED, ItemState.DONE}} == sent
    assert {i for i, s in states.items() if s is ItemState.PENDING} == set(states) - sent


# ---------------------------------------------------------------- ordered runs: no holes


async def test_ordered_stop_hands_back_what_finished_behind_an_unsent_item(
    emulator: Emulator, tmp_path: Path
) -> None:
    """Ordered: item 0 backs off after a 429 (never sent) while 1 and 2 finish; then stop().

    Item 0 never starts, so it must not hold the later items back: every item the journal
    says is done is handed back, in order, and item 0 stays pending, unbilled.
    """
    emulator.add_fault(Fault(route=PATH_GENERATE, status=429, count=1, retry_after=2))
    reqs: list[tt.Request] = [GenerateRequest(prompt="g 0", model="gpt-image-1"), *prompts(2)]
    journal = tmp_path / "j.sqlite"

    def stop_once_two_are_done(p: BulkProgress) -> None:
        if p.done == 2:
            run.stop()

    got: list[BulkOutcome] = []
    async with client_for(emulator, max_retries=0) as c:
        run = c.bulk(reqs, ordered=True, journal=journal, on_progress=stop_once_two_are_done)
        async with run:
            async for o in run:
                got.append(o)
    states, recovered = journal_states(journal)
    assert states == {0: ItemState.PENDING, 1: ItemState.DONE, 2: ItemState.DONE}
    assert recovered == 0
    assert [o.index for o in got] == [1, 2]
    assert all(o.ok for o in got)
    assert emulator.counters.responses[429] == 1
    assert dict(emulator.counters.submits_by_prompt) == {"p 0": 1, "p 1": 1}


async def test_ordered_pause_hands_back_what_finished_behind_an_unsent_item(
    emulator: Emulator, tmp_path: Path
) -> None:
    """Ordered: item 0 gets a (slow) 402 after items 1 and 2 were accepted.

    The run pauses; the running jobs finish and are handed back although item 0, ahead of
    them in the order, never started. Then BulkPausedError is raised.
    """
    emulator.add_fault(Fault(route=PATH_GENERATE, kind="latency", delay=0.5, count=1))
    emulator.add_fault(Fault(route=PATH_GENERATE, status=402, count=1))
    reqs: list[tt.Request] = [GenerateRequest(prompt="g 0", model="gpt-image-1"), *prompts(2)]
    journal = tmp_path / "j.sqlite"
    got: list[BulkOutcome] = []
    async with client_for(emulator, max_retries=0) as c:
        with pytest.raises(BulkPausedError):
            async with c.bulk(reqs, ordered=True, journal=journal) as run:
                async for o in run:
                    got.append(o)
    states, _ = journal_states(journal)
    assert states == {0: ItemState.PENDING, 1: ItemState.DONE, 2: ItemState.DONE}
    assert [o.index for o in got] == [1, 2]
    assert dict(emulator.counters.submits_by_prompt) == {"p 0": 1, "p 1": 1}


# ---------------------------------------------------------------- leaving early


async def test_break_sends_none_of_the_submits_queued_for_the_budget(
    emulator: Emulator, tmp_path: Path
) -> None:
    """Break while 4o submits queue for a 2-per-second budget: the queued ones are never sent.

    Only what was on the wire is billed, the exit does not wait for the queue to drain,
    nothing is sent afterwards, and the journal matches the bill: every billed item is
    submitted or done, every other one pending, none left in ``submitting``.
    """
    emulator.job_duration = (0.05, 0.05)
    reqs = prompts(12)
    journal = tmp_path / "j.sqlite"
    async with client_for(emulator, timeout=60, requests_per_second=2) as c:
        async with c.bulk(reqs, max_jobs=12, max_requests=12, journal=journal) as run:
            async for _ in run:
                at_break = billed(emulator)
                break
        at_exit = billed(emulator)
        await anyio.sleep(1.0)  # two budget tokens' time: a queued submit would go now
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


# ---------------------------------------------------------------- saving fails


@pytest.mark.parametrize(
    ("url_ttl", "max_bytes", "error"),
    [
        pytest.param(0.0, 64 * 1024 * 1024, tt.ImageUnavailableError, id="expired link"),
        pytest.param(3600.0, 100, tt.ResponseFormatError, id="too large"),
    ],
)
async def test_a_job_whose_image_was_not_saved_is_fetched_again_not_resubmitted(
    emulator: Emulator, tmp_path: Path, url_ttl: float, max_bytes: int, error: type[Exception]
) -> None:
    """A 4o job succeeded but its image could not be saved: FAILED, with its job id kept.

    With ``retry_failed`` the rerun waits on that job again and saves its image, without
    paying for a new job, as long as the image is still there.
    """
    reqs = [GPT4oRequest(prompt="lighthouse")]
    journal = tmp_path / "j.sqlite"
    out = tmp_path / "out"
    emulator.url_ttl = url_ttl
    async with client_for(emulator) as c:
        async with c.bulk(reqs, save_to=out, journal=journal, max_bytes=max_bytes) as run:
            (first,) = [o async for o in run]
    assert first.state is ItemState.FAILED
    assert isinstance(first.error, error)
    assert first.job_id
    with Journal.open(journal) as j:
        entry = j.get(0)
    assert entry is not None
    assert (entry.state, entry.job_id) == (ItemState.FAILED, first.job_id)

    emulator.url_ttl = 3600.0
    async with client_for(emulator) as c:
        async with c.bulk(reqs, save_to=out, journal=journal, retry_failed=True) as run:
            (second,) = [o async for o in run]
    assert second.ok, second.error
    assert second.job_id == first.job_id
    assert len(second.files) == 1
    assert second.files[0].path.is_file()
    assert emulator.counters.submits_by_prompt == {"lighthouse": 1}


async def test_a_job_whose_image_expired_is_submitted_again_once(
    emulator: Emulator, tmp_path: Path
) -> None:
    """Retrying a failed save submits a new job only when the old image really expired.

    Run 1: the link expires before the download (failed, job A kept). Run 2 (retry): job
    A's image is still gone, so job B is submitted; its link expires too (failed, job B
    kept). Run 3 (retry, links live again): job B is fetched and saved; nothing is billed.
    """
    reqs = [GPT4oRequest(prompt="lighthouse")]
    journal = tmp_path / "j.sqlite"
    out = tmp_path / "out"
    job_ids: list[str | None] = []
    for retry, ttl in ((False, 0.0), (True, 0.0), (True, 3600.0)):
        emulator.url_ttl = ttl
        async with client_for(emulator) as c:
            async with c.bulk(reqs, save_to=out, journal=journal, retry_failed=retry) as run:
                (outcome,) = [o async for o in run]
        if ttl:
            assert outcome.ok, outcome.error
        else:
            assert isinstance(outcome.error, tt.ImageUnavailableError)
        job_ids.append(outcome.job_id)
    assert job_ids[0] != job_ids[1]
    assert job_ids[1] == job_ids[2]
    assert emulator.counters.submits_by_prompt == {"lighthouse": 2}
    with Journal.open(journal) as j:
        entry = j.get(0)
    assert entry is not None
    assert (entry.state, entry.job_id) == (ItemState.DONE, job_ids[2])


async def test_os_errors_while_saving_fail_the_items_and_the_run_goes_on(
    emulator: Emulator, tmp_path: Path
) -> None:
    """``save_to`` lies under a regular file, so every save fails with an OSError.

    Each item ends FAILED with that error (4o jobs keep their job id), the run hands back
    every outcome and ends normally, and once the folder can be made a retry saves the 4o
    images without paying for new jobs.
    """
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where a folder should be")
    out = blocker / "out"
    reqs: list[tt.Request] = [*generations(3), *prompts(3)]
    journal = tmp_path / "j.sqlite"
    async with client_for(emulator) as c:
        async with c.bulk(reqs, save_to=out, journal=journal, max_jobs=6) as run:
            got = {o.index: o async for o in run}
    assert sorted(got) == list(range(6))
    assert all(o.state is ItemState.FAILED for o in got.values())
    assert all(isinstance(o.error, OSError) for o in got.values())
    assert all(got[i].job_id for i in range(3, 6))
    states, recovered = journal_states(journal)
    assert recovered == 0
    assert set(states.values()) == {ItemState.FAILED}
    assert billed(emulator) == 6

    blocker.unlink()
    async with client_for(emulator) as c:
        async with c.bulk(reqs, save_to=out, journal=journal, retry_failed=True) as run:
            again = {o.index: o async for o in run}
    assert all(o.ok for o in again.values()), [o.error for o in again.values()]
    assert [again[i].job_id for i in range(3, 6)] == [got[i].job_id for i in range(3, 6)]
    # Sync results cannot be fetched again: those three are new calls; the jobs are not.
    assert emulator.counters.submits_by_prompt == {
        **{f"g {i}": 2 for i in range(3)},
        **{f"p {i}": 1 for i in range(3)},
    }


async def test_leaving_while_saving_leaves_no_item_submitting(
    emulator: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The caller leaves while every result is being saved (the disk hangs).

    A sync result received but not saved cannot be fetched again: FAILED, not left in
    ``submitting`` (which a reopened journal would turn into ``outcome_unknown``). A 4o
    job stays submitted, and a resumed run saves it without paying again.
    """
    reqs: list[tt.Request] = [*generations(3), GPT4oRequest(prompt="p 0")]
    journal = tmp_path / "j.sqlite"
    out = tmp_path / "out"
    saving = 0
    async with client_for(emulator) as c:
        with anyio.CancelScope() as leave:

            async def hanging_save(*args: Any, **kwargs: Any) -> Any:
                nonlocal saving
                saving += 1
                if saving == len(reqs):
                    leave.cancel()  # every item is saving now: the caller gives up
                await anyio.sleep_forever()

            monkeypatch.setattr(c, "save", hanging_save)
            async with c.bulk(reqs, save_to=out, journal=journal) as run:
                async for _ in run:
                    pass
        assert leave.cancelled_caught
    assert saving == len(reqs)
    states, recovered = journal_states(journal)
    assert recovered == 0
    assert states == {
        0: ItemState.FAILED,
        1: ItemState.FAILED,
        2: ItemState.FAILED,
        3: ItemState.SUBMITTED,
    }
    async with client_for(emulator) as c, c.bulk(reqs, save_to=out, journal=journal) as run:
        resumed = {o.index: o async for o in run}
    assert all(resumed[i].resumed and resumed[i].state is ItemState.FAILED for i in range(3))
    assert resumed[3].ok
    assert len(resumed[3].files) == 1
    assert emulator.counters.submits_by_prompt["p 0"] == 1


# ---------------------------------------------------------------- bad inputs


@pytest.mark.parametrize("bad", ["wrong type", "iterator raises"])
async def test_a_bad_input_lets_started_items_finish_then_raises(
    emulator: Emulator, tmp_path: Path, bad: str
) -> None:
    """The input breaks while a 4o job runs, a sync call is on the wire and a third waits.

    The job and the call finish and are handed back; the waiting item is never sent and
    stays pending; then the input's error is raised from the loop.
    """
    emulator.sync_latency = 0.5
    emulator.job_duration = (0.2, 0.2)
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


# ---------------------------------------------------------------- errors and their causes


async def test_paused_error_chains_the_account_error(emulator: Emulator) -> None:
    """BulkPausedError's ``__cause__`` is the account error (its ``cause``), for tracebacks."""
    emulator.balance = 0
    async with client_for(emulator) as c:
        with pytest.raises(BulkPausedError) as info:
            async with c.bulk(prompts(2)) as run:
                [o async for o in run]
    assert isinstance(info.value.cause, tt.InsufficientBalanceError)
    assert info.value.__cause__ is info.value.cause


async def test_fail_fast_error_keeps_its_cause(emulator: Emulator) -> None:
    """Fail-fast raises the item's error with its own cause chain intact."""
    emulator.add_fault(Fault(route=PATH_GENERATE, kind="drop", after_accept=True, count=1))
    async with client_for(emulator) as c:
        with pytest.raises(tt.OutcomeUnknownError) as info:
            async with c.bulk(generations(1), fail_fast=True) as run:
                [o async for o in run]
    assert info.value.__cause__ is not None
    assert info.value.__cause__ is info.value.cause


# ---------------------------------------------------------------- secrets


async def test_hook_token_never_leaves_the_request(
    emulator: Emulator, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A hook URL (and its token) in ``extra_body`` is sent, but never shown or stored.

    Not in the requests' or outcomes' reprs (a failed job's too), the logs, the sidecars
    or the journal.
    """
    caplog.set_level(logging.DEBUG)
    token = "tok_SECRET_abcdef0123456789"
    hook = {"hookUrl": f"http://127.0.0.1:9/hooks/{token}"}
    reqs = [
        GPT4oRequest(prompt="x", extra_body=hook),
        GPT4oRequest(prompt="[fail] y", extra_body=hook),
    ]
    out = tmp_path / "out"
    journal = tmp_path / "j.sqlite"
    async with client_for(emulator) as c, c.bulk(reqs, save_to=out, journal=journal) as run:
        got = [o async for o in run]
    assert sorted(o.state for o in got) == sorted([ItemState.DONE, ItemState.FAILED])
    # It was sent: TTAPI got the hook URL with both jobs.
    assert [j.hook_url for j in emulator.jobs.values()] == [hook["hookUrl"]] * 2
    assert not [r for r in reqs if token in repr(r)]
    assert not [o for o in got if token in repr(o) or token in str(o.error)]
    assert token not in caplog.text
    stored = [*out.iterdir(), *tmp_path.glob("j.sqlite*")]
    assert any(p.suffix == ".json" for p in stored)
    assert not [p.name for p in stored if token.encode() in p.read_bytes()]


# ---------------------------------------------------------------- the caller's code


async def test_an_on_progress_error_is_logged_and_the_run_goes_on(
    emulator: Emulator, caplog: pytest.LogCaptureFixture
) -> None:
    """A progress callback that raises (a display bug) does not abandon billed work."""
    seen: list[BulkProgress] = []

    def flaky(p: BulkProgress) -> None:
        seen.append(p)
        if len(seen) == 5:
            raise ValueError("bug in my progress bar")

    reqs = prompts(10)
    async with client_for(emulator) as c, c.bulk(reqs, on_progress=flaky) as run:
        got = [o async for o in run]
    assert len(got) == 10
    assert all(o.ok for o in got)
    assert seen[-1].done == 10  # still called after it raised
    errors = [r for r in caplog.records if r.name == "ttapi_async.bulk" and r.exc_info]
    assert len(errors) == 1
    assert errors[0].exc_info is not None
    assert errors[0].exc_info[0] is ValueError


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


# ---------------------------------------------------------------- resuming unknown jobs


async def test_a_resumed_job_ttapi_does_not_know_fails_at_once(
    emulator: Emulator, tmp_path: Path
) -> None:
    """A journal's submitted jobs, resumed against a server that never saw them (404).

    They end FAILED with JobNotFoundError after one look each, instead of being polled
    until the wait times out (and reported submitted again, run after run). Asked to retry,
    the next run submits new jobs.
    """
    emulator.job_duration = (60.0, 60.0)
    reqs = prompts(2)
    journal = tmp_path / "j.sqlite"
    with anyio.CancelScope() as leave:

        def leave_once_both_submitted(p: BulkProgress) -> None:
            if p.submitted == len(reqs):
                leave.cancel()

        async with client_for(emulator) as c:
            async with c.bulk(reqs, journal=journal, on_progress=leave_once_both_submitted) as run:
                async for _ in run:
                    pass
    with Journal.open(journal) as j:
        old_ids = {i: e.job_id for i, e in j.entries().items() if e.state is ItemState.SUBMITTED}
    assert set(old_ids) == {0, 1}

    async with Emulator(job_duration=(0.05, 0.1), seed=5) as fresh:
        async with client_for(fresh) as c:
            async with c.bulk(reqs, journal=journal, wait_timeout=5) as run:
                got = {o.index: o async for o in run}
            assert fresh.counters.fetches == len(reqs)  # one look each, not a poll loop
            assert all(o.state is ItemState.FAILED for o in got.values())
            assert all(isinstance(o.error, tt.JobNotFoundError) for o in got.values())
            assert {i: o.job_id for i, o in got.items()} == old_ids
            states, _ = journal_states(journal)
            assert set(states.values()) == {ItemState.FAILED}

            async with c.bulk(reqs, journal=journal, retry_failed=True) as run:
                again = [o async for o in run]
        assert all(o.ok and o.job_id not in old_ids.values() for o in again)
        assert fresh.counters.submits_by_prompt == {r.prompt: 1 for r in reqs}


@pytest.mark.parametrize("kind", ["4o", "sync"])
async def test_stop_while_the_client_retries_a_refused_submit(
    emulator: Emulator, tmp_path: Path, kind: str
) -> None:
    """A 429'd attempt, then stop() before the client's retry: pending again, nothing running."""
    from ttapi_async._protocol import PATH_4O_SUBMIT  # noqa: PLC0415

    route = PATH_4O_SUBMIT if kind == "4o" else PATH_GENERATE
    emulator.add_fault(Fault(route=route, status=429, count=1, retry_after=0.3))
    req: tt.Request = (
        GPT4oRequest(prompt="p 0")
        if kind == "4o"
        else GenerateRequest(prompt="g 0", model="gpt-image-1")
    )
    journal = tmp_path / "j.sqlite"

    def on_progress(p: BulkProgress) -> None:
        if p.running == 1:
            run.stop()  # the first attempt is on its way (and gets a 429)

    async with client_for(emulator) as c:
        run = c.bulk([req], journal=journal, on_progress=on_progress)
        async with run:
            got = [o async for o in run]
        final = run.progress
    with Journal.open(journal) as j:
        states = {i: e.state for i, e in j.entries().items()}
        assert j.recovered == 0
    assert emulator.counters.responses[429] == 1
    assert not emulator.counters.submits_by_prompt
    assert got == []
    assert states == {0: ItemState.PENDING}
    assert final.running == 0


# ---------------------------------------------------------------- temporary files, damage


def a_png() -> bytes:
    """A real PNG of about 270 KB (noise does not compress): several 64 KiB chunks."""
    buf = io.BytesIO()
    Image.frombytes("RGB", (300, 300), os.urandom(300 * 300 * 3)).save(buf, "PNG")
    return buf.getvalue()


def gated_images(
    body: bytes, started: anyio.Event, release: anyio.Event, app: web.Application | None = None
) -> web.Application:
    """Serve ``body`` at /gated.png: 70,000 bytes, then the rest once ``release`` is set."""

    async def handler(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(
            headers={"Content-Type": "image/png", "Content-Length": str(len(body))}
        )
        await resp.prepare(request)
        await resp.write(body[:70_000])
        started.set()
        await release.wait()
        await resp.write(body[70_000:])
        return resp

    app = app if app is not None else web.Application()
    app.router.add_get("/gated.png", handler)
    return app


async def test_a_journaled_run_sweeps_only_what_its_own_journal_left(
    emulator: Emulator, serve: Serve, tmp_path: Path
) -> None:
    """A run starts while a ``client.save()`` streams into its folder.

    The run removes the temporary files an earlier run of its own journal left (tagged
    with the journal's run id), and nothing else: not the streaming save's file, not an
    untagged leftover, not another journal's. The save then completes, intact.
    """
    out = tmp_path / "out"
    out.mkdir()
    journal = tmp_path / "j.sqlite"
    with Journal.open(journal) as j:
        run_id = j.run_id
    assert run_id is not None
    own = [out / f".part-{run_id}-k2j3h4g5", out / f".part-{run_id}-zz9_yy8x"]
    foreign = [out / ".part-q1w2e3r4", out / ".part-0000000000000000-a1b2c3d4"]
    for leftover in (*own, *foreign):
        leftover.write_bytes(b"half an image")
    started, release = anyio.Event(), anyio.Event()
    body = a_png()
    base = await serve(gated_images(body, started, release))
    reqs = prompts(2)
    async with client_for(emulator) as c, anyio.create_task_group() as tg:
        saved: list[tt.SavedImage] = []

        async def save_in_flight() -> None:
            result = tt.ImagesResponse(created=1, data=(tt.ImageData(url=base + "/gated.png"),))
            saved.extend(await c.save(result, out, stem="mine"))

        tg.start_soon(save_in_flight)
        await started.wait()  # its .part- file is in the folder, half written
        streaming = [p for p in out.iterdir() if p not in (*own, *foreign)]
        assert len(streaming) == 1
        async with c.bulk(reqs, save_to=out, journal=journal) as run:
            got = [o async for o in run]
        assert all(o.ok for o in got), [o.error for o in got]
        assert streaming[0].exists()
        release.set()
    (mine,) = saved
    assert mine.path.read_bytes() == body
    assert all(not p.exists() for p in own)
    assert all(p.read_bytes() == b"half an image" for p in foreign)
    assert sorted(p.name for p in out.glob(".part-*")) == sorted(p.name for p in foreign)


@pytest.mark.parametrize("journaled", [True, False], ids=["journal", "no-journal"])
async def test_a_runs_temporary_files_carry_its_journals_run_id(
    serve: Serve, tmp_path: Path, journaled: bool
) -> None:
    """While a run's image streams, its ``.part-`` file is named with the run id.

    That is what lets a resumed run (a new process) find it after a crash; a run
    without a journal has no resume and names its files like any other save.
    """
    started, release = anyio.Event(), anyio.Event()
    app = web.Application()
    base = ""

    async def generate(_: web.Request) -> web.Response:
        return web.json_response({"created": 1, "data": [{"url": base + "/gated.png"}]})

    app.router.add_post(PATH_GENERATE, generate)
    body = a_png()
    base = await serve(gated_images(body, started, release, app))
    out = tmp_path / "out"
    journal = tmp_path / "j.sqlite" if journaled else None
    seen: list[str] = []
    async with Client("test-key-123", base_url=base, timeout=30) as c:
        async with c.bulk(generations(1), save_to=out, journal=journal) as run:
            async with anyio.create_task_group() as tg:

                async def watch() -> None:
                    await started.wait()
                    seen.extend(p.name for p in out.iterdir())
                    release.set()

                tg.start_soon(watch)
                got = [o async for o in run]
            run_id = run.journal.run_id if run.journal is not None else None
    assert [o.state for o in got] == [ItemState.DONE]
    assert len(seen) == 1
    if journaled:
        assert run_id is not None
        assert seen[0].startswith(f".part-{run_id}-")
    else:
        assert re.fullmatch(r"\.part-[a-z0-9_]{8}", seen[0]), seen
    assert got[0].paths[0].read_bytes() == body
    assert not list(out.glob(".part-*"))


async def test_a_damaged_journal_refuses_to_start_and_deletes_nothing(
    emulator: Emulator, tmp_path: Path
) -> None:
    """A row no run writes (``files`` not JSON, an unknown state): JournalCorruptError
    naming the file and rows, before anything is sent, swept, reset or removed."""
    out = tmp_path / "out"
    journal = tmp_path / "j.sqlite"
    reqs = prompts(4)
    async with client_for(emulator) as c:
        async with c.bulk(reqs, save_to=out, journal=journal) as run:
            assert all([o.ok async for o in run])
            run_id = run.journal.run_id if run.journal is not None else None
    leftover = out / f".part-{run_id}-k2j3h4g5"  # what a crash would have left
    leftover.write_bytes(b"half an image")
    conn = sqlite3.connect(journal, isolation_level=None)
    conn.execute("PRAGMA ignore_check_constraints = ON")
    conn.execute("UPDATE items SET files = 'nope' WHERE idx = 1")
    conn.execute("UPDATE items SET state = 'exploded' WHERE idx = 3")
    conn.close()
    before = journal.read_bytes()
    files = {p.name: p.read_bytes() for p in out.iterdir()}
    submits = billed(emulator)
    async with client_for(emulator) as c:
        with pytest.raises(tt.JournalCorruptError) as info:
            async with c.bulk(reqs, save_to=out, journal=journal, retry_failed=True) as run:
                async for _ in run:
                    pass
        # Refused again, not "another process is running": the failed open let go.
        with pytest.raises(tt.JournalCorruptError):
            async with c.bulk(reqs, save_to=out, journal=journal):
                pass
    err = info.value
    assert err.path == str(journal)
    assert err.rows == (1, 3)
    assert str(journal) in str(err)
    assert billed(emulator) == submits
    assert journal.read_bytes() == before
    assert {p.name: p.read_bytes() for p in out.iterdir()} == files
