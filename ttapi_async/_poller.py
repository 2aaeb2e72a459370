"""Poller: the scheduler task and its poll workers, the I/O around a PollScheduler.

Strictly private; :class:`~ttapi_async.JobWaiter` owns one. *When* each job is polled is
the pure :class:`~ttapi_async._schedule.PollScheduler`; this module sleeps until the
earliest poll is due, hands due jobs to a fixed set of workers, fetches under the
concurrency limit and the polls-per-second budget, and books poll errors. What a reply
*means* (a job ended, or is still running) is the waiter's: each reply goes to
``on_reply``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Final, Generic, Protocol, TypeVar

import anyio
from aiolimiter import AsyncLimiter

from ._errors import TTAPIError
from ._schedule import PollScheduler, PollState


if TYPE_CHECKING:
    from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

    from ._models import JobSnapshot


__all__ = ["POLL_TIMEOUT", "Poller"]

log = logging.getLogger("ttapi_async.waiter")

#: Seconds one poll may take.
POLL_TIMEOUT: Final = 30.0

J = TypeVar("J", bound=PollState)


class _PollCounts(Protocol):
    polls_sent: int
    poll_errors: int


class Poller(Generic[J]):
    """Polls the jobs of ``sched`` when they fall due; runs inside the client.

    Args:
        sched: the schedule (shared with the waiter, which tracks and ends jobs in it).
        fetch: one fetch of a job (id, route) by a deadline (on ``now``'s clock), without
            retries.
        now: the clock.
        on_reply: what to do with a poll's reply: ``on_reply(job, snapshot, now)``.
        counts: where polls sent and poll errors are counted (the waiter's stats).
        max_polls: fetches in flight at once.
        polls_per_second: a budget for fetches (None: none).
        polled: told of each poll, ``polled(job_id, route, error or None)``, for
            telemetry (None: off, and a poll pays one check).
    """

    def __init__(
        self,
        sched: PollScheduler[J],
        fetch: Callable[[str, str, float], Awaitable[JobSnapshot]],
        now: Callable[[], float],
        on_reply: Callable[[J, JobSnapshot, float], None],
        counts: _PollCounts,
        *,
        max_polls: int,
        polls_per_second: float | None,
        polled: Callable[[str, str, BaseException | None], object] | None = None,
    ) -> None:
        self._sched = sched
        self._fetch = fetch
        self._now = now
        self._on_reply = on_reply
        self._counts = counts
        self._polled = polled
        self._max_polls = max_polls
        self._budget = (
            None if polls_per_second is None else AsyncLimiter(polls_per_second, time_period=1.0)
        )
        self._wake = anyio.Event()
        self._sleep_until = math.inf  # when the scheduler task wakes unless woken earlier
        self.running = False

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """The scheduler and its poll workers, until cancelled.

        ``max_polls`` workers take due jobs from a stream: a poll costs a hand-off, not a
        new task (spawning one per poll was a measurable share of the client's CPU in
        bulk runs).
        """
        due, todo = anyio.create_memory_object_stream[J](math.inf)
        async with anyio.create_task_group() as tg, due, todo:
            for _ in range(self._max_polls):
                tg.start_soon(self._poll_worker, todo)
            self.running = True
            task_status.started()
            try:
                await self._schedule_forever(due)
            finally:
                self.running = False

    def kick(self) -> None:
        """Wake the scheduler task when a poll now falls due before it meant to wake."""
        if self._sched.next_due() < self._sleep_until:
            self._wake.set()

    async def _schedule_forever(self, due: MemoryObjectSendStream[J]) -> None:
        sched = self._sched
        while True:
            now = self._now()
            for job in sched.pop_due(now):
                due.send_nowait(job)
            self._sleep_until = sched.next_due()
            self._wake = anyio.Event()
            with anyio.move_on_after(self._sleep_until - now):
                await self._wake.wait()

    async def _poll_worker(self, todo: MemoryObjectReceiveStream[J]) -> None:
        while True:
            try:  # no extra turn of the loop when a job is already waiting
                job = todo.receive_nowait()
            except anyio.WouldBlock:
                job = await todo.receive()
            await self._poll(job)

    async def _poll(self, job: J) -> None:
        try:
            if self._budget is not None:
                await self._budget.acquire()
            if self._sched.tracks(job):  # not ended nor forgotten while it was due
                await self._poll_once(job)
        except Exception:  # a bug here must not take the scheduler (and the client) down
            log.exception("job %s: unexpected error while polling", job.job_id)
            self._sched.crashed(job, self._now())
        finally:
            self._sched.released(job, self._now())
            self.kick()

    async def _poll_once(self, job: J) -> None:
        job_id = job.job_id
        self._counts.polls_sent += 1
        try:
            snap = await self._fetch(job_id, job.route, self._now() + POLL_TIMEOUT)
        except TTAPIError as exc:
            # Passing, whatever it is: a paid job is never failed because a poll went wrong.
            self._counts.poll_errors += 1
            if self._polled is not None:
                self._polled(job_id, job.route, exc)
            if not self._sched.tracks(job):
                return  # forgotten while the poll was in flight (its wait ended)
            job.last_error = exc
            delay = self._sched.failed(job, exc, self._now())
            log.info("job %s: poll error %s; next poll in %.1fs", job_id, type(exc).__name__, delay)
            return
        if self._polled is not None:
            self._polled(job_id, job.route, None)
        self._on_reply(job, snap, self._now())
