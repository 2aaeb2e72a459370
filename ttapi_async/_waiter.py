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
:class:`~ttapi_async._events.EventHub`; :class:`JobWaiter` is the I/O around them (the
scheduler task, the poll workers, the fetches, the waits, the exactly-once resolution).
It reads **one clock**, the event loop's by default (``Job.submitted_at`` and fetch
deadlines are on it): for planning polls, a result's ``elapsed``, how long outcomes are
kept, and (by one offset to Unix time) the events' timestamps.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections import OrderedDict
from collections.abc import Callable
from typing import TYPE_CHECKING, Final, Protocol

import anyio
import attrs
from aiolimiter import AsyncLimiter
from anyio.abc import TaskGroup

from ._errors import ClientClosedError, JobFailedError, JobTimeoutError, TTAPIError, ValidationError
from ._events import EventHub
from ._models import JobEventKind, JobResult, JobSnapshot, JobStatus
from ._polling import PollPolicy, default_poll_policy
from ._rules import check_fetch, check_timeout
from ._schedule import PollScheduler, PollState
from ._types import NOT_GIVEN, Timeout


if TYPE_CHECKING:
    import random
    from collections.abc import AsyncIterator, Awaitable
    from contextlib import AbstractAsyncContextManager

    from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

    from ._models import JobEvent


__all__ = ["FetchJob", "JobHandle", "JobWaiter", "WaiterStats"]

#: One fetch of a job by a deadline (event-loop time), with no retry of its own: the
#: waiter schedules the next poll itself. The client builds it from its sender.
FetchJob = Callable[[str, float], "Awaitable[JobSnapshot]"]


class JobHandle(Protocol):
    """What a wait reads of a job handle (``ttapi_async.Job``)."""

    @property
    def job_id(self) -> str:
        """The job's id."""

    @property
    def submitted_at(self) -> float | None:
        """Event-loop time of the submit (None: unknown)."""


log = logging.getLogger("ttapi_async.waiter")

_POLL_TIMEOUT: Final = 30.0
_MAX_REMEMBERED: Final = 100_000  # outcomes kept for late waiters, at most
#: Seconds an outcome stays for later waits once a wait has taken it. Short, so a long
#: run does not hold every result it handed out; a wait after that polls once more.
_TAKEN_TTL: Final = 60.0


class _Expiring:
    """Outcomes by job id, each kept ``ttl`` seconds: a dict in expiry order.

    Every entry lives the same ``ttl``, so insertion order is expiry order and the
    expired ones are dropped from the front. ``now`` is passed in (pure, testable).
    """

    __slots__ = ("_items", "_ttl")

    def __init__(self, ttl: float) -> None:
        self._ttl = ttl
        self._items: OrderedDict[str, tuple[float, JobResult | JobSnapshot]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._items)

    def put(self, job_id: str, outcome: JobResult | JobSnapshot, now: float) -> None:
        items = self._items
        items[job_id] = (now + self._ttl, outcome)
        items.move_to_end(job_id)
        while items and (len(items) > _MAX_REMEMBERED or next(iter(items.values()))[0] <= now):
            items.popitem(last=False)

    def get(self, job_id: str, now: float) -> JobResult | JobSnapshot | None:
        entry = self._items.get(job_id)
        return None if entry is None or entry[0] <= now else entry[1]

    def pop(self, job_id: str, now: float) -> JobResult | JobSnapshot | None:
        entry = self._items.pop(job_id, None)
        return None if entry is None or entry[0] <= now else entry[1]


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


class _Pending(PollState):
    """What the waiter knows about one job it is tracking, past its schedule. Private."""

    __slots__ = ("called_back", "done", "last_error", "outcome", "running", "waiters")

    def __init__(self, job_id: str, started: float, *, hooked: bool) -> None:
        super().__init__(job_id, started, hooked=hooked)
        # Made by the first wait: a job tracked for its callback alone needs none, and
        # 10,000 pending jobs should cost as little memory as possible.
        self.done: anyio.Event | None = None
        self.outcome: JobResult | JobSnapshot | None = None  # result, or the FAILED snapshot
        self.waiters = 0
        self.last_error: BaseException | None = None
        self.running = False
        self.called_back = False  # a callback arrived (and a confirming poll may follow)


def _loop_time() -> float:
    """The running event loop's clock: the waiter's unless it is given another."""
    return asyncio.get_running_loop().time()


def _outcome(
    snap: JobSnapshot, elapsed: float, source: str, redact: Callable[[str], str] | None
) -> JobResult | JobSnapshot:
    """What a wait on an ended job gets: its result, or its FAILED snapshot (redacted)."""
    if snap.succeeded:
        return JobResult.from_snapshot(snap, elapsed=elapsed, source=source)
    if snap.message and redact is not None:
        message = redact(snap.message)
        if message != snap.message:
            return attrs.evolve(snap, message=message)
    return snap


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
    ) -> None:
        self._fetch = fetch
        self._timeout = timeout
        self.policy: Final = policy or default_poll_policy()
        self.stats = WaiterStats()
        self.confirm_callbacks = confirm_callbacks
        if max_concurrent_polls < 1:
            raise ValidationError("max_concurrent_polls", max_concurrent_polls, "at least 1")
        self._max_polls = max_concurrent_polls
        if polls_per_second is not None and polls_per_second <= 0:
            raise ValidationError("polls_per_second", polls_per_second, "a positive rate")
        self._budget = (
            None if polls_per_second is None else AsyncLimiter(polls_per_second, time_period=1.0)
        )
        # Hides the key and hook tokens in a failed job's message (TTAPI may quote them),
        # which JobFailedError, events, logs, bulk outcomes and the journal repeat.
        self._redact = redact
        self._now: Final = clock or _loop_time
        self._sched: Final = PollScheduler[_Pending](self.policy, rng)
        #: What the schedule learned of job durations (see :class:`DurationModel`).
        self.durations: Final = self._sched.durations
        self._events: Final = EventHub(self._now)
        # Outcomes of jobs that ended before anyone waited (kept result_ttl for the wait
        # to come), and outcomes a wait already took (kept briefly for repeated waits).
        self._unclaimed = _Expiring(result_ttl)
        self._taken = _Expiring(_TAKEN_TTL)
        self._wake = anyio.Event()
        self._sleep_until = math.inf  # when the scheduler task wakes unless woken earlier
        self._tg: TaskGroup | None = None
        self._closed = False
        self._on_end: Callable[[str], object] | None = None  # the receiver's token clean-up

    # ------------------------------------------------------------------ lifecycle

    async def _run(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """The scheduler and its poll workers; runs until the client closes.

        ``max_concurrent_polls`` workers take due jobs from a stream: a poll costs a
        hand-off, not a new task (spawning one per poll was a measurable share of the
        client's CPU in bulk runs).
        """
        due, todo = anyio.create_memory_object_stream[_Pending](math.inf)
        async with anyio.create_task_group() as tg, due, todo:
            for _ in range(self._max_polls):
                tg.start_soon(self._poll_worker, todo)
            self._tg = tg
            task_status.started()
            try:
                await self._schedule_forever(due)
            finally:
                self._tg = None
                # However the scheduler ends, nobody may be left waiting for polls.
                self._close()

    def _close(self) -> None:
        """End every wait in progress; called by the client as it closes."""
        self._closed = True
        for pending in list(self._sched.jobs.values()):
            if pending.done is not None:
                pending.done.set()  # waiters see _closed and raise ClientClosedError
        self._events.close()

    # ------------------------------------------------------------------ public API

    def track(self, job_id: str, *, hooked: bool = False, started: float | None = None) -> None:
        """Start tracking a job (the client does this on submit; rarely needed by hand)."""
        self._entry(job_id, hooked=hooked, started=started)

    async def wait(self, job: str | JobHandle, *, timeout: Timeout = NOT_GIVEN) -> JobResult:
        """Wait until the job ends and return its :class:`JobResult`.

        ``job`` is a job id or a :class:`Job` handle (whose submit time lets the first poll
        wait for the likely finish). ``timeout`` bounds this wait (default: the client's
        timeout; None: no limit). Several waits on one job share its polls and outcome.

        Raises:
            JobFailedError: TTAPI reported the job FAILED (``reason`` says why).
            JobTimeoutError: the deadline passed first; the job may still finish.
            ClientClosedError: the client closed during the wait.
        """
        job_id = job if isinstance(job, str) else job.job_id
        started = None if isinstance(job, str) else job.submitted_at
        check_fetch(job_id)
        if self._closed:
            raise ClientClosedError("the client is closed")
        if self._tg is None:
            raise ClientClosedError(
                "waiting for jobs needs the client's scheduler: use `async with Client() as client`"
            )
        seconds = self._timeout if timeout is NOT_GIVEN else check_timeout(timeout)
        finished = self._finished(job_id)
        if finished is not None:
            return _deliver(job_id, finished)
        pending = self._entry(job_id, hooked=False, started=started)
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
            if pending.waiters == 0 and pending.outcome is None and not pending.hooked:
                # Nobody waits any more: stop polling; a later wait starts again.
                self._sched.forget(pending)
        if pending.outcome is None:  # woken by _close()
            raise ClientClosedError(f"the client closed while waiting for job {job_id}")
        return _deliver(job_id, pending.outcome)

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
        return self._tg is not None and not self._closed

    @property
    def pending(self) -> int:
        """How many jobs are being tracked and not yet ended."""
        return len(self._sched.jobs)

    # ------------------------------------------------------------------ callbacks

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
        trusted = not self.confirm_callbacks and snapshot.is_terminal
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

    # ------------------------------------------------------------------ internals

    def _finished(self, job_id: str) -> JobResult | JobSnapshot | None:
        """The remembered outcome of an ended job, if any; the first wait takes it."""
        now = self._now()
        outcome = self._unclaimed.pop(job_id, now)
        if outcome is not None:
            self._taken.put(job_id, outcome, now)
            return outcome
        return self._taken.get(job_id, now)

    def _entry(self, job_id: str, *, hooked: bool, started: float | None) -> _Pending:
        pending = self._sched.jobs.get(job_id)
        if pending is not None:
            pending.hooked = pending.hooked or hooked
            return pending
        now = self._now()
        pending = _Pending(job_id, now if started is None else started, hooked=hooked)
        # Without a submit time the job is not ours (another process, a restart): its age
        # is unknown, so the schedule looks at it right away.
        self._sched.track(pending, now, age_known=started is not None)
        self._emit(job_id, JobEventKind.QUEUED)
        self._kick()
        return pending

    def _kick(self) -> None:
        """Wake the scheduler task when a poll now falls due before it meant to wake."""
        if self._sched.next_due() < self._sleep_until:
            self._wake.set()

    async def _schedule_forever(self, due: MemoryObjectSendStream[_Pending]) -> None:
        sched = self._sched
        while True:
            now = self._now()
            for pending in sched.pop_due(now):
                due.send_nowait(pending)
            self._sleep_until = sched.next_due()
            self._wake = anyio.Event()
            with anyio.move_on_after(self._sleep_until - now):
                await self._wake.wait()

    async def _poll_worker(self, todo: MemoryObjectReceiveStream[_Pending]) -> None:
        while True:
            try:  # no extra turn of the loop when a job is already waiting
                pending = todo.receive_nowait()
            except anyio.WouldBlock:
                pending = await todo.receive()
            await self._poll(pending)

    async def _poll(self, pending: _Pending) -> None:
        try:
            if self._budget is not None:
                await self._budget.acquire()
            if self._sched.tracks(pending):  # not ended nor forgotten while it was due
                await self._poll_once(pending)
        except Exception:  # a bug here must not take the scheduler (and the client) down
            log.exception("job %s: unexpected error while polling", pending.job_id)
            self._sched.crashed(pending, self._now())
        finally:
            self._sched.released(pending, self._now())
            self._kick()

    async def _poll_once(self, pending: _Pending) -> None:
        job_id = pending.job_id
        self.stats.polls_sent += 1
        try:
            snap = await self._fetch(job_id, self._now() + _POLL_TIMEOUT)
        except TTAPIError as exc:
            # Passing, whatever it is: a paid job is never failed because a poll went wrong.
            self.stats.poll_errors += 1
            if not self._sched.tracks(pending):
                return  # forgotten while the poll was in flight (its wait ended)
            pending.last_error = exc
            delay = self._sched.failed(pending, exc, self._now())
            log.info("job %s: poll error %s; next poll in %.1fs", job_id, type(exc).__name__, delay)
            return
        now = self._now()
        current = self._sched.jobs.get(job_id)
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
            self._emit(job_id, JobEventKind.RUNNING)
        self._sched.answered(pending, now)

    def _resolve(
        self, pending: _Pending, snap: JobSnapshot, *, source: str, polled_at: float | None = None
    ) -> None:
        if pending.outcome is not None:
            return
        now = self._now() if polled_at is None else polled_at
        # Only a poll that saw the job done by itself says when it ended (see finished).
        learn = source == "poll" and not pending.called_back and snap.succeeded
        if pending.called_back:
            source = "webhook"  # a callback ended the wait (confirmed by a poll or not)
        outcome = _outcome(snap, now - pending.started, source, self._redact)
        if isinstance(outcome, JobResult):
            self.stats.succeeded += 1
            self._emit(pending.job_id, JobEventKind.SUCCEEDED)
        else:
            self.stats.failed += 1
            self._emit(pending.job_id, JobEventKind.FAILED, outcome.message)
        pending.outcome = outcome
        self._sched.finished(pending, now, learn=learn)
        self._kick()  # the first duration learned re-plans every job
        # Nobody waits yet (a tracked job ended first): keep it for the wait to come.
        # Otherwise the waiters take it now; keep it briefly for repeated waits.
        store = self._unclaimed if pending.waiters == 0 else self._taken
        store.put(pending.job_id, outcome, now)
        if self._on_end is not None:
            self._on_end(pending.job_id)
        if pending.done is not None:
            pending.done.set()
        log.debug("job %s: %s via %s", pending.job_id, snap.status.value, source)

    def _emit(self, job_id: str, kind: JobEventKind, detail: str | None = None) -> None:
        self.stats.events_dropped += self._events.emit(job_id, kind, detail)
