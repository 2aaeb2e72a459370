"""A bulk item's lifecycle (``ttapi_async._items``): 4o jobs and sync calls, start to end.

The pure classification of a billable call's errors first, then the lifecycles against
the emulator: sync kinds, failures, waits that time out, jobs whose image was not saved,
jobs TTAPI does not know, and a stop while the client retries a refused submit.
"""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest
from bulk_helpers import (
    client_for,
    journal_states,
    prompts,
)
from PIL import Image

import ttapi_async as tt
from ttapi_async import (
    BulkProgress,
    Dalle3Request,
    EditRequest,
    GenerateRequest,
    GPT4oRequest,
    ItemState,
    JobFailedError,
    ValidationError,
)
from ttapi_async._items import Verdict, classify
from ttapi_async._journal import Journal
from ttapi_async._protocol import PATH_GENERATE
from ttapi_async.testing import Emulator, Fault


pytestmark = pytest.mark.anyio


def status_error(cls: type[tt.APIStatusError], status: int) -> tt.APIStatusError:
    return cls("refused", status=status, headers={}, body="")


@pytest.mark.parametrize(
    ("error", "verdict"),
    [
        (status_error(tt.AuthenticationError, 401), Verdict.PAUSE),
        (status_error(tt.InsufficientBalanceError, 402), Verdict.PAUSE),
        (status_error(tt.PermissionDeniedError, 403), Verdict.PAUSE),
        (status_error(tt.RateLimitError, 429), Verdict.BUSY),
        (status_error(tt.QueueFullError, 499), Verdict.BUSY),
        (
            tt.OutcomeUnknownError("submit", status_error(tt.GatewayTimeoutError, 504)),
            Verdict.UNKNOWN,
        ),
        # The wrapper decides: a refusal after an attempt that may have been accepted
        # leaves the call in doubt, not merely busy.
        (tt.OutcomeUnknownError("submit", status_error(tt.RateLimitError, 429)), Verdict.UNKNOWN),
        (tt.ClientClosedError("closed"), Verdict.CLOSED),
        (status_error(tt.BadRequestError, 400), Verdict.FAILED),
        (status_error(tt.ContentPolicyError, 400), Verdict.FAILED),
        (status_error(tt.ServerError, 500), Verdict.FAILED),
        (ValidationError("n", 3, "at most 1"), Verdict.FAILED),
        (tt.RequestTimeout("budget", request_sent=False), Verdict.FAILED),
        (tt.ResponseFormatError("not JSON", status=200), Verdict.FAILED),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, Exception) else v.value,
)
def test_one_classification_of_a_billable_calls_errors(
    error: tt.TTAPIError, verdict: Verdict
) -> None:
    """What a run does about an error of a submit or a sync call (both lifecycles ask)."""
    assert classify(error) is verdict


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


async def test_bad_request_items_are_reported_not_raised(emulator: Emulator) -> None:
    reqs = [GenerateRequest(prompt="x", model="dall-e-3", n=3), GenerateRequest(prompt="ok")]
    async with client_for(emulator) as c, c.bulk(reqs) as run:
        got = {o.index: o async for o in run}
    assert isinstance(got[0].error, ValidationError)
    assert got[0].state is ItemState.FAILED
    assert got[1].ok
    assert "x" not in emulator.counters.submits_by_prompt


async def test_a_wait_that_times_out_hands_back_the_job_and_a_resume_waits_again(
    emulator: Emulator, tmp_path: Path
) -> None:
    emulator.job_duration = (0.5, 0.5)
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
    emulator.add_fault(Fault(route=route, status=429, count=1, retry_after=0.15))
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


async def test_a_retried_job_whose_image_still_cannot_be_saved_fails_again_with_its_job(
    emulator: Emulator, tmp_path: Path
) -> None:
    """``retry_failed`` on a 4o job whose image is too large: it fails again (failed to
    failed in the journal), keeps its job id, and no new job is paid for."""
    reqs = [GPT4oRequest(prompt="lighthouse")]
    journal = tmp_path / "j.sqlite"
    out = tmp_path / "out"
    job_ids = []
    for retry in (False, True):
        async with client_for(emulator) as c:
            async with c.bulk(
                reqs, save_to=out, journal=journal, max_bytes=100, retry_failed=retry
            ) as run:
                (outcome,) = [o async for o in run]
        assert outcome.state is ItemState.FAILED
        assert isinstance(outcome.error, tt.ResponseFormatError)
        assert not outcome.resumed
        job_ids.append(outcome.job_id)
    assert job_ids[0] is not None
    assert job_ids[0] == job_ids[1]
    with Journal.open(journal) as j:
        entry = j.get(0)
    assert entry is not None
    assert (entry.state, entry.job_id) == (ItemState.FAILED, job_ids[0])
    assert emulator.counters.submits_by_prompt == {"lighthouse": 1}
