"""Bulk runs against the emulator: limits, ordering, failures, pauses, journals, saving."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest
from PIL import Image

import ttapi_async as tt
from ttapi_async import (
    BulkPausedError,
    BulkProgress,
    Client,
    Dalle3Request,
    EditRequest,
    GenerateRequest,
    GPT4oRequest,
    ItemState,
    JobFailedError,
    ValidationError,
)
from ttapi_async._journal import Journal
from ttapi_async.testing import Emulator, Fault


pytestmark = pytest.mark.anyio


def client_for(emu: Emulator, **kw: object) -> Client:
    return Client(emu.api_key, base_url=emu.url, timeout=30, **kw)  # type: ignore[arg-type]


def prompts(n: int, prefix: str = "p") -> list[GPT4oRequest]:
    return [GPT4oRequest(prompt=f"{prefix} {i}") for i in range(n)]


async def test_every_input_ends_once_and_is_saved(emulator: Emulator, tmp_path: Path) -> None:
    reqs = prompts(12)
    seen: list[BulkProgress] = []
    async with client_for(emulator) as c:
        async with c.bulk(reqs, max_jobs=4, save_to=tmp_path, on_progress=seen.append) as run:
            outcomes = [o async for o in run]
    assert sorted(o.index for o in outcomes) == list(range(12))
    assert all(o.ok and o.job_id and len(o.files) == 1 for o in outcomes)
    assert all(outcomes[i].request is reqs[outcomes[i].index] for i in range(12))
    assert emulator.counters.submits_by_prompt == {r.prompt: 1 for r in reqs}
    assert emulator.counters.in_flight_peak <= 4
    images = sorted(p for p in tmp_path.iterdir() if p.suffix == ".png")
    assert len(images) == 12
    with Image.open(images[0]) as img:
        assert img.format == "PNG"
    sidecar = json.loads(images[0].with_name(images[0].name + ".json").read_text())
    assert sidecar["prompt"].startswith("p ")
    assert emulator.api_key not in json.dumps(sidecar)
    final = seen[-1]
    assert (final.done, final.failed, final.running, final.submitted) == (12, 0, 0, 12)
    assert max(p.running for p in seen) <= 4


async def test_ordered_mode_keeps_input_order_within_the_window(emulator: Emulator) -> None:
    emulator.job_duration = (0.01, 0.3)
    pulled = 0

    async def feed() -> AsyncIterator[GPT4oRequest]:
        nonlocal pulled
        for r in prompts(30):
            pulled += 1
            yield r

    consumed = 0
    ahead: list[int] = []
    async with client_for(emulator) as c:
        async with c.bulk(feed(), max_jobs=8, ordered=True, window=5) as run:
            indices = []
            async for o in run:
                consumed += 1
                ahead.append(pulled - consumed)
                indices.append(o.index)
                await anyio.sleep(0.01)
    assert indices == list(range(30))
    # Never more than the window (plus the one input being looked at) ahead of the caller.
    assert max(ahead) <= 5


async def test_sync_kinds_run_side_by_side(emulator: Emulator, tmp_path: Path) -> None:
    src = tmp_path / "in.png"
    Image.new("RGB", (64, 64)).save(src)
    reqs: list[tt.Request] = [
        GenerateRequest(prompt="g", model="gpt-image-1", quality="low"),
        Dalle3Request(prompt="d", size="1024x1024"),
        EditRequest(image=[src], prompt="e", model="gpt-image-1"),
        GPT4oRequest(prompt="o"),
        GenerateRequest(prompt="g2", model="dall-e-2", n=2, size="256x256"),
    ]
    async with client_for(emulator) as c, c.bulk(reqs, save_to=tmp_path / "out") as run:
        got = {o.index: o async for o in run}
    assert all(o.ok for o in got.values()), [o.error for o in got.values()]
    assert isinstance(got[0].result, tt.ImagesResponse)
    assert isinstance(got[3].result, tt.JobResult)
    assert [len(got[i].files) for i in range(5)] == [1, 1, 1, 1, 2]


async def test_one_failure_does_not_stop_the_rest(emulator: Emulator) -> None:
    reqs = [*prompts(3), GPT4oRequest(prompt="[fail] bad"), *prompts(3, "q")]
    async with client_for(emulator) as c, c.bulk(reqs, max_jobs=3) as run:
        got = {o.index: o async for o in run}
    assert len(got) == 7
    assert got[3].state is ItemState.FAILED
    assert isinstance(got[3].error, JobFailedError)
    assert sum(o.ok for o in got.values()) == 6


async def test_fail_fast_raises_and_leaves_nothing_running(emulator: Emulator) -> None:
    emulator.job_duration = (0.3, 0.3)
    reqs = [GPT4oRequest(prompt="[fail] first"), *prompts(40)]
    async with client_for(emulator) as c:
        with pytest.raises(JobFailedError):
            async with c.bulk(reqs, max_jobs=4, fail_fast=True) as run:
                async for _ in run:
                    pass
        submitted = sum(emulator.counters.submits_by_prompt.values())
        await anyio.sleep(0.5)
        assert c.waiter.pending == 0
    assert submitted < 10
    assert sum(emulator.counters.submits_by_prompt.values()) == submitted


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
    async with Emulator(job_duration=(0.1, 0.2), max_in_flight=3, seed=7) as emu:
        progress: list[BulkProgress] = []
        async with client_for(emu, max_retries=0) as c:
            async with c.bulk(prompts(20), max_jobs=12, on_progress=progress.append) as run:
                got = [o async for o in run]
        assert all(o.ok for o in got)
        assert len(got) == 20
        assert emu.counters.responses[499] >= 1
        assert min(p.jobs_cap for p in progress) <= 3
        assert emu.counters.submits_by_prompt == {f"p {i}": 1 for i in range(20)}


async def test_leaving_early_stops_submitting_and_resume_waits_instead(
    emulator: Emulator, tmp_path: Path
) -> None:
    emulator.job_duration = (0.2, 0.4)
    reqs = prompts(30)
    journal = tmp_path / "j.sqlite"
    async with client_for(emulator) as c:
        async with c.bulk(reqs, max_jobs=6, journal=journal) as run:
            async for _ in run:
                break
        submitted = sum(emulator.counters.submits_by_prompt.values())
        await anyio.sleep(0.3)
        assert sum(emulator.counters.submits_by_prompt.values()) == submitted
        assert c.waiter.pending == 0
    with Journal.open(journal) as j:
        states = {e.state for e in j.entries().values()}
        assert j.recovered == 0  # no submit was cut off between send and record
    assert ItemState.SUBMITTED in states or ItemState.DONE in states
    async with client_for(emulator) as c, c.bulk(reqs, max_jobs=6, journal=journal) as run:
        got = [o async for o in run]
    assert len(got) == 30
    assert all(o.ok for o in got)
    assert emulator.counters.submits_by_prompt == {r.prompt: 1 for r in reqs}


async def test_stop_finishes_in_flight_and_keeps_the_rest_pending(
    emulator: Emulator, tmp_path: Path
) -> None:
    emulator.job_duration = (0.2, 0.3)
    journal = tmp_path / "j.sqlite"
    async with client_for(emulator) as c:
        async with c.bulk(prompts(40), max_jobs=4, journal=journal) as run:
            got = []
            async for o in run:
                got.append(o)
                run.stop()
    assert 1 <= len(got) <= 8
    assert all(o.ok for o in got)
    with Journal.open(journal) as j:
        counts = j.counts()
    assert counts[ItemState.DONE] == len(got)
    assert counts[ItemState.SUBMITTED] == counts[ItemState.SUBMITTING] == 0
    assert sum(emulator.counters.submits_by_prompt.values()) == len(got)


async def test_unknown_outcomes_are_reported_and_resubmitted_only_on_request(
    emulator: Emulator, tmp_path: Path
) -> None:
    emulator.add_fault(
        Fault(route="/v1/images/generations", kind="drop", after_accept=True, count=1)
    )
    reqs = [GenerateRequest(prompt=f"g{i}", model="gpt-image-1", quality="low") for i in range(3)]
    journal = tmp_path / "j.sqlite"
    async with client_for(emulator) as c, c.bulk(reqs, max_jobs=1, journal=journal) as run:
        first = {o.index: o async for o in run}
    unknown = [o for o in first.values() if o.state is ItemState.OUTCOME_UNKNOWN]
    assert len(unknown) == 1
    assert isinstance(unknown[0].error, tt.OutcomeUnknownError)
    async with client_for(emulator) as c, c.bulk(reqs, journal=journal) as run:
        second = [o async for o in run]
    assert [o.state for o in second if not o.ok] == [ItemState.OUTCOME_UNKNOWN]
    assert all(o.resumed for o in second)
    async with client_for(emulator) as c:
        async with c.bulk(reqs, journal=journal, resubmit_unknown=True) as run:
            third = [o async for o in run]
    assert all(o.ok for o in third)
    assert emulator.counters.submits_by_prompt[unknown[0].request.prompt] == 2


async def test_failed_items_are_retried_only_on_request(emulator: Emulator, tmp_path: Path) -> None:
    reqs = [GPT4oRequest(prompt="[fail] x"), GPT4oRequest(prompt="fine")]
    journal = tmp_path / "j.sqlite"
    for retry in (False, False, True):
        async with client_for(emulator) as c:
            async with c.bulk(reqs, journal=journal, retry_failed=retry) as run:
                [o async for o in run]
    assert emulator.counters.submits_by_prompt == {"[fail] x": 2, "fine": 1}


async def test_journal_refuses_other_inputs(emulator: Emulator, tmp_path: Path) -> None:
    journal = tmp_path / "j.sqlite"
    async with client_for(emulator) as c:
        async with c.bulk(prompts(2), journal=journal) as run:
            [o async for o in run]
        with pytest.raises(ValidationError, match="journal"):
            async with c.bulk(prompts(2, "other"), journal=journal) as run:
                [o async for o in run]


async def test_bulk_needs_an_entered_client(emulator: Emulator) -> None:
    c = client_for(emulator)
    with pytest.raises(tt.ClientClosedError, match="async with"):
        async with c.bulk(prompts(1)) as run:
            [o async for o in run]
    await c.aclose()


async def test_bad_request_items_are_reported_not_raised(emulator: Emulator) -> None:
    reqs = [GenerateRequest(prompt="x", model="dall-e-3", n=3), GenerateRequest(prompt="ok")]
    async with client_for(emulator) as c, c.bulk(reqs) as run:
        got = {o.index: o async for o in run}
    assert isinstance(got[0].error, ValidationError)
    assert got[0].state is ItemState.FAILED
    assert got[1].ok
    assert "x" not in emulator.counters.submits_by_prompt


def test_a_resume_keeps_whole_saves_and_drops_images_cut_off_before_their_sidecar(
    tmp_path: Path,
) -> None:
    """kill -9 between placing an image and writing its sidecar: no twin, and no loss."""
    from ttapi_async._bulk import _saved_before  # noqa: PLC0415

    stem = "00007-a-fox-12345678"
    kept = tmp_path / f"{stem}-0.png"
    kept.write_bytes(b"png")
    (tmp_path / f"{stem}-0.png.json").write_text(json.dumps({"job_id": "job-1"}))
    orphan = tmp_path / f"{stem}-0-2.png"  # placed, then the process died
    orphan.write_bytes(b"png")
    other = tmp_path / f"{stem}-0-3.png"  # an earlier job of the same item
    other.write_bytes(b"png")
    (tmp_path / f"{stem}-0-3.png.json").write_text(json.dumps({"job_id": "job-0"}))
    neighbour = tmp_path / "00008-a-fox-12345678-0.png"
    neighbour.write_bytes(b"png")
    # The whole save is kept; the one cut off is reported (removed once saved again).
    assert _saved_before(tmp_path, stem, "job-1", sidecar=True) == ((kept,), (orphan,))
    assert orphan.exists()  # never deleted before a new copy exists
    assert other.exists()
    assert neighbour.exists()
    found, unfinished = _saved_before(tmp_path, stem, "job-1", sidecar=False)
    assert set(found) == {kept, other, orphan}
    assert unfinished == ()


async def test_a_wait_that_times_out_hands_back_the_job_and_a_resume_waits_again(
    emulator: Emulator, tmp_path: Path
) -> None:
    emulator.job_duration = (1.0, 1.0)
    journal = tmp_path / "j.sqlite"
    progress: list[BulkProgress] = []
    async with client_for(emulator) as c:
        async with c.bulk(
            prompts(1), journal=journal, wait_timeout=0.2, on_progress=progress.append
        ) as run:
            (first,) = [o async for o in run]
    assert first.state is ItemState.SUBMITTED
    assert isinstance(first.error, tt.JobTimeoutError)
    assert first.job_id
    assert (progress[-1].timed_out, progress[-1].failed, progress[-1].finished) == (1, 0, 1)
    with Journal.open(journal) as j:
        assert j.counts()[ItemState.SUBMITTED] == 1
    async with client_for(emulator) as c:
        async with c.bulk(prompts(1), journal=journal) as run:
            (second,) = [o async for o in run]
    assert second.ok
    assert second.job_id == first.job_id
    assert emulator.counters.submits_by_prompt == {"p 0": 1}
