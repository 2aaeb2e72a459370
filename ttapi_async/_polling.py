"""When to poll a pending job next: a pure schedule over ages, gaps and learned durations.

Strictly private. A 4o-image fetch carries no progress, so a poll only says "done" or "not
yet". What makes a schedule good is *where* the polls fall:

* No job finishes before the shortest duration seen so far, so polls before it are wasted.
  Once the waiter has learned how long jobs take, a job's first poll comes one
  ``dense_interval`` after the early edge of that distribution (its ``early_quantile``), not
  before.
* Where jobs do finish, polls come every *dense gap* (the detection delay is half that
  on average), with jitter so thousands of jobs do not poll in lock step. The gap is a
  share (``dense_fraction``) of the learned spread of durations, between
  ``min_dense_interval`` and ``dense_interval``: precision relative to what is uncertain.
  Jobs of 1-3 s are polled every 0.25 s (a second of delay would be half a job again,
  and in a bulk run every job holds a slot until it is seen done); jobs of 20-90 s every
  1 s. Either way about ``1 / dense_fraction`` polls cover the whole finishing zone.
* A job older than almost every job seen (``late_quantile``) is unusual: its polls back off
  geometrically from ``dense_interval`` up to ``max_interval``. Only once the waiter has
  watched jobs for twice that long, though: early on, the finished jobs are only the quick
  ones (the slow ones have not finished yet), so the late edge is underestimated.
* Before anything is learned, a few *probe* jobs (the oldest) poll every
  ``dense_interval`` after ``initial_delay``, and the rest wait: a thousand jobs submitted
  together need not all pay for discovering that none finishes in the first seconds. The
  first finished job switches every pending job to the learned schedule.

* A poll that fails (429, 499, 5xx, a drop, garbage) is a passing error: the job's next
  poll backs off from ``2 * dense_interval`` (:func:`poll_error_delay`), honouring the
  server's ``Retry-After``, and the job keeps waiting.
* After a callback, its confirming fetch may fail (429, 5xx, a drop) or lag behind TTAPI's
  own callback (ON_QUEUE while the callback said SUCCESS). Such a job is fetched again
  soon, on ``confirm_retry``'s backoff, for up to ``confirm_window`` seconds
  (:func:`reconfirm_delay`), never left to the slow backstop.

The saving against fixed-interval polling is the dead time before the early edge: for
jobs of 20-90 s, fixed 1 s polling sends about 55 fetches per job, this about 36, with the
same mean and p95 detection delay; for jobs of 1-3 s, fixed 0.25 s polling sends about 8,
this about 5.
"""

from __future__ import annotations

import bisect
import math
import random
from collections import deque
from typing import Final

import attrs

from ._errors import QueueFullError, RateLimitError
from ._retry import RetryPolicy, backoff


__all__ = [
    "DurationModel",
    "PollPolicy",
    "default_poll_policy",
    "dense_gap",
    "jittered",
    "next_poll_delay",
    "poll_error_delay",
    "reconfirm_delay",
]

_RNG: Final = random.Random()  # noqa: S311 - jitter, not security
# Re-confirming a callback: 4 s apart at most, so a fetch lagging a few seconds behind
# its callback costs one step more; a minute of disagreement, about 18 fetches for that
# job. The window (PollPolicy.confirm_window) is the real bound, not max_retries.
_CONFIRM_RETRY: Final = RetryPolicy(max_retries=100, initial_delay=0.25, max_delay=4.0)


@attrs.frozen
class PollPolicy:
    """How the waiter polls pending jobs. All times in seconds.

    Attributes:
        initial_delay: first poll of a job when nothing has been learned yet.
        growth: factor between successive gaps while backing off.
        max_interval: the longest gap between two polls of one job.
        dense_interval: the longest gap where jobs are likely to finish (and the gap
            before anything is learned); the mean detection delay is about half the gap.
        dense_fraction: the dense gap as a share of the learned spread of durations
            (late edge minus early edge), kept between ``min_dense_interval`` and
            ``dense_interval``.
        min_dense_interval: the shortest dense gap.
        jitter: each gap is scaled by a random factor in ``[1 - jitter, 1]``: only ever
            shortened, so no gap exceeds its nominal length (and no detection delay
            exceeds what the policy promises).
        early_quantile: the share of learned durations treated as "too early to finish".
        late_quantile: beyond this share of learned durations a job is unusually long and
            its polls back off.
        min_samples: finished jobs needed before the late edge is trusted (the early edge
            is used from the first finished job on: it only needs the shortest durations).
        window: how many recent durations are remembered.
        adaptive: False polls every job on the plain backoff, learning nothing.
        backstop_interval: the gap between polls when a webhook receiver is expected to
            deliver the result; polling is then only a safety net for lost callbacks.
        probes: while nothing is learned, only this many jobs (the oldest) poll, every
            ``dense_interval`` after ``initial_delay``; the others check every
            ``2 * max_interval`` until the first finished job teaches the early edge,
            which re-plans them all.
        coalesce: polls due within this many seconds of each other go out together (up to
            that much early, never late), so many jobs cost one wake-up, not one each.
        confirm_retry: after a callback, how a confirming fetch that fails or disagrees
            (the fetch lags behind the callback) is repeated: this policy's backoff (by
            default 0.25, 0.5, 1, 2, then every 4 s, each shortened by up to a quarter)
            and its ``Retry-After`` rules. Its ``max_retries`` bounds the re-confirms too.
        confirm_window: seconds after a callback during which it is re-confirmed; past
            them (a callback the fetch still denies is forged, or TTAPI's fetch is broken)
            the job goes back to its normal schedule (the backstop, with a receiver).
    """

    initial_delay: float = 1.0
    growth: float = 1.5
    max_interval: float = 8.0
    dense_interval: float = 1.0
    dense_fraction: float = 0.125
    min_dense_interval: float = 0.25
    jitter: float = 0.05
    early_quantile: float = 0.01
    late_quantile: float = 0.99
    min_samples: int = 20
    window: int = 512
    adaptive: bool = True
    backstop_interval: float = 30.0
    probes: int = 32
    coalesce: float = 0.02
    confirm_retry: RetryPolicy = _CONFIRM_RETRY
    confirm_window: float = 60.0

    @classmethod
    def fixed(cls, interval: float) -> PollPolicy:
        """Poll every ``interval`` seconds, learning nothing (the naive baseline)."""
        return cls(
            initial_delay=interval,
            growth=1.0,
            max_interval=interval,
            dense_interval=interval,
            min_dense_interval=interval,
            jitter=0.0,
            adaptive=False,
        )


class DurationModel:
    """The durations of recently finished jobs, kept sorted for quantiles.

    A poll-based duration is only known to lie between the job's last "not yet" poll and
    the poll that saw it done; the midpoint is recorded.
    """

    __slots__ = ("_lowest", "_recent", "_sorted", "count", "window")

    _KEEP_LOWEST: Final = 64

    def __init__(self, window: int = 512) -> None:
        self.window = window
        self._recent: deque[float] = deque()
        self._sorted: list[float] = []
        # The shortest durations ever seen: the early edge comes from these, because a
        # window of *recent* finishes drifts up whenever arrivals slow down (at the end of
        # a burst only the slow jobs are still finishing), and a too-late edge costs delay.
        self._lowest: list[float] = []
        self.count = 0

    def __len__(self) -> int:
        return len(self._sorted)

    def add(self, duration: float) -> None:
        """Remember one finished job's duration (the oldest is forgotten past ``window``)."""
        if duration < 0:
            return
        self.count += 1
        if len(self._lowest) < self._KEEP_LOWEST or duration < self._lowest[-1]:
            bisect.insort(self._lowest, duration)
            del self._lowest[self._KEEP_LOWEST :]
        self._recent.append(duration)
        bisect.insort(self._sorted, duration)
        if len(self._recent) > self.window:
            old = self._recent.popleft()
            del self._sorted[bisect.bisect_left(self._sorted, old)]

    def early_edge(self, q: float) -> float:
        """The ``q`` quantile of all durations ever seen, for small ``q``; 0.0 when none.

        Exact while ``q * count`` stays within the shortest durations kept; beyond that,
        the longest of them (a low, safe estimate).
        """
        lowest = self._lowest
        if not lowest:
            return 0.0
        index = int(q * self.count)
        if index == 0 and len(lowest) > 1:
            # Few samples: the shortest seen overshoots the true edge by about one spacing
            # (the first of 32 probes to finish is not the fastest job there is), so step
            # back by the gap to the second shortest.
            return max(0.0, 2 * lowest[0] - lowest[1])
        return lowest[min(len(lowest) - 1, index)]

    def quantile(self, q: float) -> float:
        """The ``q`` quantile of the remembered durations (0.0 when none)."""
        if not self._sorted:
            return 0.0
        index = min(len(self._sorted) - 1, max(0, int(q * len(self._sorted))))
        return self._sorted[index]


#: The policy of a waiter given none (None: ``PollPolicy()``). Only
#: :func:`ttapi_async.testing.set_fast_waits` sets it: tests against an emulator whose jobs
#: take a tenth of a second should not wait a second per poll. Read once, when a waiter is
#: created, so polling itself pays nothing for it.
_default_policy: PollPolicy | None = None


def default_poll_policy() -> PollPolicy:
    """The policy of a waiter created without one: ``PollPolicy()`` unless fast waits are on."""
    return _default_policy or PollPolicy()


def dense_gap(model: DurationModel, policy: PollPolicy, observed: float = math.inf) -> float:
    """The gap between polls where jobs finish: a share of the learned spread, bounded.

    The spread is trusted, like the late edge, only once ``min_samples`` jobs have finished
    and the waiter has watched for twice the longest duration seen (``observed``): before
    that, only the quick jobs of a batch have finished, and a spread learned from them is
    too narrow (polling 2-10 s jobs every 0.25 s because the first finishes took 2-3 s).
    """
    late = model.quantile(policy.late_quantile)
    if len(model) < policy.min_samples or observed < 2 * late:
        return policy.dense_interval
    spread = late - model.early_edge(policy.early_quantile)
    return min(
        policy.dense_interval,
        max(policy.min_dense_interval, policy.dense_fraction * spread),
    )


def jittered(gap: float, policy: PollPolicy, rng: random.Random = _RNG) -> float:
    """``gap`` shortened by the policy's jitter (never lengthened)."""
    if policy.jitter:
        gap *= 1 - policy.jitter * rng.random()
    return gap


def next_poll_delay(
    age: float,
    last_gap: float | None,
    model: DurationModel,
    policy: PollPolicy,
    rng: random.Random = _RNG,
    observed: float = math.inf,
    in_zone: bool = False,
) -> float:
    """Seconds from now until the next poll of a job that is ``age`` seconds old.

    ``last_gap`` is the gap before the previous poll (None before the first poll);
    ``observed`` is how long the waiter has been watching jobs; ``in_zone`` says the job
    was already polled past the early edge. Such a job never goes back to sleep, even if
    the learned edge has since moved up (recent finishes are not always a fair sample:
    at the end of a burst only the slow jobs are still finishing).
    """
    if policy.adaptive and len(model) > 0:
        early = model.early_edge(policy.early_quantile)
        dense = dense_gap(model, policy, observed)
        if age < early and not in_zone:
            # Sleep through the dead time: the first poll lands one dense gap past the
            # early edge, where the first finishes can be seen.
            return jittered(early - age + dense, policy, rng)
        late = model.quantile(policy.late_quantile)
        if len(model) < policy.min_samples or age <= late or observed < 2 * late:
            return jittered(dense, policy, rng)
        base = max(last_gap or dense, dense)
        return jittered(min(policy.max_interval, base * policy.growth), policy, rng)
    if last_gap is None:
        return jittered(policy.initial_delay, policy, rng)
    return jittered(min(policy.max_interval, last_gap * policy.growth), policy, rng)


def reconfirm_delay(
    confirms: int,
    since_callback: float,
    policy: PollPolicy,
    error: BaseException | None = None,
    rng: random.Random = _RNG,
) -> float | None:
    """Seconds until the next fetch confirming a callback, or None to stop re-confirming.

    ``confirms`` is how many confirming fetches have been answered (1 after the first),
    ``since_callback`` the seconds since the callback, ``error`` what the last one raised
    (None: it answered, but the job is not over yet). The delays are
    ``policy.confirm_retry``'s: its backoff, or the server's ``Retry-After``. None when
    the next fetch would fall past ``policy.confirm_window``, or the error does not pass
    by waiting (a 401, say): the job goes back to its normal schedule.
    """
    retry = policy.confirm_retry
    remaining = policy.confirm_window - since_callback
    if error is not None:
        return retry.delay(error, confirms, billable=False, remaining=remaining, rng=rng)
    if confirms > retry.max_retries:
        return None
    wait = retry.backoff(confirms, rng)
    return wait if wait < remaining else None


def poll_error_delay(
    errors: int, policy: PollPolicy, error: BaseException, *, hooked: bool
) -> float:
    """Seconds until the next poll of a job whose last ``errors`` polls failed in a row.

    The shared :func:`~ttapi_async._retry.backoff` from ``2 * dense_interval``, doubling
    up to ``64 * dense_interval`` and ``max_interval``, without jitter; never sooner than
    the server's ``Retry-After`` (``error`` a 429 or 499 that sent one) nor, for a job
    whose callback is expected (``hooked``), than ``backstop_interval``.
    """
    delay = backoff(min(errors, 6) + 1, policy.dense_interval, policy.max_interval)
    if hooked:
        delay = max(delay, policy.backstop_interval)
    hint = error.retry_after if isinstance(error, RateLimitError | QueueFullError) else None
    return max(delay, hint or 0.0)
