"""The callback intake, on its own: a real scheduler, records and a resolver that notes
what it was told. No event loop, no HTTP (the waiter and webhook tests cover those)."""

from __future__ import annotations

import attrs

import ttapi_async as tt
from ttapi_async._intake import CallbackIntake, Pending
from ttapi_async._schedule import PollScheduler


def snap(job_id: str, status: tt.JobStatus) -> tt.JobSnapshot:
    return tt.JobSnapshot(job_id=job_id, status=status, raw_status=status.value)


@attrs.define
class Counts:
    callbacks_accepted: int = 0
    callbacks_duplicate: int = 0


@attrs.define
class World:
    """An intake wired to a scheduler, with every call it makes written down."""

    sched: PollScheduler[Pending]
    intake: CallbackIntake
    counts: Counts
    resolved: list[tuple[str, str, bool]] = attrs.Factory(list)
    heard: list[tuple[str, str]] = attrs.Factory(list)
    kicks: int = 0
    confirm: bool = True

    def track(self, job_id: str, *, hooked: bool = True) -> Pending:
        pending = Pending(job_id, 0.0, hooked=hooked)
        self.sched.track(pending, 0.0)
        return pending


def world() -> World:
    sched: PollScheduler[Pending] = PollScheduler(tt.PollPolicy())
    counts = Counts()
    w: World

    def resolve(
        pending: Pending, snap: tt.JobSnapshot, *, source: str, shared: bool = False
    ) -> None:
        pending.outcome = snap
        w.resolved.append((pending.job_id, source, shared))

    def kick() -> None:
        w.kicks += 1

    def adopt(job_id: str, route: str) -> Pending:
        found = sched.jobs.get(job_id)
        return found if found is not None else w.track(job_id)

    intake = CallbackIntake(
        sched=sched,
        kick=kick,
        resolve=resolve,
        heard=lambda s, source: w.heard.append((s.job_id, source)),
        adopt=adopt,
        stats=counts,
        confirm=lambda: w.confirm,
        now=lambda: 10.0,
    )
    w = World(sched, intake, counts)
    return w


def test_a_callback_is_confirmed_by_a_poll_and_its_repeat_is_a_duplicate() -> None:
    w = world()
    pending = w.track("j1")
    done = snap("j1", tt.JobStatus.SUCCESS)
    w.intake.accept_callback(done)
    assert w.resolved == []  # not trusted: a confirming poll is due now
    assert pending.called_back
    assert w.sched.next_due() == 10.0
    assert w.kicks == 1
    w.intake.accept_callback(done)
    assert (w.counts.callbacks_accepted, w.counts.callbacks_duplicate) == (1, 1)


def test_without_confirmation_a_final_callback_ends_the_job() -> None:
    w = world()
    w.track("j1")
    w.confirm = False  # read per callback: the waiter's setting may change
    w.intake.accept_callback(snap("j1", tt.JobStatus.FAILED))
    assert w.resolved == [("j1", "webhook", False)]
    w.intake.accept_callback(snap("j1", tt.JobStatus.FAILED))
    assert w.counts.callbacks_duplicate == 1  # ended: anything later is a duplicate
    w.intake.accept_callback(snap("unknown", tt.JobStatus.SUCCESS))
    assert w.counts.callbacks_duplicate == 2


def test_an_adopted_callback_tracks_the_job_as_this_processs_own() -> None:
    w = world()
    w.intake.adopt_callback(snap("theirs", tt.JobStatus.SUCCESS), "gpt")
    assert w.sched.jobs["theirs"].own
    assert w.counts.callbacks_accepted == 1


def test_shared_outcomes_end_tracked_jobs_and_are_kept_for_the_rest() -> None:
    w = world()
    w.track("mine")
    w.intake.accept_shared(snap("mine", tt.JobStatus.ON_QUEUE), "webhook")
    assert (w.resolved, w.heard) == ([], [])  # not final: nothing to share
    w.intake.accept_shared(snap("mine", tt.JobStatus.SUCCESS), "webhook")
    w.intake.accept_shared(snap("other", tt.JobStatus.SUCCESS), "poll")
    assert w.resolved == [("mine", "webhook", True)]
    assert w.heard == [("mine", "webhook"), ("other", "poll")]


def test_a_callback_seen_elsewhere_brings_the_poll_forward_to_the_grace() -> None:
    w = world()
    pending = w.track("j1")
    w.sched.pop_due(1e9)  # its first poll, answered "still running" at 10 s:
    w.sched.answered(pending, 10.0)  # a hooked job's next poll is the backstop's
    w.sched.released(pending, 10.0)
    assert w.sched.next_due() > 15.0
    w.intake.callback_seen("j1", 5.0)
    assert w.sched.next_due() == 15.0  # now (10) + grace
    pending.called_back = True
    w.intake.callback_seen("j1", 1.0)  # its own callback came: no change
    assert w.sched.next_due() == 15.0


def test_degrade_once_until_recovered() -> None:
    w = world()
    w.intake.degrade()
    w.intake.degrade()
    assert w.intake.degraded
    assert w.kicks == 1
    w.intake.recover()
    assert not w.intake.degraded
