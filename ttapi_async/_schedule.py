"""PollScheduler: when to poll each tracked job, as pure state over a ``now`` passed in.

Strictly private. The waiter (:mod:`ttapi_async._waiter`) is the I/O around it: it sleeps
until :meth:`PollScheduler.next_due`, hands what :meth:`PollScheduler.pop_due` returns to
its poll workers, fetches, and reports each answer back (:meth:`~PollScheduler.answered`,
:meth:`~PollScheduler.failed`, :meth:`~PollScheduler.finished`, ...). Every method takes
``now`` (seconds on the waiter's one clock); nothing here reads a clock, sleeps or sends,
so the whole schedule is tested with plain numbers and no event loop.

What it owns:

* **The heap of due polls**, ``(due, tie-breaker, seq, job)``: re-planning a job pushes
  a new entry and bumps the job's ``seq``, which makes its older entries stale (skipped
  when popped), so nothing is ever searched or removed from the middle.
* **The next delay of each job**, by the pure rules of :mod:`ttapi_async._polling`:
  :func:`~ttapi_async._polling.next_poll_delay` once something is learned, the backstop
  for a job whose callback is expected, :func:`~ttapi_async._polling.poll_error_delay`
  after a failed poll, :func:`~ttapi_async._polling.reconfirm_delay` while a callback is
  being confirmed.
* **The cold start**: until the first job is seen done, only ``policy.probes`` jobs poll
  densely; the others check every ``2 * max_interval``.
* **Learning**: a job a poll saw succeed records its duration in the
  :class:`~ttapi_async._polling.DurationModel`; the first one re-plans every job
  (:meth:`PollScheduler.replan`), since the cold-start plan no longer holds.
"""

from __future__ import annotations

import heapq
import itertools
import math
import random
from typing import TYPE_CHECKING, Final, Generic, TypeVar

from ._polling import (
    DurationModel,
    PollPolicy,
    dense_gap,
    jittered,
    next_poll_delay,
    poll_error_delay,
    reconfirm_delay,
)


if TYPE_CHECKING:
    from ._models import JobSnapshot


__all__ = ["PollScheduler", "PollState"]


class PollState:
    """What the schedule knows of one tracked job (the waiter's record extends it).

    Slots, not a dict: 10,000 pending jobs should cost as little memory as possible.
    """

    __slots__ = (
        "callback",
        "callback_at",
        "confirms",
        "degraded",
        "errors",
        "hooked",
        "in_zone",
        "job_id",
        "last_error",
        "last_gap",
        "last_poll",
        "polling",
        "repoll",
        "route",
        "seq",
        "started",
    )

    def __init__(self, job_id: str, started: float, *, hooked: bool) -> None:
        self.job_id = job_id
        self.started = started  # when the job was submitted (or first seen), on the clock
        self.hooked = hooked  # a callback is expected: poll only as a backstop
        self.route = "4o-image"  # the job route it is fetched from (see _protocol.ROUTE_*)
        # The callback may never reach this process (the shared broker was down while the
        # job was pending): the backstop is no slower than max_interval, for good.
        self.degraded = False
        self.seq = 0  # heap entries with an older seq are stale
        self.last_poll: float | None = None
        self.last_gap: float | None = None
        self.errors = 0  # failed polls in a row
        self.last_error: BaseException | None = None  # the latest of them
        self.polling = False  # handed out by pop_due, not yet released
        self.repoll = False  # a poll fell due (say, a callback) while one was in flight
        self.in_zone = False  # polled past the learned early edge: stays dense from then on
        # The callback being confirmed (None: none, or its re-confirm window is over), when
        # it came, and how many confirming fetches have answered since.
        self.callback: JobSnapshot | None = None
        self.callback_at = 0.0
        self.confirms = 0


J = TypeVar("J", bound=PollState)


class PollScheduler(Generic[J]):
    """The poll schedule of every tracked job: a heap, the delay rules, the learning.

    Args:
        policy: the :class:`~ttapi_async._polling.PollPolicy`.
        rng: the random source of the jitter (tests pass a seeded one).

    A job is handed out by :meth:`pop_due` at most once at a time (``polling``) and must
    be handed back with :meth:`released` once its poll is over, whatever the outcome.
    """

    def __init__(self, policy: PollPolicy, rng: random.Random | None = None) -> None:
        self.policy: Final = policy
        #: Durations of the jobs seen done by a poll, for the learned schedule.
        self.durations: Final = DurationModel(policy.window)
        #: The tracked jobs by id (an ended or forgotten job is not here).
        self.jobs: dict[str, J] = {}
        self._rng = rng or random.Random()  # noqa: S311 - jitter
        # (due, tie-breaker, seq, job): the tie-breaker keeps two jobs due at the same
        # instant from ever being compared themselves.
        self._heap: list[tuple[float, int, int, J]] = []
        self._counter = itertools.count()
        self._since: float | None = None  # when the first job was planned by the rules
        self._probes: set[str] = set()  # cold-start probe jobs (see PollPolicy.probes)

    # ------------------------------------------------------------------ jobs

    def track(self, job: J, now: float, *, age_known: bool = True) -> None:
        """Add ``job`` and plan its first poll.

        A job whose age is unknown (``age_known=False``: another process submitted it, or
        this one before a restart) and that expects no callback is polled at once.
        """
        self.jobs[job.job_id] = job
        if not age_known and not job.hooked:
            self._push(job, now, 0.0)
        else:
            self._push(job, now, self._delay(job, now))

    def tracks(self, job: J) -> bool:
        """True while ``job`` (this very record) is tracked."""
        return self.jobs.get(job.job_id) is job

    def forget(self, job: J) -> None:
        """Stop tracking ``job``: no poll of it falls due any more."""
        if self.jobs.get(job.job_id) is job:
            del self.jobs[job.job_id]
        self._probes.discard(job.job_id)
        job.seq += 1  # invalidates its heap entry

    def soon(self, job: J, now: float, delay: float) -> None:
        """Poll ``job`` after ``delay`` seconds (unless a poll of it is in flight)."""
        if self.tracks(job) and not job.polling:
            self._push(job, now, delay)

    def degrade_all(self, now: float) -> None:
        """Every tracked job's callback may be lost (see :meth:`degrade`)."""
        for job in list(self.jobs.values()):
            self.degrade(job, now)

    def degrade(self, job: J, now: float) -> None:
        """``job``'s callback may be lost: from now on poll it at least every ``max_interval``.

        Its next poll is brought forward when it was planned later than that.
        """
        if job.degraded or not job.hooked:
            return
        job.degraded = True
        if not job.polling:
            self._push(job, now, jittered(self.policy.max_interval, self.policy, self._rng))

    # ------------------------------------------------------------------ the heap

    def next_due(self) -> float:
        """When the earliest planned poll falls due (``math.inf``: none is planned)."""
        return self._heap[0][0] if self._heap else math.inf

    def pop_due(self, now: float) -> list[J]:
        """The jobs to poll now, each marked ``polling`` until :meth:`released`.

        Polls due within ``policy.coalesce`` go out together, a little early: one wake-up
        (of the waiter and of the server) serves them all, and no poll is ever late.
        """
        heap = self._heap
        horizon = now + self.policy.coalesce
        due: list[J] = []
        while heap and heap[0][0] <= horizon:
            _, _, seq, job = heapq.heappop(heap)
            if seq != job.seq:
                continue  # a stale entry, or a job that ended
            if job.polling:
                # A poll is in flight; its reply may predate what made this one due (a
                # callback, say), so poll again as soon as it returns.
                job.repoll = True
                continue
            job.polling = True
            due.append(job)
        return due

    def replan(self, now: float) -> None:
        """Re-plan every job once the learned schedule becomes usable.

        Their next polls were planned with the cold-start backoff; the learned schedule
        usually wants some of them sooner (those already inside the likely-finish zone).
        """
        if not self.policy.adaptive:
            return
        early = self.durations.early_edge(self.policy.early_quantile)
        for job in self.jobs.values():
            if not job.hooked and not job.polling:
                # A job already past the early edge may have finished while it waited for
                # the probes: look now. The others sleep until their likely finish.
                past_edge = now - job.started >= early
                self._push(job, now, 0.0 if past_edge else self._delay(job, now))

    # ------------------------------------------------------------------ what polls said

    def answered(self, job: J, now: float) -> None:
        """A poll of ``job`` answered "not over yet" at ``now``: plan the next one."""
        job.errors = 0
        if job.last_poll is not None:
            job.last_gap = now - job.last_poll
        job.last_poll = now
        delay = self._reconfirm(job, None, now)  # a callback said it ended: look again soon
        self._push(job, now, self._delay(job, now) if delay is None else delay)

    def failed(self, job: J, error: BaseException, now: float) -> float:
        """A poll of ``job`` failed with ``error`` (a passing error): back off; the delay."""
        job.errors += 1
        delay = self._reconfirm(job, error, now)
        if delay is None:
            delay = poll_error_delay(
                job.errors, self.policy, error, hooked=job.hooked and not job.degraded
            )
        self._push(job, now, delay)
        return delay

    def crashed(self, job: J, now: float) -> None:
        """Polling ``job`` hit a bug of ours: look again after ``max_interval``."""
        if self.tracks(job):
            self._push(job, now, self.policy.max_interval)

    def released(self, job: J, now: float) -> None:
        """The poll of ``job`` is over; one that fell due meanwhile goes out at once."""
        job.polling = False
        if job.repoll:
            job.repoll = False
            if self.tracks(job):
                self._push(job, now, 0.0)

    def called_back(self, job: J, snapshot: JobSnapshot, now: float) -> None:
        """A callback for ``job`` came at ``now``: confirm it with a poll at once."""
        job.callback = snapshot
        job.callback_at = now
        job.confirms = 0
        self._push(job, now, 0.0)

    def finished(self, job: J, now: float, *, learn: bool) -> None:
        """``job`` ended at ``now``: forget it, and with ``learn`` record its duration.

        ``learn`` says a poll saw it succeed with no callback involved; a job that expects
        a callback is polled too rarely to say when it ended, and teaches nothing either.
        The job ended between its last "not yet" poll and ``now``: the midpoint is
        recorded. Seen done on its *first* poll (which the schedule puts one dense gap
        past the learned early edge), it is recorded at that edge: half its age would drag
        the edge, and every first poll, ever earlier. The edge itself is corrected for
        small samples in :meth:`DurationModel.early_edge`.
        """
        self.forget(job)
        if not learn or job.hooked:
            return
        durations = self.durations
        low = (
            job.last_poll
            if job.last_poll is not None
            else max(
                job.started,
                now - 2 * dense_gap(durations, self.policy, now - (self._since or now)),
            )
        )
        first = len(durations) == 0
        durations.add((low + now) / 2 - job.started)
        if first:
            self.replan(now)

    # ------------------------------------------------------------------ internals

    def _push(self, job: J, now: float, delay: float) -> None:
        job.seq += 1
        heapq.heappush(self._heap, (now + max(0.0, delay), next(self._counter), job.seq, job))

    def _delay(self, job: J, now: float) -> float:
        """Seconds until the next poll of ``job`` by the rules (no error, no callback)."""
        policy = self.policy
        if job.hooked:
            # The callback is expected to end the job; polls are a slow safety net (not
            # so slow once the callback may have been lost: see degrade).
            return policy.max_interval if job.degraded else policy.backstop_interval
        if self._since is None:
            self._since = job.started
        durations = self.durations
        if (
            not job.in_zone
            and len(durations)
            and now - job.started >= durations.early_edge(policy.early_quantile)
        ):
            job.in_zone = True
        if policy.adaptive and not len(durations):
            # Cold start: a few probes, polled densely, discover the early edge for all;
            # the other jobs wait for that (see replan), checking now and then.
            probes = self._probes
            if job.job_id not in probes:
                if len(probes) >= policy.probes:
                    return 2 * policy.max_interval
                probes.add(job.job_id)
            if job.last_gap is not None or job.last_poll is not None:
                return jittered(policy.dense_interval, policy, self._rng)
        return next_poll_delay(
            now - job.started,
            job.last_gap,
            durations,
            policy,
            self._rng,
            observed=now - self._since,
            in_zone=job.in_zone,
        )

    def _reconfirm(self, job: J, error: BaseException | None, now: float) -> float | None:
        """The delay of the next fetch confirming a callback; None: no callback to confirm.

        Called once per answered confirming fetch that did not end the job (``error`` is
        what it raised, None when it said "not yet"). Past the window the callback is
        dropped and the job goes back to its normal schedule.
        """
        if job.callback is None:
            return None
        job.confirms += 1
        delay = reconfirm_delay(job.confirms, now - job.callback_at, self.policy, error, self._rng)
        if delay is None:
            job.callback = None
        return delay
