"""What the waiter remembers of jobs for the waits still to come: outcomes and routes.

Strictly private. Outcomes of jobs that ended before anyone waited are kept
``result_ttl`` seconds; outcomes a wait already took are kept briefly for repeated waits.
With a shared store (several workers), a job this process does not know is looked up
there, and an outcome published while the look-up is in flight is not missed.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import TYPE_CHECKING, Final, Protocol

import attrs

from ._errors import TTAPIError
from ._models import JobResult, JobSnapshot
from ._protocol import ROUTE_4O


if TYPE_CHECKING:
    from ._fleet import JobRecord

__all__ = ["Expiring", "Remembered", "SharedOutcomes", "outcome_of"]

log = logging.getLogger("ttapi_async.waiter")

Outcome = JobResult | JobSnapshot  # a result, or the FAILED snapshot
_MAX_ROUTES: Final = 100_000  # job ids remembered with a route other than 4o, at most


class SharedOutcomes(Protocol):
    """Where several workers share job outcomes (:class:`~ttapi_async.RedisBroker` is one).

    A Protocol, not the broker's class: the broker sits above the waiter.
    """

    async def lookup(self, job_id: str) -> tuple[tuple[JobSnapshot, str] | None, JobRecord | None]:
        """The job's stored final state with its source, and its record; None for each unknown.

        Raises:
            TTAPIError: the store cannot be reached (the waiter then polls).
        """

    def publish(self, snapshot: JobSnapshot, source: str) -> None:
        """Share a final state decided here (queued: never blocks, never raises)."""


_MAX_REMEMBERED: Final = 100_000  # outcomes kept for late waiters, at most
#: Seconds an outcome stays for later waits once a wait has taken it. Short, so a long
#: run does not hold every result it handed out; a wait after that polls once more.
_TAKEN_TTL: Final = 60.0


class Expiring:
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


def outcome_of(
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


class Remembered:
    """Outcomes of ended jobs by id: kept here, and looked up in the fleet's store.

    Args:
        result_ttl: seconds an outcome nobody took yet is kept.
        shared: the fleet's store (None: this process alone).
        redact: hides secrets in a failed job's message.
        now: the waiter's clock.
    """

    def __init__(
        self,
        result_ttl: float,
        shared: SharedOutcomes | None,
        redact: Callable[[str], str] | None,
        now: Callable[[], float],
    ) -> None:
        self._unclaimed = Expiring(result_ttl)
        self._taken = Expiring(_TAKEN_TTL)
        self._shared = shared
        self._redact = redact
        self._now = now
        # Look-ups in flight, and what was published for their jobs meanwhile.
        self._looking: dict[str, tuple[JobSnapshot, str] | None] = {}
        # Job ids submitted here on a route other than 4o (the default needs no memory).
        self._routes: OrderedDict[str, str] = OrderedDict()

    def remember_route(self, job_id: str, route: str) -> None:
        """Remember the route a job was submitted on (at most ``_MAX_ROUTES`` ids)."""
        if route != ROUTE_4O:
            routes = self._routes
            routes[job_id] = route
            if len(routes) > _MAX_ROUTES:
                routes.popitem(last=False)

    def route_of(self, job_id: str) -> str | None:
        """The route a job was submitted on here, if it was not the 4o route."""
        return self._routes.get(job_id)

    def keep(self, job_id: str, outcome: Outcome, now: float, *, taken: bool) -> None:
        """Remember an outcome: for the wait to come, or (``taken``) for repeated waits."""
        (self._taken if taken else self._unclaimed).put(job_id, outcome, now)

    def take(self, job_id: str) -> Outcome | None:
        """The remembered outcome of an ended job, if any; the first wait takes it."""
        now = self._now()
        outcome = self._unclaimed.pop(job_id, now)
        if outcome is not None:
            self._taken.put(job_id, outcome, now)
            return outcome
        return self._taken.get(job_id, now)

    def heard(self, snapshot: JobSnapshot, source: str) -> None:
        """A fleet outcome: kept if a look-up of its job is in flight."""
        if snapshot.job_id in self._looking:
            self._looking[snapshot.job_id] = (snapshot, source)

    async def look_up(self, job_id: str) -> tuple[Outcome | None, JobRecord | None]:
        """The fleet's outcome (remembered for repeated waits) and record of a job.

        An unreachable store answers ``(None, None)``: the wait then polls.
        """
        if self._shared is None:
            return None, None
        self._looking.setdefault(job_id, None)
        try:
            found, record = await self._shared.lookup(job_id)
        except TTAPIError as exc:
            log.info("job %s: shared store unreachable (%s); polling", job_id, type(exc).__name__)
            found, record = None, None
        finally:
            heard = self._looking.pop(job_id, None)
        found = found or heard
        if found is None:
            return None, record
        snap, source = found
        elapsed = 0.0 if record is None else max(0.0, time.time() - record.submitted_at)
        outcome = outcome_of(snap, elapsed, source, self._redact)
        self._taken.put(job_id, outcome, self._now())
        return outcome, record
