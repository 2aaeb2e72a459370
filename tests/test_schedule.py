"""The PollScheduler as pure state: plain functions, a fake ``now``, no event loop."""

from __future__ import annotations

import math

import pytest

from ttapi_async import PollPolicy, RateLimitError, RetryPolicy, ServerError
from ttapi_async._models import JobSnapshot, JobStatus
from ttapi_async._schedule import PollScheduler, PollState


STEADY = PollPolicy(
    jitter=0.0,
    initial_delay=1.0,
    dense_interval=1.0,
    max_interval=8.0,
    backstop_interval=30.0,
    coalesce=0.02,
    confirm_retry=RetryPolicy(max_retries=100, initial_delay=0.25, max_delay=4.0, jitter=0.0),
)


def scheduler(policy: PollPolicy = STEADY) -> PollScheduler[PollState]:
    return PollScheduler(policy)


def tracked(
    sched: PollScheduler[PollState],
    job_id: str,
    now: float,
    *,
    started: float | None = None,
    hooked: bool = False,
) -> PollState:
    job = PollState(job_id, now if started is None else started, hooked=hooked)
    sched.track(job, now, age_known=started is not None)
    return job


def callback(job_id: str) -> JobSnapshot:
    return JobSnapshot(job_id=job_id, status=JobStatus.SUCCESS)


def planned(sched: PollScheduler[PollState]) -> dict[str, float]:
    """Each job's planned poll (the heap's live entries; stale ones are skipped)."""
    return {job.job_id: due for due, _, seq, job in sched._heap if seq == job.seq}


def test_a_new_job_is_polled_by_the_cold_start_rules_a_little_early_never_late() -> None:
    """First poll after initial_delay; polls due within `coalesce` go out together, early."""
    sched = scheduler()
    job = tracked(sched, "a", 100.0, started=100.0)
    assert sched.next_due() == 101.0
    assert sched.pop_due(100.5) == []
    assert sched.pop_due(100.99) == [job]  # 0.01 s early: within coalesce
    assert job.polling
    assert sched.next_due() == math.inf  # nothing planned while its poll is out


def test_unknown_age_polls_at_once_and_a_hooked_job_waits_for_the_backstop() -> None:
    """A job not submitted here is looked at now; one expecting a callback is a backstop."""
    sched = scheduler()
    stranger = tracked(sched, "stranger", 50.0)
    assert sched.pop_due(50.0) == [stranger]
    tracked(sched, "hooked", 50.0, hooked=True)
    assert sched.next_due() == 80.0


def test_probes_poll_densely_and_the_others_wait_during_the_cold_start() -> None:
    """With probes=1, the first job polls every dense gap; the second checks every 16 s."""
    sched = scheduler(PollPolicy(jitter=0.0, probes=1, max_interval=8.0))
    probe = tracked(sched, "probe", 0.0, started=0.0)
    other = tracked(sched, "other", 0.0, started=0.0)
    assert sched.pop_due(1.0) == [probe]
    sched.answered(probe, 1.0)
    sched.released(probe, 1.0)
    assert sched.next_due() == 2.0  # the dense interval
    assert probe.last_poll == 1.0
    assert sched.pop_due(2.0) == [probe]
    sched.answered(probe, 2.0)
    assert probe.last_gap == 1.0
    sched.released(probe, 2.0)
    assert planned(sched) == {"probe": 3.0, "other": 16.0}
    assert sched.pop_due(16.0) == [probe, other]
    for job in (probe, other):
        sched.answered(job, 16.0)
        sched.released(job, 16.0)
    assert planned(sched) == {"probe": 17.0, "other": 32.0}


def test_a_poll_that_falls_due_during_one_in_flight_goes_out_right_after_it() -> None:
    """A callback while the job's poll is out marks a repoll, planned when the poll is over."""
    sched = scheduler()
    job = tracked(sched, "a", 0.0, started=0.0)
    assert sched.pop_due(1.0) == [job]
    sched.called_back(job, callback("a"), 1.1)
    assert sched.pop_due(1.1) == []  # not handed out twice
    assert job.repoll
    sched.answered(job, 1.3)  # the in-flight reply (older than the callback) said "not yet"
    sched.released(job, 1.3)
    assert (job.repoll, job.polling) == (False, False)
    assert sched.next_due() == 1.3


def test_forgotten_jobs_fall_out_of_the_heap() -> None:
    """A forgotten job's entries are stale: never handed out, never re-planned."""
    sched = scheduler()
    kept = tracked(sched, "kept", 0.0, started=0.0)
    gone = tracked(sched, "gone", 0.0, started=0.0)
    sched.forget(gone)
    assert not sched.tracks(gone)
    assert set(sched.jobs) == {"kept"}
    assert sched.pop_due(1.0) == [kept]
    gone.repoll = True
    sched.released(gone, 1.0)
    sched.crashed(gone, 1.0)
    assert sched.next_due() == math.inf


def test_failed_polls_back_off_from_twice_the_dense_gap() -> None:
    """2, 4, 8, 8 s; a Retry-After longer than that wins; a hooked job keeps its backstop."""
    sched = scheduler()
    job = tracked(sched, "a", 0.0, started=0.0)
    err = ServerError("bad gateway", status=502)
    assert [sched.failed(job, err, 1.0) for _ in range(4)] == [2.0, 4.0, 8.0, 8.0]
    assert job.errors == 4
    assert planned(sched) == {"a": 9.0}
    limited = RateLimitError("slow down", status=429)
    limited.retry_after = 20.0
    assert sched.failed(job, limited, 1.0) == 20.0
    sched.answered(job, 2.0)
    assert job.errors == 0
    hooked = tracked(sched, "h", 0.0, started=0.0, hooked=True)
    assert sched.failed(hooked, err, 1.0) == 30.0
    sched.crashed(job, 3.0)  # a bug of ours: look again after max_interval
    assert planned(sched) == {"a": 11.0, "h": 31.0}


def test_a_callback_is_confirmed_at_once_then_on_the_confirm_backoff() -> None:
    """Confirming fetches go 0.25, 0.5, 1 s apart (errors too); past the window, normal polls."""
    sched = scheduler()
    job = tracked(sched, "a", 0.0, started=0.0, hooked=True)
    sched.called_back(job, callback("a"), 10.0)
    assert sched.next_due() == 10.0
    assert sched.pop_due(10.0) == [job]
    sched.answered(job, 10.0)  # the fetch lags: "not yet"
    sched.released(job, 10.0)
    assert planned(sched) == {"a": 10.25}
    assert sched.failed(job, ServerError("bad gateway", status=502), 10.25) == 0.5
    sched.answered(job, 10.75)
    assert planned(sched) == {"a": 11.75}
    assert job.confirms == 3
    sched.answered(job, 69.9)  # the next would land past the 60 s window: back to the backstop
    assert job.callback is None
    assert planned(sched) == {"a": 99.9}


def test_the_first_job_seen_done_teaches_the_edge_and_replans_every_job() -> None:
    """The midpoint of its last two polls is learned; jobs past that edge are polled at once."""
    sched = scheduler(PollPolicy(jitter=0.0, probes=1, max_interval=8.0))
    probe = tracked(sched, "probe", 0.0, started=0.0)
    waiting = [tracked(sched, f"w{i}", 0.0, started=0.0) for i in range(3)]
    young = tracked(sched, "young", 4.0, started=4.0)
    hooked = tracked(sched, "hooked", 0.0, started=0.0, hooked=True)
    for now in (1.0, 2.0, 3.0, 4.0):
        assert sched.pop_due(now) == [probe]
        sched.answered(probe, now)
        sched.released(probe, now)
    assert sched.pop_due(5.0) == [probe]
    sched.finished(probe, 5.0, learn=True)
    assert not sched.tracks(probe)
    assert len(sched.durations) == 1
    assert sched.durations.quantile(0.5) == 4.5  # (4 + 5) / 2 - 0
    assert sched.pop_due(5.0) == waiting  # past the 4.5 s edge: now, not at 16 s
    # The young job sleeps until one dense gap past the edge; the hooked one is untouched.
    assert planned(sched) == {"young": 4.0 + 4.5 + 1.0, "hooked": 30.0}
    assert sched.pop_due(9.5) == [young]
    assert hooked.seq == 1  # planned once, when tracked


def test_only_a_poll_that_saw_the_end_teaches() -> None:
    """``learn=False`` (a callback ended it) or a hooked job records nothing."""
    sched = scheduler()
    told = tracked(sched, "told", 0.0, started=0.0)
    hooked = tracked(sched, "hooked", 0.0, started=0.0, hooked=True)
    sched.finished(told, 5.0, learn=False)
    sched.finished(hooked, 5.0, learn=True)
    assert len(sched.durations) == 0
    assert sched.jobs == {}


def test_a_job_seen_done_on_its_first_poll_is_recorded_near_the_edge() -> None:
    """With no "not yet" poll, the end is placed two dense gaps back, not at half its age."""
    sched = scheduler()
    job = tracked(sched, "a", 0.0, started=0.0)
    sched.finished(job, 10.0, learn=True)
    assert sched.durations.quantile(0.5) == 9.0  # (max(0, 10 - 2 * 1) + 10) / 2


@pytest.mark.parametrize("count", [2, 50])
def test_jobs_due_at_the_same_instant_never_compare(count: int) -> None:
    """Re-planned to one instant, jobs (which have no order) are all handed out."""
    sched = scheduler()
    jobs = [tracked(sched, f"missing-{i}", 0.0, started=0.0) for i in range(count)]
    sched.replan(0.0)  # nothing learned: the edge is 0, every job is due now
    assert sched.pop_due(0.0) == jobs
