"""Items of a shared bulk run other workers hold: watched to their end, or taken over.

Strictly private. A worker of a shared run (a :class:`~ttapi_async.RedisJournal`) passes
over the items another worker has claimed. One task watches them all: every ``period``
seconds it reads their rows, forgets those that ended, and tries to claim the others. A
claim is granted only once its holder's lease lapsed (the holder died, or stalled past
it), and then the item resumes here from its row: a job id is waited on, never submitted
again; an item caught ``submitting`` became ``outcome_unknown`` as it was claimed.
The run ends once nothing is watched and everything started here has ended.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Generic, Protocol, TypeVar, runtime_checkable

import anyio
from anyio.abc import TaskGroup

from ._journalstore import JournalEntry
from ._requests import Request
from ._sharedrun import FINAL_STATES


__all__ = ["SharedRows", "Takeover"]

log = logging.getLogger("ttapi_async.bulk")

_S = TypeVar("_S")
_Slot = TypeVar("_Slot")


@runtime_checkable
class SharedRows(Protocol):
    """What the watcher reads of a shared journal (:class:`~ttapi_async.RedisJournal`)."""

    @property
    def lease(self) -> float:
        """Seconds a claim lasts unless renewed."""

    async def rows(self, indexes: Sequence[int]) -> Mapping[int, JournalEntry]:
        """The rows of ``indexes`` that exist."""


class Takeover(Generic[_S, _Slot]):
    """Watches the items other workers hold; runs those whose worker died.

    Args:
        journal: the shared journal.
        claim: claims an item and says where it resumes (None: refused, or nothing left
            to do); see :meth:`ItemRunner.take_over`.
        slot: waits for a job slot (and a window place) for a taken-over item.
        launch: starts a taken-over item's task.
        period: seconds between two looks (default: a quarter of the lease, 0.2-2 s).
    """

    def __init__(
        self,
        journal: SharedRows,
        claim: Callable[[int, Request], Awaitable[_S | None]],
        slot: Callable[[], Awaitable[_Slot | None]],
        launch: Callable[[int, Request, _S, _Slot], None],
        *,
        period: float | None = None,
    ) -> None:
        self._journal = journal
        self._claim = claim
        self._slot = slot
        self._launch = launch
        # Often enough to take a dead worker's items soon after its lease lapses and to
        # notice the run's end (a worker exits within this of the last item ending); not
        # so often that idle workers load Redis (a look every 0.5 s instead of 2 s cost
        # 28% more Redis commands per job in bench_fleet.py, and no wall time).
        self._period = period if period is not None else min(2.0, max(0.2, journal.lease / 4))
        self._watched: dict[int, Request] = {}
        self._tg: TaskGroup | None = None
        self._running = False
        #: Items this worker took over from a worker that died or stalled.
        self.taken_over = 0

    def bind(self, tg: TaskGroup) -> None:
        """The task group the watcher (and the items it starts) run in."""
        self._tg = tg

    def watch(self, index: int, request: Request) -> None:
        """Another worker holds ``index``: watch it until it ends there or is taken over."""
        self._watched[index] = request
        if not self._running and self._tg is not None:
            self._running = True
            self._tg.start_soon(self._watch_forever)

    async def _watch_forever(self) -> None:
        try:
            while self._watched:
                await anyio.sleep(self._period)
                await self._look()
        finally:
            self._running = False

    async def _look(self) -> None:
        watched = self._watched
        rows = await self._journal.rows(list(watched))
        for index in list(watched):
            row = rows.get(index)
            if row is not None and row.state in FINAL_STATES:
                del watched[index]  # ended where it ran
                continue
            request = watched[index]
            start = await self._claim(index, request)
            if start is None:
                continue  # still held by a live worker (or nothing left to do: see claim)
            del watched[index]
            slot = await self._slot()
            if slot is None:  # the run stopped admitting: the claim goes back
                return
            self.taken_over += 1
            log.info("item %d: taken over (its worker's claim lapsed)", index)
            self._launch(index, request, start, slot)
