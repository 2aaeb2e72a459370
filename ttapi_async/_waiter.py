"""JobWaiter: one scheduler that polls every pending 4o-image job, and resolves each once.

Strictly private; ``ttapi_async.JobWaiter`` is the public name and ``client.waiter`` the
instance. The theory of operation:

* **One scheduler, not a task per job.** Pending jobs sit in a heap ordered by the time of
  their next poll. One task sleeps until the earliest is due (or until a new job needs an
  earlier poll), then starts the due polls in its task group, each under the poll
  concurrency limiter and the polls-per-second budget. 10,000 pending jobs cost 10,000 small
  records and one sleeping task. Submits never go through these limiters, so polling can
  never starve them.
* **Exactly once.** A job's outcome (a :class:`JobResult`, or a :class:`JobFailedError`)
  is set once; every waiter of the job sees it, however many polls or callbacks arrive
  later (those are counted as duplicates). Outcomes are kept for ``result_ttl`` seconds, so
  a wait that starts after the end still gets them.
* **Only TTAPI fails a job.** A poll that returns 429, 499, 5xx, garbage or nothing is a
  passing poll error: counted, backed off, and the job keeps waiting until its deadline.
  Only a reply that carries the job with FAILED (or a callback confirmed by such a reply)
  fails it.
* **A wait is not the job.** A wait that times out or is cancelled ends with
  :class:`JobTimeoutError` (or the cancellation) but the job is not lost: wait on its id
  again. When no one waits for a job any more, its polls stop; a later wait resumes them.
* **A callback is confirmed, soon.** By default a callback only triggers a fetch, whose
  reply decides. A confirming fetch that fails or still says ON_QUEUE is repeated soon
  with backoff (``PollPolicy.confirm_retry``, for ``confirm_window`` seconds), then the
  job returns to its normal schedule. The same callback again while it is being
  confirmed is a duplicate.
* **Closing.** When the client closes, the scheduler and its polls are cancelled, and every
  wait still in progress ends with :class:`ClientClosedError`.

The parts: *when* to poll each job (the heap, the delay rules, the learning) is the pure
:class:`~ttapi_async._schedule.PollScheduler`; events are an
:class:`~ttapi_async._events.EventHub`; callbacks and other workers' news come in through
the :class:`~ttapi_async._intake.CallbackIntake` (``waiter.intake``); :class:`JobWaiter` is
the I/O around them (the scheduler task, the poll workers, the fetches, the waits, the
exactly-once resolution).
It reads **one clock**, the event loop's by default (``Job.submitted_at`` and fetch
deadlines are on it): for planning polls, a result's ``elapsed``, how long outcomes are
kept, and (by one offset to Unix time) the events' timestamps.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Final, Protocol

import anyio
import attrs

from ._errors import ClientClosedError, JobFailedError, JobTimeoutError, ValidationError
from ._events import EventHub
from ._intake import CallbackIntake, Pending
from ._memory import Remembered, SharedOutcomes, outcome_of
from ._models import JobEventKind, JobResult, JobSnapshot, JobStatus
from ._poller import Poller
from ._polling import PollPolicy, default_poll_policy
from ._protocol import ROUTE_4O, ROUTES
from ._rules import check_fetch, check_timeout
from ._schedule import PollScheduler
from ._types import NOT_GIVEN, Timeout


if TYPE_CHECKING:
    import random
    from collections.abc import AsyncIterator, Awaitable
    from contextlib import AbstractAsyncContextManager

    from ._models import JobEvent
    from ._telemetry import Recorder, WaitRecord


__all__ = ["FetchJob", "JobHandle", "JobWaiter", "SharedOutcomes", "WaiterStats"]

#: One fetch of a job (its id and route) by a deadline (event-loop time), with no retry
#: of its own: the waiter schedules the next poll itself. The client builds it.
FetchJob = Callable[[str, str, float], "Awaitable[JobSnapshot]"]


class JobHandle(Protocol):
    """What a wait reads of a job handle (``ttapi_async.Job``)."""

    @property
    def job_id(self) -> str:
        """The job's id."""

    @property
    def submitted_at(self) -> float | None:
        """Event-loop time of the submit (None: unknown)."""

    @property
    def route(self) -> str:
        """The job route that made it (``"4o-image"``, ``"gpt"``)."""


log = logging.getLogger("ttapi_async.waiter")


@attrs.define
class WaiterStats:
    """Counters of one waiter, for metrics and tests."""

    polls_sent: int = 0
    poll_errors: int = 0
    callbacks_accepted: int = 0
    callbacks_refused: int = 0
    callbacks_duplicate: int = 0
    succeeded: int = 0
    failed: int = 0
    timeouts: int = 0
    events_dropped: int = 0

    def snapshot(self) -> dict[str, int]:
        """The counters as a plain dict."""
        return attrs.asdict(self)


def _loop_time() -> float:
    """The running event loop's clock: the waiter's unless it is given another."""
    return asyncio.get_running_loop().time()


def _deliver(job_id: str, outcome: JobResult | JobSnapshot) -> JobResult:
    """Hand a wait its job's outcome: the result, or a fresh :class:`JobFailedError`.

    Fresh per wait: one exception object raised in several tasks would collect all their
    tracebacks.
    """
    if isinstance(outcome, JobResult):
        return outcome
    raise JobFailedError(job_id, outcome.message, outcome)


class JobWaiter:
    """Tracks pending 4o-image jobs and resolves each exactly once. ``client.waiter``.

    Use :meth:`wait` (or ``await job.wait()``); the client creates and runs the waiter, so
    it exists while the client is open (``async with Client() as client``).

    Args:
        fetch: one fetch of a job by a deadline, without retries (see :data:`FetchJob`).
        policy: the :class:`PollPolicy` (data: delays, growth, caps, jitter, learning).
        timeout: the default bound of a wait, in seconds (None: no limit).
        max_concurrent_polls: fetches in flight at once, for all jobs together.
        polls_per_second: a budget for fetches (None: no budget). Submits never wait on it.
        result_ttl: seconds the outcome of a job that ended before anyone waited is kept
            for the wait to come (once a wait took it, 60 s more, for repeated waits).
        confirm_callbacks: confirm a callback's result with one fetch before trusting it
            (TTAPI does not sign callbacks).
        rng: the random source of the jitter (tests pass a seeded one).
        redact: hides secrets in a failed job's message (the client passes its own).
        clock: the one clock (seconds) of every time the waiter plans or measures
            (default: the event loop's). It must keep the loop's pace and scale: the
            submit times of ``Job`` handles, ``track(started=)`` and fetch deadlines are
            loop time, and the scheduler sleeps on the loop.
        shared: where other workers' outcomes come from and this one's go (a
            :class:`~ttapi_async.RedisBroker`, which the client passes); None: this
            process alone.
        telemetry: records a span per wait, and counts polls and outcomes (None: off).
    """

    def __init__(
        self,
        fetch: FetchJob,
        policy: PollPolicy | None = None,
        *,
        timeout: float | None = None,
        max_concurrent_polls: int = 32,
        polls_per_second: float | None = None,
        result_ttl: float = 600.0,
        confirm_callbacks: bool = True,
        rng: random.Random | None = None,
        redact: Callable[[str], str] | None = None,
        clock: Callable[[], float] | None = None,
        shared: SharedOutcomes | None = None,
        telemetry: Recorder | None = None,
    ) -> None:
        self._fetch = fetch
        self._telemetry = telemetry
        self._shared = shared
        self._timeout = timeout
        self.policy: Final = policy or default_poll_policy()
        self.stats = WaiterStats()
        self.confirm_callbacks = confirm_callbacks
        if max_concurrent_polls < 1:
            raise ValidationError("max_concurrent_polls", max_concurrent_polls, "at least 1")
        if polls_per_second is not None and polls_per_second <= 0:
            raise ValidationError("polls_per_second", polls_per_second, "a positive rate")
        # Hides the key and hook tokens in a failed job's message (TTAPI may quote them),
        # which JobFailedError, events, logs, bulk outcomes and the journal repeat.
        self._redact = redact
        self._now: Final = clock or _loop_time
        self._sched: Final = PollScheduler[Pending](self.policy, rng)
        #: What the schedule learned of job durations (see :class:`DurationModel`).
        self.durations: Final = self._sched.durations
        self._events: Final = EventHub(self._now)
        if telemetry is not None:  # outcomes are counted off the events
            self._events.add_listener(telemetry.job_event)
        self._memory: Final = Remembered(result_ttl, shared, redact, self._now)
        self._poller: Final = Poller(
            self._sched,
            fetch,
            self._now,
            self._answered,
            self.stats,
            max_polls=max_concurrent_polls,
            polls_per_second=polls_per_second,
            polled=None if telemetry is None else telemetry.polled,
        )
        #: Callbacks and the fleet's news: what the webhook receiver and the broker call.
        self.intake: Final = CallbackIntake(
            sched=self._sched,
            kick=self._poller.kick,
            resolve=self._resolve,
            heard=self._memory.heard,
            adopt=self._adopt,
            stats=self.stats,
            confirm=lambda: self.confirm_callbacks,
            now=self._now,
        )
        self._closed = False
        self._on_end: Callable[[str], object] | None = None  # the receiver's token clean-up

    # ------------------------------------------------------------------ lifecycle

    async def _run(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """The poller (scheduler task and poll workers); runs until the client closes."""
        try:
            await self._poller.run(task_status=task_status)
        finally:
            # However the poller ends, nobody may be left waiting for polls.
            self._close()

    def _close(self) -> None:
        """End every wait in progress; called by the client as it closes."""
        self._closed = True
        for pending in list(self._sched.jobs.values()):
            if pending.done is not None:
                pending.done.set()  # waiters see _closed and raise ClientClosedError
        self._events.close()

    # ------------------------------------------------------------------ public API

    def track(
        self,
        job_id: str,
        *,
        hooked: bool = False,
        started: float | None = None,
        route: str = ROUTE_4O,
    ) -> None:
        """Start tracking a job (the client does this on submit; rarely needed by hand)."""
        self._entry(job_id, hooked=hooked, started=started, route=route).own = True

    def remember_route(self, job_id: str, route: str) -> None:
        """Remember that ``job_id`` was submitted on ``route`` (for waits on a bare id)."""
        self._memory.remember_route(job_id, route)

    async def wait(
        self, job: str | JobHandle, *, timeout: Timeout = NOT_GIVEN, route: str | None = None
    ) -> JobResult:
        """Wait until the job ends and return its :class:`JobResult`.

        ``job`` is a job id or a :class:`Job` handle (whose submit time lets the first poll
        wait for the likely finish, and whose route says where to fetch it). For a bare
        id, ``route`` says the route (``"4o-image"`` or ``"gpt"``); without it, the route
        this client (or, with a broker, the fleet) saw the job submitted on, else the 4o
        route. ``timeout`` bounds this wait (default: the client's timeout; None: no
        limit). Several waits on one job share its polls and outcome.

        Raises:
            JobFailedError: TTAPI reported the job FAILED (``reason`` says why).
            JobTimeoutError: the deadline passed first; the job may still finish.
            ClientClosedError: the client closed during the wait.
        """
        job_id = job if isinstance(job, str) else job.job_id
        check_fetch(job_id)
        if route is not None and route not in ROUTES:
            raise ValidationError("route", route, f"a job route: {', '.join(sorted(ROUTES))}")
        if self._closed:
            raise ClientClosedError("the client is closed")
        if not self._poller.running:
            raise ClientClosedError(
                "waiting for jobs needs the client's scheduler: use `async with Client() as client`"
            )
        seconds = self._timeout if timeout is NOT_GIVEN else check_timeout(timeout)
        if self._telemetry is None:
            return await self._wait(job, job_id, seconds, route, None)
        known = route if isinstance(job, str) else job.route
        with self._telemetry.wait(job_id, known) as record:
            result = await self._wait(job, job_id, seconds, route, record)
            record.result = result
            return result

    async def _wait(
        self,
        job: str | JobHandle,
        job_id: str,
        seconds: float | None,
        route: str | None,
        record: WaitRecord | None,
    ) -> JobResult:
        """The body of :meth:`wait`, once its arguments are checked."""
        got = self._memory.take(job_id) or await self._pending_for(job, route)
        if not isinstance(got, Pending):
            return _deliver(job_id, got)
        pending = got
        if record is not None:
            record.job = pending
        pending.waiters += 1
        try:
            with anyio.fail_after(math.inf if seconds is None else seconds):
                if pending.done is None:
                    pending.done = anyio.Event()
                await pending.done.wait()
        except TimeoutError:
            if pending.outcome is not None:  # resolved in the deadline's own loop step
                return _deliver(job_id, pending.outcome)
            self.stats.timeouts += 1
            self._emit(job_id, JobEventKind.TIMED_OUT, f"after {seconds} s")
            raise JobTimeoutError(job_id, seconds, pending.last_error) from None
        finally:
            pending.waiters -= 1
            if (
                pending.waiters == 0
                and pending.outcome is None
                and not (pending.hooked and pending.own)
            ):
                # Nobody waits any more: stop polling; a later wait starts again.
                self._sched.forget(pending)
        if pending.outcome is None:  # woken by _close()
            raise ClientClosedError(f"the client closed while waiting for job {job_id}")
        return _deliver(job_id, pending.outcome)

    async def _pending_for(
        self, job: str | JobHandle, route: str | None
    ) -> Pending | JobResult | JobSnapshot:
        """The record a wait on ``job`` waits on; or, another worker's, its stored outcome.

        With a shared store, another worker's job is looked up there: its outcome, or its
        record (submit time, callback expected, route) to plan the polls by.
        """
        given = route if isinstance(job, str) else job.route  # said by the caller
        if isinstance(job, str):
            job_id, started = job, None
            route = route or self._memory.route_of(job_id)
        else:
            job_id, started, route = job.job_id, job.submitted_at, job.route
        if given is not None and (known := self._sched.jobs.get(job_id)) is not None:
            known.route = given  # a bare-id wait may have guessed the route before
        hooked = False
        if self._shared is not None and started is None and job_id not in self._sched.jobs:
            found, record = await self._memory.look_up(job_id)
            if found is not None:
                return found
            if record is not None:
                hooked = record.hooked
                started = self._now() - max(0.0, time.time() - record.submitted_at)
                route = route or record.route
        return self._entry(job_id, hooked=hooked, started=started, route=route or ROUTE_4O)

    def add_listener(self, listener: Callable[[JobEvent], object]) -> None:
        """Call ``listener(event)`` for every job event (keep it fast; it runs inline)."""
        self._events.add_listener(listener)

    def events(self, buffer: int = 1024) -> AbstractAsyncContextManager[AsyncIterator[JobEvent]]:
        """Yield an async iterator of job events while the block is open.

        Use it as ``async with client.waiter.events() as events: async for event in events``.

        A consumer that falls ``buffer`` events behind loses the newest ones (counted in
        ``stats.events_dropped``) rather than slowing the waiter.
        """
        return self._events.stream(buffer)

    @property
    def running(self) -> bool:
        """True while the scheduler runs (inside ``async with client``) and not closed."""
        return self._poller.running and not self._closed

    @property
    def pending(self) -> int:
        """How many jobs are being tracked and not yet ended."""
        return len(self._sched.jobs)

    def pending_ids(self) -> list[str]:
        """The ids of the jobs being tracked and not yet ended."""
        return list(self._sched.jobs)

    # ------------------------------------------------------------------ internals

    def _entry(
        self, job_id: str, *, hooked: bool, started: float | None, route: str = ROUTE_4O
    ) -> Pending:
        pending = self._sched.jobs.get(job_id)
        if pending is not None:
            pending.hooked = pending.hooked or hooked
            return pending
        now = self._now()
        pending = Pending(job_id, now if started is None else started, hooked=hooked)
        pending.route = route
        pending.degraded = hooked and self.intake.degraded
        # Without a submit time the job is not ours (another process, a restart): its age
        # is unknown, so the schedule looks at it right away.
        self._sched.track(pending, now, age_known=started is not None)
        self._emit(job_id, JobEventKind.QUEUED)
        self._poller.kick()
        return pending

    def _adopt(self, job_id: str, route: str) -> Pending:
        """Track another worker's job, whose callback landed here (see the intake)."""
        return self._entry(job_id, hooked=True, started=None, route=route)

    def _answered(self, pending: Pending, snap: JobSnapshot, now: float) -> None:
        """What a poll's reply means: the job ended, or it is still running."""
        current = self._sched.jobs.get(pending.job_id)
        if current is not pending:
            # The entry was forgotten while the poll was in flight (its wait ended) and
            # maybe replaced by a new wait's: hand a final answer to that one, drop the rest.
            if current is not None and snap.is_terminal:
                self._resolve(current, snap, source="poll", polled_at=now)
            return
        if snap.is_terminal:
            self._resolve(pending, snap, source="poll", polled_at=now)
            return
        if not pending.running and snap.status is JobStatus.ON_QUEUE:
            pending.running = True
            self._emit(pending.job_id, JobEventKind.RUNNING)
        self._sched.answered(pending, now)

    def _resolve(
        self,
        pending: Pending,
        snap: JobSnapshot,
        *,
        source: str,
        polled_at: float | None = None,
        shared: bool = False,
    ) -> None:
        if pending.outcome is not None:
            return
        now = self._now() if polled_at is None else polled_at
        # Only a poll that saw the job done by itself says when it ended (see finished).
        learn = source == "poll" and not pending.called_back and snap.succeeded
        if pending.called_back and not shared:
            source = "webhook"  # a callback ended the wait (confirmed by a poll or not)
        outcome = outcome_of(snap, now - pending.started, source, self._redact)
        if isinstance(outcome, JobResult):
            self.stats.succeeded += 1
            self._emit(pending.job_id, JobEventKind.SUCCEEDED)
        else:
            self.stats.failed += 1
            self._emit(pending.job_id, JobEventKind.FAILED, outcome.message)
        pending.outcome = outcome
        self._sched.finished(pending, now, learn=learn)
        self._poller.kick()  # the first duration learned re-plans every job
        # Nobody waits yet (a tracked job ended first): keep it for the wait to come.
        # Otherwise the waiters take it now; keep it briefly for repeated waits.
        self._memory.keep(pending.job_id, outcome, now, taken=pending.waiters > 0)
        if self._on_end is not None:
            self._on_end(pending.job_id)
        if self._shared is not None and not shared:
            self._shared.publish(snap, source)  # the other workers' waits end too
        if pending.done is not None:
            pending.done.set()
        log.debug("job %s: %s via %s", pending.job_id, snap.status.value, source)

    def _emit(self, job_id: str, kind: JobEventKind, detail: str | None = None) -> None:
        self.stats.events_dropped += self._events.emit(job_id, kind, detail)
