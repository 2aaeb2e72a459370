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
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import math
import random
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Final

import anyio
import attrs
from aiolimiter import AsyncLimiter
from anyio.abc import TaskGroup

from ._errors import (
    ClientClosedError,
    JobFailedError,
    JobTimeoutError,
    QueueFullError,
    RateLimitError,
    TTAPIError,
    ValidationError,
)
from ._models import JobEvent, JobEventKind, JobResult, JobSnapshot, JobStatus, ResponseInfo
from ._polling import (
    DurationModel,
    PollPolicy,
    default_poll_policy,
    dense_gap,
    jittered,
    next_poll_delay,
    reconfirm_delay,
)
from ._protocol import build_fetch, parse_fetch
from ._retry import RetryPolicy
from ._rules import check_fetch, check_timeout
from ._transport import RawResponse
from ._types import NOT_GIVEN, Timeout


if TYPE_CHECKING:
    from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

    from ._client import Client
    from ._resources import Job


__all__ = ["JobWaiter", "WaiterStats"]

log = logging.getLogger("ttapi_async.waiter")

_NO_RETRY: Final = RetryPolicy(max_retries=0)
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


class _Pending:
    """What the waiter knows about one job it is tracking. Strictly private."""

    __slots__ = (
        "callback",
        "callback_at",
        "called_back",
        "confirms",
        "done",
        "errors",
        "hooked",
        "in_zone",
        "job_id",
        "last_error",
        "last_gap",
        "last_poll",
        "outcome",
        "polling",
        "repoll",
        "running",
        "seq",
        "started",
        "waiters",
    )

    def __init__(self, job_id: str, started: float, *, hooked: bool) -> None:
        self.job_id = job_id
        self.started = started  # loop time the job was submitted (or first seen)
        self.hooked = hooked  # a callback is expected: poll only as a backstop
        # Made by the first wait: a job tracked for its callback alone needs none, and
        # 10,000 pending jobs should cost as little memory as possible.
        self.done: anyio.Event | None = None
        self.outcome: JobResult | JobSnapshot | None = None  # result, or the FAILED snapshot
        self.waiters = 0
        self.seq = 0  # heap entries with an older seq are stale
        self.last_poll: float | None = None
        self.last_gap: float | None = None
        self.errors = 0
        self.last_error: BaseException | None = None
        self.polling = False
        self.repoll = False  # a poll fell due (say, a callback) while one was in flight
        self.running = False
        self.called_back = False  # a callback arrived (and a confirming poll may follow)
        # The callback being confirmed (None: none, or its re-confirm window is over), when
        # it came, and how many confirming fetches have answered since.
        self.callback: JobSnapshot | None = None
        self.callback_at = 0.0
        self.confirms = 0
        self.in_zone = False  # polled past the learned early edge: stays dense from then on


class JobWaiter:
    """Tracks pending 4o-image jobs and resolves each exactly once. ``client.waiter``.

    Use :meth:`wait` (or ``await job.wait()``); the client creates and runs the waiter, so
    it exists while the client is open (``async with Client() as client``).

    Args:
        policy: the :class:`PollPolicy` (data: delays, growth, caps, jitter, learning).
        max_concurrent_polls: fetches in flight at once, for all jobs together.
        polls_per_second: a budget for fetches (None: no budget). Submits never wait on it.
        result_ttl: seconds the outcome of a job that ended before anyone waited is kept
            for the wait to come (once a wait took it, 60 s more, for repeated waits).
        confirm_callbacks: confirm a callback's result with one fetch before trusting it
            (TTAPI does not sign callbacks).
        rng: the random source of the jitter (tests pass a seeded one).
        redact: hides secrets in a failed job's message (the client passes its own).
    """

    def __init__(
        self,
        client: Client,
        policy: PollPolicy | None = None,
        *,
        max_concurrent_polls: int = 32,
        polls_per_second: float | None = None,
        result_ttl: float = 600.0,
        confirm_callbacks: bool = True,
        rng: random.Random | None = None,
        redact: Callable[[str], str] | None = None,
    ) -> None:
        self._client = client
        self.policy: Final = policy or default_poll_policy()
        self.stats = WaiterStats()
        self.durations = DurationModel(self.policy.window)
        self.confirm_callbacks = confirm_callbacks
        if max_concurrent_polls < 1:
            raise ValidationError("max_concurrent_polls", max_concurrent_polls, "at least 1")
        self._max_polls = max_concurrent_polls
        if polls_per_second is not None and polls_per_second <= 0:
            raise ValidationError("polls_per_second", polls_per_second, "a positive rate")
        self._budget = (
            None if polls_per_second is None else AsyncLimiter(polls_per_second, time_period=1.0)
        )
        self._result_ttl = result_ttl
        # Hides the key and hook tokens in a failed job's message (TTAPI may quote them),
        # which JobFailedError, events, logs, bulk outcomes and the journal repeat.
        self._redact = redact
        self._rng = rng or random.Random()  # noqa: S311 - jitter
        self._pending: dict[str, _Pending] = {}
        # Outcomes of jobs that ended before anyone waited (kept result_ttl for the wait
        # to come), and outcomes a wait already took (kept briefly for repeated waits).
        self._unclaimed = _Expiring(result_ttl)
        self._taken = _Expiring(_TAKEN_TTL)
        # (due, tie-breaker, seq, job): the tie-breaker keeps two jobs due at the same instant
        # from ever being compared themselves.
        self._heap: list[tuple[float, int, int, _Pending]] = []
        self._counter = itertools.count()
        self._wake = anyio.Event()
        self._tg: TaskGroup | None = None
        self._closed = False
        self._listeners: list[Callable[[JobEvent], object]] = []
        self._since: float | None = None  # when the first job was tracked
        self._probes: set[str] = set()  # cold-start probe jobs (see PollPolicy.probes)
        self._on_end: Callable[[str], object] | None = None  # the receiver's token clean-up
        self._streams: list[MemoryObjectSendStream[JobEvent]] = []

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
        for pending in list(self._pending.values()):
            if pending.done is not None:
                pending.done.set()  # waiters see _closed and raise ClientClosedError
        for stream in self._streams:
            stream.close()

    # ------------------------------------------------------------------ public API

    def track(self, job_id: str, *, hooked: bool = False, started: float | None = None) -> None:
        """Start tracking a job (the client does this on submit; rarely needed by hand)."""
        self._entry(job_id, hooked=hooked, started=started)

    async def wait(self, job: str | Job, *, timeout: Timeout = NOT_GIVEN) -> JobResult:
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
        seconds = self._client.timeout if timeout is NOT_GIVEN else check_timeout(timeout)
        finished = self._finished(job_id)
        if finished is not None:
            return self._deliver(job_id, finished)
        pending = self._entry(job_id, hooked=False, started=started)
        pending.waiters += 1
        try:
            with anyio.fail_after(math.inf if seconds is None else seconds):
                if pending.done is None:
                    pending.done = anyio.Event()
                await pending.done.wait()
        except TimeoutError:
            if pending.outcome is not None:  # resolved in the deadline's own loop step
                return self._deliver(job_id, pending.outcome)
            self.stats.timeouts += 1
            self._emit(job_id, JobEventKind.TIMED_OUT, f"after {seconds} s")
            raise JobTimeoutError(job_id, seconds, pending.last_error) from None
        finally:
            pending.waiters -= 1
            if pending.waiters == 0 and pending.outcome is None and not pending.hooked:
                # Nobody waits any more: stop polling; a later wait starts again.
                self._forget(pending)
        if pending.outcome is None:  # woken by _close()
            raise ClientClosedError(f"the client closed while waiting for job {job_id}")
        return self._deliver(job_id, pending.outcome)

    def add_listener(self, listener: Callable[[JobEvent], object]) -> None:
        """Call ``listener(event)`` for every job event (keep it fast; it runs inline)."""
        self._listeners.append(listener)

    @asynccontextmanager
    async def events(self, buffer: int = 1024) -> AsyncIterator[AsyncIterator[JobEvent]]:
        """Yield an async iterator of job events while the block is open.

        Use it as ``async with client.waiter.events() as events: async for event in events``.

        A consumer that falls ``buffer`` events behind loses the newest ones (counted in
        ``stats.events_dropped``) rather than slowing the waiter.
        """
        send, receive = anyio.create_memory_object_stream[JobEvent](buffer)
        self._streams.append(send)
        try:
            async with receive:
                yield receive
        finally:
            self._streams.remove(send)
            send.close()

    @property
    def pending(self) -> int:
        """How many jobs are being tracked and not yet ended."""
        return len(self._pending)

    # ------------------------------------------------------------------ callbacks

    def accept_callback(self, snapshot: JobSnapshot) -> None:
        """Take a job's final state delivered by a hookUrl callback.

        With ``confirm_callbacks`` (the default) the callback only triggers an immediate
        poll, whose reply decides (re-confirmed soon while the fetch fails or lags);
        otherwise a terminal callback resolves the job at once.
        """
        pending = self._pending.get(snapshot.job_id)
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
        pending.callback = snapshot
        pending.callback_at = asyncio.get_running_loop().time()
        pending.confirms = 0
        self._schedule(pending, 0.0)

    # ------------------------------------------------------------------ internals

    def _finished(self, job_id: str) -> JobResult | JobSnapshot | None:
        """The remembered outcome of an ended job, if any; the first wait takes it."""
        now = time.monotonic()
        outcome = self._unclaimed.pop(job_id, now)
        if outcome is not None:
            self._taken.put(job_id, outcome, now)
            return outcome
        return self._taken.get(job_id, now)

    def _deliver(self, job_id: str, outcome: JobResult | JobSnapshot) -> JobResult:
        if isinstance(outcome, JobResult):
            return outcome
        # A fresh error per waiter: one exception object raised in several tasks would
        # collect all their tracebacks.
        raise JobFailedError(job_id, outcome.message, outcome)

    def _entry(self, job_id: str, *, hooked: bool, started: float | None) -> _Pending:
        pending = self._pending.get(job_id)
        if pending is not None:
            pending.hooked = pending.hooked or hooked
            return pending
        now = asyncio.get_running_loop().time()
        pending = _Pending(job_id, now if started is None else started, hooked=hooked)
        self._pending[job_id] = pending
        self._emit(job_id, JobEventKind.QUEUED)
        if started is None and not hooked:
            # A job we did not submit (another process, a restart): its age is unknown,
            # so look at it right away.
            self._schedule(pending, 0.0)
        else:
            self._schedule(pending, self._next_delay(pending, now))
        return pending

    def _forget(self, pending: _Pending) -> None:
        if self._pending.get(pending.job_id) is pending:
            del self._pending[pending.job_id]
        self._probes.discard(pending.job_id)
        pending.seq += 1  # invalidates its heap entry

    def _next_delay(self, pending: _Pending, now: float) -> float:
        if pending.hooked:
            # The callback is expected to end the job; polls are a slow safety net.
            return self.policy.backstop_interval
        if self._since is None:
            self._since = pending.started
        durations = self.durations
        if (
            not pending.in_zone
            and len(durations)
            and now - pending.started >= durations.early_edge(self.policy.early_quantile)
        ):
            pending.in_zone = True
        if self.policy.adaptive and not len(durations):
            # Cold start: a few probes, polled densely, discover the early edge for all;
            # the other jobs wait for that (see _replan), checking now and then.
            probes = self._probes
            if pending.job_id not in probes:
                if len(probes) >= self.policy.probes:
                    return 2 * self.policy.max_interval
                probes.add(pending.job_id)
            if pending.last_gap is not None or pending.last_poll is not None:
                return jittered(self.policy.dense_interval, self.policy, self._rng)
        return next_poll_delay(
            now - pending.started,
            pending.last_gap,
            self.durations,
            self.policy,
            self._rng,
            observed=now - self._since,
            in_zone=pending.in_zone,
        )

    def _schedule(self, pending: _Pending, delay: float) -> None:
        pending.seq += 1
        due = asyncio.get_running_loop().time() + max(0.0, delay)
        heapq.heappush(self._heap, (due, next(self._counter), pending.seq, pending))
        if self._heap[0][3] is pending:
            self._wake.set()  # the scheduler sleeps until the old head; wake it

    async def _schedule_forever(self, due: MemoryObjectSendStream[_Pending]) -> None:
        heap = self._heap
        coalesce = self.policy.coalesce
        while True:
            now = asyncio.get_running_loop().time()
            # Polls due within `coalesce` go out together, a little early: one wake-up of
            # this loop (and of the server) serves them all, and no poll is ever late.
            horizon = now + coalesce
            while heap and heap[0][0] <= horizon:
                _, _, seq, pending = heapq.heappop(heap)
                if seq != pending.seq or pending.outcome is not None:
                    continue  # a stale entry, or a job that ended
                if pending.polling:
                    # A poll is in flight; its reply may predate what made this one due (a
                    # callback, say), so poll again as soon as it returns.
                    pending.repoll = True
                    continue
                pending.polling = True
                due.send_nowait(pending)
            wait = heap[0][0] - now if heap else math.inf
            self._wake = anyio.Event()
            with anyio.move_on_after(wait):
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
            if pending.outcome is not None or self._pending.get(pending.job_id) is not pending:
                return
            await self._poll_once(pending)
        except Exception:  # a bug here must not take the scheduler (and the client) down
            log.exception("job %s: unexpected error while polling", pending.job_id)
            if self._pending.get(pending.job_id) is pending:
                self._schedule(pending, self.policy.max_interval)
        finally:
            pending.polling = False
            if pending.repoll:
                pending.repoll = False
                if pending.outcome is None and self._pending.get(pending.job_id) is pending:
                    self._schedule(pending, 0.0)

    async def _poll_once(self, pending: _Pending) -> None:
        client = self._client
        job_id = pending.job_id
        loop_now = asyncio.get_running_loop().time()
        self.stats.polls_sent += 1

        def parse(raw: RawResponse, info: ResponseInfo) -> JobSnapshot:
            return parse_fetch(raw.status, raw.headers, raw.body, job_id, info)

        try:
            snap = await client._call(  # noqa: SLF001
                build_fetch(job_id), parse, loop_now + _POLL_TIMEOUT, _NO_RETRY
            )
        except TTAPIError as exc:
            # Passing, whatever it is: a paid job is never failed because a poll went wrong.
            self.stats.poll_errors += 1
            if self._pending.get(job_id) is not pending:
                return  # forgotten while the poll was in flight (its wait ended)
            pending.errors += 1
            pending.last_error = exc
            delay = self._reconfirm(pending, exc)
            if delay is None:
                hint = exc.retry_after if isinstance(exc, RateLimitError | QueueFullError) else None
                delay = min(
                    self.policy.max_interval,
                    self.policy.dense_interval * 2 ** min(pending.errors, 6),
                )
                if pending.hooked:
                    delay = max(delay, self.policy.backstop_interval)
                delay = max(delay, hint or 0.0)
            log.info("job %s: poll error %s; next poll in %.1fs", job_id, type(exc).__name__, delay)
            self._schedule(pending, delay)
            return
        now = asyncio.get_running_loop().time()
        current = self._pending.get(job_id)
        if current is not pending:
            # The entry was forgotten while the poll was in flight (its wait ended) and
            # maybe replaced by a new wait's: hand a final answer to that one, drop the rest.
            if current is not None and snap.is_terminal:
                self._resolve(current, snap, source="poll", polled_at=now)
            return
        pending.errors = 0
        if snap.is_terminal:
            self._resolve(pending, snap, source="poll", polled_at=now)
            return
        if not pending.running and snap.status is JobStatus.ON_QUEUE:
            pending.running = True
            self._emit(job_id, JobEventKind.RUNNING)
        if pending.last_poll is not None:
            pending.last_gap = now - pending.last_poll
        pending.last_poll = now
        delay = self._reconfirm(pending, None)  # a callback said it ended: look again soon
        self._schedule(pending, self._next_delay(pending, now) if delay is None else delay)

    def _reconfirm(self, pending: _Pending, error: BaseException | None) -> float | None:
        """The delay of the next fetch confirming a callback; None: no callback to confirm.

        Called once per answered confirming fetch that did not end the job (``error`` is
        what it raised, None when it said "not yet"). Past the window the callback is
        dropped and the job goes back to its normal schedule.
        """
        if pending.callback is None:
            return None
        pending.confirms += 1
        since = asyncio.get_running_loop().time() - pending.callback_at
        delay = reconfirm_delay(pending.confirms, since, self.policy, error, self._rng)
        if delay is None:
            pending.callback = None
        return delay

    def _resolve(
        self, pending: _Pending, snap: JobSnapshot, *, source: str, polled_at: float | None = None
    ) -> None:
        if pending.outcome is not None:
            return
        now = asyncio.get_running_loop().time() if polled_at is None else polled_at
        if pending.called_back:
            source = "webhook"  # a callback ended the wait (confirmed by a poll or not)
        if snap.succeeded:
            outcome: JobResult | JobSnapshot = JobResult.from_snapshot(
                snap, elapsed=now - pending.started, source=source
            )
            self.stats.succeeded += 1
            self._emit(pending.job_id, JobEventKind.SUCCEEDED)
        else:
            if snap.message and self._redact is not None:
                message = self._redact(snap.message)
                if message != snap.message:
                    snap = attrs.evolve(snap, message=message)
            outcome = snap
            self.stats.failed += 1
            self._emit(pending.job_id, JobEventKind.FAILED, snap.message)
        pending.outcome = outcome
        if source == "poll" and not pending.hooked and snap.succeeded:
            # The job ended between the last "not yet" and this poll: record the midpoint.
            # Seen done on its *first* poll (which the schedule puts one dense gap past the
            # learned early edge), it is recorded at that edge: half its age would drag the
            # edge, and every first poll, ever earlier. The edge itself is corrected for
            # small samples in DurationModel.early_edge.
            low = (
                pending.last_poll
                if pending.last_poll is not None
                else max(
                    pending.started,
                    now - 2 * dense_gap(self.durations, self.policy, now - (self._since or now)),
                )
            )
            first = len(self.durations) == 0
            self.durations.add((low + now) / 2 - pending.started)
            if first:
                self._replan(now)
        self._forget(pending)
        # Nobody waits yet (a tracked job ended first): keep it for the wait to come.
        # Otherwise the waiters take it now; keep it briefly for repeated waits.
        store = self._unclaimed if pending.waiters == 0 else self._taken
        store.put(pending.job_id, outcome, time.monotonic())
        if self._on_end is not None:
            self._on_end(pending.job_id)
        if pending.done is not None:
            pending.done.set()
        log.debug("job %s: %s via %s", pending.job_id, snap.status.value, source)

    def _replan(self, now: float) -> None:
        """Re-schedule every pending job once the learned schedule becomes usable.

        Their next polls were planned with the cold-start backoff; the learned schedule
        usually wants some of them sooner (those already inside the likely-finish zone).
        """
        if not self.policy.adaptive:
            return
        early = self.durations.early_edge(self.policy.early_quantile)
        for pending in self._pending.values():
            if pending.outcome is None and not pending.hooked and not pending.polling:
                # A job already past the early edge may have finished while it waited for
                # the probes: look now. The others sleep until their likely finish.
                past_edge = now - pending.started >= early
                self._schedule(pending, 0.0 if past_edge else self._next_delay(pending, now))

    def _emit(self, job_id: str, kind: JobEventKind, detail: str | None = None) -> None:
        if not self._listeners and not self._streams:
            return
        event = JobEvent(job_id=job_id, kind=kind, at=time.time(), detail=detail)
        for listener in self._listeners:
            try:
                listener(event)
            except Exception:  # a listener's bug must not break the waiter
                log.exception("job event listener failed")
        for stream in self._streams:
            try:
                stream.send_nowait(event)
            except (anyio.WouldBlock, anyio.BrokenResourceError, anyio.ClosedResourceError):
                self.stats.events_dropped += 1
