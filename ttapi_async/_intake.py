"""What reaches a waiter from outside its own polls: callbacks, and the fleet's news.

Strictly private; the waiter's ``intake`` (``client.waiter.intake``) is what the webhook
receiver and the Redis broker call. A :class:`CallbackIntake` takes:

* hookUrl callbacks for jobs this process tracks (:meth:`~CallbackIntake.accept_callback`),
  or for another worker's job whose callback landed here
  (:meth:`~CallbackIntake.adopt_callback`);
* outcomes another worker decided (:meth:`~CallbackIntake.accept_shared`), and word that
  another worker is confirming a callback (:meth:`~CallbackIntake.callback_seen`);
* the shared store's health (:meth:`~CallbackIntake.degrade`,
  :meth:`~CallbackIntake.recover`).

It touches the waiter's jobs only through what it is given: the scheduler (its tracked
jobs, and when to poll them), the poller's kick, the one resolver, the memory of outcomes,
a way to track a job it did not submit, and the counters.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

import anyio

from ._schedule import PollState


if TYPE_CHECKING:
    from ._models import JobResult, JobSnapshot
    from ._schedule import PollScheduler


__all__ = ["CallbackIntake", "Pending"]


class Pending(PollState):
    """What the waiter knows about one job it is tracking, past its schedule."""

    __slots__ = ("called_back", "done", "outcome", "own", "running", "waiters")

    def __init__(self, job_id: str, started: float, *, hooked: bool) -> None:
        super().__init__(job_id, started, hooked=hooked)
        # Made by the first wait: a job tracked for its callback alone needs none, and
        # 10,000 pending jobs should cost as little memory as possible.
        self.done: anyio.Event | None = None
        self.outcome: JobResult | JobSnapshot | None = None  # result, or the FAILED snapshot
        self.waiters = 0
        self.running = False
        self.called_back = False  # a callback arrived (and a confirming poll may follow)
        # Submitted here (or its callback landed here): followed to its end even with no
        # one waiting. A job only waited on (another worker's) is dropped with its waits.
        self.own = False


class Resolve(Protocol):
    """The waiter's one way to end a job (exactly once)."""

    def __call__(
        self, pending: Pending, snap: JobSnapshot, *, source: str, shared: bool = False
    ) -> None:
        """End ``pending`` with ``snap``, delivered by ``source``."""


class CallbackCounts(Protocol):
    """The counters the intake moves (the waiter's :class:`WaiterStats`)."""

    callbacks_accepted: int
    callbacks_duplicate: int


class CallbackIntake:
    """Callbacks and the fleet's news, for one waiter; see the module docstring.

    Args:
        sched: the waiter's scheduler: its tracked jobs, and when each is polled next.
        kick: wakes the poller after the schedule changed.
        resolve: ends a job, exactly once.
        heard: keeps an outcome another worker decided (for waits to come).
        adopt: tracks a job this process did not submit (expecting its callback, fetched
            from the route given) and returns its record.
        stats: the counters of accepted and duplicate callbacks.
        confirm: whether a callback is confirmed by a fetch before it is trusted (read
            per callback: the waiter's setting may change).
        now: the waiter's clock.
    """

    __slots__ = (
        "_adopt",
        "_confirm",
        "_heard",
        "_kick",
        "_now",
        "_resolve",
        "_sched",
        "degraded",
        "stats",
    )

    def __init__(
        self,
        *,
        sched: PollScheduler[Pending],
        kick: Callable[[], None],
        resolve: Resolve,
        heard: Callable[[JobSnapshot, str], None],
        adopt: Callable[[str, str], Pending],
        stats: CallbackCounts,
        confirm: Callable[[], bool],
        now: Callable[[], float],
    ) -> None:
        self._sched = sched
        self._kick = kick
        self._resolve = resolve
        self._heard = heard
        self._adopt = adopt
        self.stats = stats
        self._confirm = confirm
        self._now = now
        #: The shared store is unreachable: callbacks may not reach this process, so jobs
        #: expecting one are polled often (see :meth:`degrade`).
        self.degraded = False

    def accept_callback(self, snapshot: JobSnapshot) -> None:
        """Take a job's final state delivered by a hookUrl callback.

        With ``confirm_callbacks`` (the default) the callback only triggers an immediate
        poll, whose reply decides (re-confirmed soon while the fetch fails or lags);
        otherwise a terminal callback resolves the job at once.
        """
        pending = self._sched.jobs.get(snapshot.job_id)
        if pending is None or pending.outcome is not None:
            self.stats.callbacks_duplicate += 1
            return
        trusted = not self._confirm() and snapshot.is_terminal
        if not trusted and pending.callback == snapshot:
            # The same callback again while it is being confirmed: nothing new to act on.
            self.stats.callbacks_duplicate += 1
            return
        self.stats.callbacks_accepted += 1
        pending.called_back = True
        if trusted:
            self._resolve(pending, snapshot, source="webhook")
            return
        self._sched.called_back(pending, snapshot, self._now())
        self._kick()

    def adopt_callback(self, snapshot: JobSnapshot, route: str) -> None:
        """Take a callback for a job this process may not track (another worker's).

        The job is tracked as one that expects its callback (fetched from ``route``), then
        the callback is taken as by :meth:`accept_callback` (confirmed by one fetch, by
        default).
        """
        self._adopt(snapshot.job_id, route).own = True
        self.accept_callback(snapshot)

    def accept_shared(self, snapshot: JobSnapshot, source: str) -> None:
        """Take a final state another worker decided (it confirmed it; trusted here).

        Resolves the job when this process tracks it or is looking it up; otherwise
        nothing (every worker hears every outcome; most are not its own).
        """
        if not snapshot.is_terminal:
            return
        self._heard(snapshot, source)
        pending = self._sched.jobs.get(snapshot.job_id)
        if pending is not None and pending.outcome is None:
            self._resolve(pending, snapshot, source=source, shared=True)

    def callback_seen(self, job_id: str, grace: float) -> None:
        """Another worker accepted the job's callback and is confirming it.

        Its outcome is expected within ``grace`` seconds; if it does not come (that
        worker died while confirming), the job is polled here then, not at the backstop.
        """
        pending = self._sched.jobs.get(job_id)
        if pending is not None and pending.outcome is None and not pending.called_back:
            self._sched.soon(pending, self._now(), grace)
            self._kick()

    def degrade(self) -> None:
        """The shared store is unreachable: callbacks may not reach this process.

        Every job expecting a callback, now or tracked until :meth:`recover`, is polled
        at least every ``policy.max_interval`` from now on until it ends.
        """
        if not self.degraded:
            self.degraded = True
            self._sched.degrade_all(self._now())
            self._kick()

    def recover(self) -> None:
        """The shared store is back: new jobs rely on their callbacks again.

        Jobs degraded meanwhile stay polled often (a callback of theirs may be lost).
        """
        self.degraded = False
