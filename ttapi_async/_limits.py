"""Rate and slot limits shared by a client's requests: who may send, and when.

Strictly private. Two controls live here, each separate from the HTTP concurrency cap
(an :class:`anyio.CapacityLimiter` where it is used):

* :class:`RequestBudget`: a requests-per-second budget for every API request of one
  client, submits and the waiter's polls alike, in which **polls never starve submits**.
  The token bucket is aiolimiter's; what is added is the priority: while submits wait, a
  poll takes a token only after ``submit_streak`` tokens in a row went to submits. So
  submits get at least that share of a contended budget, and polls (which collect the
  results the submits paid for) still get the rest instead of stalling until every
  submit is through.
* :class:`SlotController`: the job-slot cap of a bulk run. TTAPI caps how many jobs an
  account may have queued or running and answers 499 when that queue is full, without
  saying the cap. The controller lowers the cap to what was running when the 499 came
  (never below ``minimum``) and creeps back up by one slot after every
  ``increase_every`` jobs that end well, so a cap that grows again (another process on
  the same key finished) is found again. The arithmetic is pure; the bulk runner applies
  the result to an :class:`anyio.CapacityLimiter`.
"""

from __future__ import annotations

import random
from typing import Final

import anyio
import attrs
from aiolimiter import AsyncLimiter

from ._errors import ValidationError
from ._retry import backoff


__all__ = ["RequestBudget", "SlotController", "acquire_fast", "busy_backoff"]


async def acquire_fast(lock: anyio.CapacityLimiter | anyio.Semaphore) -> None:
    """Acquire ``lock`` for the current task; at once, with no checkpoint, when one is free.

    anyio's ``acquire`` always yields to the event loop first (a checkpoint). Per poll and
    per bulk item that is an extra turn of the loop each time, which was a measurable share
    of the client's CPU; a free token is taken directly instead.
    """
    try:
        lock.acquire_nowait()
    except anyio.WouldBlock:
        await lock.acquire()


class RequestBudget:
    """A requests-per-second budget shared by submits and polls; submits go first.

    Args:
        rate: requests per second, all kinds together.
        burst: requests that may go at once after a quiet spell (default: one second's
            worth, at least 1).
        submit_streak: while submits wait, tokens in a row they get before a waiting poll
            may take one (default 3: submits get at least 3/4 of a contended budget).
    """

    __slots__ = (
        "_gift",
        "_gifts",
        "_limiter",
        "_poll_gap",
        "_polls_waiting",
        "_streak",
        "_submit_streak",
        "_submits_waiting",
        "rate",
    )

    def __init__(self, rate: float, *, burst: float | None = None, submit_streak: int = 3) -> None:
        if not rate > 0:
            raise ValidationError("requests_per_second", rate, "a positive rate")
        size = max(1.0, rate) if burst is None else burst
        if size < 1:
            raise ValidationError("burst", burst, "at least 1")
        if submit_streak < 1:
            raise ValidationError("submit_streak", submit_streak, "at least 1")
        self.rate: Final = rate
        # aiolimiter's leaky bucket: `size` tokens drip out over `size / rate` seconds.
        self._limiter = AsyncLimiter(size, time_period=size / rate)
        self._submit_streak = submit_streak
        self._submits_waiting = 0
        self._polls_waiting = 0
        self._streak = 0  # tokens in a row that went to submits
        # Tokens a submit took from the bucket and handed to a waiting poll. Polls cannot
        # queue in aiolimiter (its queue is first come, first served), so submits queue
        # there and pass every (streak + 1)-th token on.
        self._gifts = 0
        self._gift = anyio.Event()
        # A poll with no submit waiting looks for a free token again after this long.
        self._poll_gap = 1.0 / rate

    def __repr__(self) -> str:
        return f"RequestBudget(rate={self.rate})"

    async def acquire_submit(self) -> None:
        """Take a token for a submit (or any billable call); submits come first."""
        self._submits_waiting += 1
        try:
            while True:
                await self._limiter.acquire()
                if self._polls_waiting > self._gifts and self._streak >= self._submit_streak:
                    # Submits had their streak: this token goes to a waiting poll.
                    self._streak = 0
                    self._gifts += 1
                    self._gift.set()
                    self._gift = anyio.Event()
                    continue
                break
        finally:
            self._submits_waiting -= 1
        self._streak += 1

    async def acquire_poll(self) -> None:
        """Take a token for a poll: a free one when no submit waits, else a handed-on one."""
        self._polls_waiting += 1
        try:
            while True:
                if self._gifts:
                    self._gifts -= 1
                    return
                if not self._submits_waiting and self._limiter.has_capacity():
                    self._streak = 0
                    await self._limiter.acquire()  # at once: capacity was just checked
                    return
                # aiolimiter has no "a token is free" event, so look again after a gap.
                with anyio.move_on_after(self._poll_gap):
                    await self._gift.wait()
        finally:
            self._polls_waiting -= 1
            # A poll cancelled as its gift arrived leaves it unclaimed: drop the surplus
            # (that token is spent) rather than let a later poll exceed the rate with it.
            self._gifts = min(self._gifts, self._polls_waiting)


@attrs.define
class SlotController:
    """The job-slot cap of a bulk run: down on 499, creeping back up (pure arithmetic).

    Attributes:
        maximum: the cap the user asked for; never exceeded.
        minimum: the floor the cap never goes under.
        increase_every: jobs ending well between two one-slot increases.
        current: the cap now.
    """

    maximum: int
    minimum: int = 1
    increase_every: int = 4
    current: int = attrs.field(default=0)
    _good: int = attrs.field(default=0, init=False)

    def __attrs_post_init__(self) -> None:
        if self.maximum < 1:
            raise ValidationError("max_jobs", self.maximum, "at least 1")
        if not 1 <= self.minimum <= self.maximum:
            raise ValidationError("min_jobs", self.minimum, "between 1 and max_jobs")
        if self.current == 0:
            self.current = self.maximum

    def on_queue_full(self, running: int) -> int:
        """A submit got 499 while ``running`` of our jobs were running: the new cap."""
        # The server's queue held at most what we had running (plus anyone else's jobs on
        # the key); never raise the cap on a 499.
        self.current = max(self.minimum, min(self.current, running))
        self._good = 0
        return self.current

    def on_job_done(self) -> int:
        """A job ended well (accepted, ran, finished): the new cap."""
        if self.current < self.maximum:
            self._good += 1
            if self._good >= self.increase_every:
                self._good = 0
                self.current += 1
        return self.current


#: The first busy backoff when the caller gives none. Only
#: :func:`ttapi_async.testing.set_fast_waits` changes it (the emulator's 499 carries no
#: ``Retry-After``, and a test should not sleep half a second per refusal).
_busy_initial: float = 0.5


def busy_backoff(
    attempt: int,
    retry_after: float | None,
    *,
    initial: float | None = None,
    maximum: float = 30.0,
    rng: random.Random | None = None,
) -> float:
    """Seconds to wait before resubmitting after the ``attempt``-th 429/499 in a row.

    ``Retry-After`` wins when the server sent one (capped at ``maximum``); otherwise the
    shared :func:`~ttapi_async._retry.backoff` from ``initial`` (0.5 s by default) with
    full jitter over the upper half, so many items refused at once do not come back at once.
    """
    if retry_after is not None and retry_after >= 0:
        return min(maximum, retry_after)
    if initial is None:
        initial = _busy_initial
    return backoff(max(1, attempt), initial, maximum, jitter=0.5, rng=rng)
