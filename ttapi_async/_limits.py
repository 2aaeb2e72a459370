"""Rate and slot limits shared by a client's requests: who may send, and when.

Strictly private. Two controls live here, each separate from the HTTP concurrency cap
(an :class:`anyio.CapacityLimiter` where it is used):

* :class:`RequestBudget`: a requests-per-second budget for every API request of one
  client, submits and the waiter's polls alike, in which **polls never starve submits**.
  The token bucket is aiolimiter's; the only thing added is the priority: a poll takes a
  token only when no submit is waiting and the bucket has one spare, so a submit waits
  at most behind other submits.
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


__all__ = ["RequestBudget", "SlotController", "busy_backoff"]


class RequestBudget:
    """A requests-per-second budget shared by submits and polls; submits go first.

    Args:
        rate: requests per second, all kinds together.
        burst: requests that may go at once after a quiet spell (default: one second's
            worth, at least 1).
    """

    __slots__ = ("_limiter", "_poll_gap", "_submits_waiting", "rate")

    def __init__(self, rate: float, *, burst: float | None = None) -> None:
        if not rate > 0:
            raise ValidationError("requests_per_second", rate, "a positive rate")
        size = max(1.0, rate) if burst is None else burst
        if size < 1:
            raise ValidationError("burst", burst, "at least 1")
        self.rate: Final = rate
        # aiolimiter's leaky bucket: `size` tokens drip out over `size / rate` seconds.
        self._limiter = AsyncLimiter(size, time_period=size / rate)
        self._submits_waiting = 0
        # A blocked poll looks again after one token's worth of time: polls are never
        # urgent to the millisecond, and at most the waiter's poll cap of them wait.
        self._poll_gap = 1.0 / rate

    def __repr__(self) -> str:
        return f"RequestBudget(rate={self.rate})"

    async def acquire_submit(self) -> None:
        """Take a token for a submit (or any billable call), waiting behind submits only."""
        self._submits_waiting += 1
        try:
            await self._limiter.acquire()
        finally:
            self._submits_waiting -= 1

    async def acquire_poll(self) -> None:
        """Take a token for a poll once no submit wants one."""
        limiter = self._limiter
        # aiolimiter has no "a token is free" event to wait on, so look again each gap.
        while self._submits_waiting or not limiter.has_capacity():  # noqa: ASYNC110
            await anyio.sleep(self._poll_gap)
        await limiter.acquire()  # returns at once: capacity was just checked


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


def busy_backoff(
    attempt: int,
    retry_after: float | None,
    *,
    initial: float = 0.5,
    maximum: float = 30.0,
    rng: random.Random | None = None,
) -> float:
    """Seconds to wait before resubmitting after the ``attempt``-th 429/499 in a row.

    ``Retry-After`` wins when the server sent one (capped at ``maximum``); otherwise
    exponential from ``initial`` with full jitter over the upper half, so many items
    refused at once do not come back at once.
    """
    if retry_after is not None and retry_after >= 0:
        return min(maximum, retry_after)
    ceiling = min(maximum, initial * 2.0 ** max(0, attempt - 1))
    r: float = (rng or _RNG).random()
    return ceiling / 2 + r * ceiling / 2


_RNG: Final = random.Random()  # noqa: S311 - jitter, not security
