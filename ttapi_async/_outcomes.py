"""A bulk run's outcomes: what each item ended as, the counts, and their delivery.

Strictly private; :class:`BulkOutcome` and :class:`BulkProgress` are public through
``ttapi_async``. :class:`Ledger` keeps an item's journal row and the run's counts moving
together (the journal optional, behind the
:class:`~ttapi_async._journalstore.JournalStore` protocol); :class:`Delivery` hands the
outcomes to the caller's loop, in input order if asked, and reports progress.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import anyio
import attrs

from ._journalstore import ItemState, JournalStore
from ._models import ImagesResponse, JobResult, SavedImage
from ._requests import Request


if TYPE_CHECKING:
    from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream


__all__ = ["BulkOutcome", "BulkProgress", "Delivery", "Ledger", "outcome_stream"]

log = logging.getLogger("ttapi_async.bulk")


@attrs.frozen
class BulkProgress:
    """Counts of a bulk run at one moment (what ``on_progress`` receives).

    Attributes:
        total: inputs in all, when the requests were a sized collection (else None).
        submitted: submits and synchronous calls sent and accepted in this run.
        running: jobs and calls in flight now.
        done: items that ended well in this run.
        failed: items that ended with an error (a resumed earlier failure included).
        unknown: items whose billable request may or may not have been accepted.
        timed_out: 4o jobs whose wait timed out; still submitted (a resumed run waits).
        skipped: items already done in the journal by an earlier run.
        paused: an account-level error stopped new submissions.
        jobs_cap: the job-slot cap now (lowered by 499s, creeping back up).
        elapsed: seconds since the run started.
    """

    total: int | None
    submitted: int
    running: int
    done: int
    failed: int
    unknown: int
    timed_out: int
    skipped: int
    paused: bool
    jobs_cap: int
    elapsed: float

    @property
    def finished(self) -> int:
        """Items with an outcome: done, failed, unknown, timed out or skipped."""
        return self.done + self.failed + self.unknown + self.timed_out + self.skipped


@attrs.frozen
class BulkOutcome:
    """How one input ended: its result or its error, with the input it belongs to.

    Attributes:
        index: the input's position (0-based).
        request: the input.
        state: ``done``, ``failed``, ``outcome_unknown``, or ``submitted`` when the wait
            timed out (the job goes on; a resumed run waits again).
        result: the :class:`ImagesResponse` or :class:`JobResult` (None on error or when
            the item was done by an earlier run).
        error: the error, if any: a :class:`TTAPIError`, or an ``OSError`` from saving.
        job_id: the 4o job's id, once known.
        files: images saved by this run (``save_to``).
        paths: the saved files' paths (also for items done by an earlier run).
        resumed: the outcome comes from the journal of an earlier run.
        reason: the journal's reason, for resumed failures and unknown outcomes.
        elapsed: seconds from the item's start to its end in this run.
    """

    index: int
    request: Request
    state: ItemState
    result: ImagesResponse | JobResult | None = None
    error: Exception | None = None
    job_id: str | None = None
    files: tuple[SavedImage, ...] = ()
    paths: tuple[Path, ...] = ()
    resumed: bool = False
    reason: str | None = None
    elapsed: float = 0.0

    @property
    def ok(self) -> bool:
        """True when the item is done."""
        return self.state is ItemState.DONE


class Ledger:
    """The run's counts and, with a journal, each item's row: written together.

    ``running`` counts the 4o jobs accepted and not ended plus the sync calls in flight;
    it is also what a 499 compares the job cap with.
    """

    __slots__ = (
        "done",
        "failed",
        "journal",
        "report",
        "running",
        "skipped",
        "submitted",
        "timed_out",
        "unknown",
    )

    def __init__(self, journal: JournalStore | None, report: Callable[[], None]) -> None:
        self.journal = journal
        self.report = report  # tells ``on_progress`` the counts changed
        self.submitted = self.running = self.done = self.failed = 0
        self.unknown = self.timed_out = self.skipped = 0

    def progress(
        self, total: int | None, *, paused: bool, jobs_cap: int, elapsed: float
    ) -> BulkProgress:
        """The counts now, with what the run adds to them."""
        return BulkProgress(
            total=total,
            submitted=self.submitted,
            running=self.running,
            done=self.done,
            failed=self.failed,
            unknown=self.unknown,
            timed_out=self.timed_out,
            skipped=self.skipped,
            paused=paused,
            jobs_cap=jobs_cap,
            elapsed=elapsed,
        )

    async def write(
        self,
        index: int,
        new: ItemState,
        *,
        job_id: str | None = None,
        hooked: bool = False,
        files: Sequence[str] = (),
        reason: str | None = None,
        shield: bool = False,
    ) -> None:
        """Move the item's journal row to ``new`` (nothing without a journal).

        With ``shield``, a cancellation of the caller does not cut the write short: for
        what must reach the journal although the run is being cancelled (a job id that
        arrived, a result that will never be saved).
        """
        journal = self.journal
        if journal is None:
            return
        write = journal.transition(
            index, new, job_id=job_id, hooked=hooked, files=files, reason=reason
        )
        if not shield:
            await write
            return
        with anyio.CancelScope(shield=True):
            await write

    async def claim(self, index: int) -> bool:
        """Claim the item in the journal; True without one (see ``JournalStore.claim``)."""
        return self.journal is None or await self.journal.claim(index)

    async def release(self, index: int) -> None:
        """Let go of the item's claim, even while the run is being cancelled."""
        if self.journal is not None:
            with anyio.CancelScope(shield=True):
                await self.journal.release(index)

    async def not_started(self, index: int) -> None:
        """Refused before being accepted (429/499/401/402/403) or never sent: pending again."""
        await self.write(index, ItemState.PENDING)

    def enter_running(self) -> None:
        """One more job or call in flight."""
        self.running += 1
        self.report()

    def leave_running(self) -> None:
        """One job or call fewer in flight."""
        self.running -= 1

    async def ended(
        self,
        index: int,
        request: Request,
        state: ItemState,
        start: float,
        exc: Exception,
        *,
        job_id: str | None = None,
    ) -> BulkOutcome:
        """Record an item that ended badly and build its outcome.

        ``state`` is ``failed``, ``outcome_unknown``, or ``submitted`` for a 4o wait that
        timed out: the job goes on, and the journal keeps it submitted so a resumed run
        waits again.
        """
        reason = f"{type(exc).__name__}: {exc}"
        if state is ItemState.SUBMITTED:
            self.timed_out += 1
        elif state is ItemState.OUTCOME_UNKNOWN:
            self.unknown += 1
            await self.write(index, state, reason=reason)
        else:
            self.failed += 1
            await self.write(index, state, reason=reason)
        log.info("item %d %s: %s", index, state.value, exc)
        return BulkOutcome(
            index=index,
            request=request,
            state=state,
            error=exc,
            job_id=job_id,
            reason=reason,
            elapsed=asyncio.get_running_loop().time() - start,
        )

    def count_resumed(self, outcome: BulkOutcome) -> None:
        """Count an outcome handed back from the journal of an earlier run."""
        if outcome.state is ItemState.DONE:
            self.skipped += 1
        elif outcome.state is ItemState.FAILED:
            self.failed += 1
        else:
            self.unknown += 1


def outcome_stream() -> tuple[
    MemoryObjectSendStream[BulkOutcome], MemoryObjectReceiveStream[BulkOutcome]
]:
    """The run's outcome stream: unbounded, as the window bounds what can be in it."""
    return anyio.create_memory_object_stream[BulkOutcome](math.inf)


class Delivery:
    """Hands outcomes to the caller's loop, in input order if asked.

    Args:
        send: the outcome stream's sending end.
        ledger: counts the outcomes handed back from an earlier run.
        ordered: hold an outcome back until every earlier input has been handed back
            (or skipped: never started).
        release_window: frees the window place of an item that was never sent.
        on_failure: called with a new failure's error (fail-fast); None: failures are
            only handed back.
    """

    __slots__ = ("_ledger", "_next", "_on_failure", "_ordered", "_ready", "_release", "_send")

    def __init__(
        self,
        send: MemoryObjectSendStream[BulkOutcome],
        ledger: Ledger,
        *,
        ordered: bool,
        release_window: Callable[[], None],
        on_failure: Callable[[Exception], None] | None,
    ) -> None:
        self._send = send
        self._ledger = ledger
        self._ordered = ordered
        self._release = release_window
        self._on_failure = on_failure
        self._ready: dict[int, BulkOutcome | None] = {}  # None: never started
        self._next = 0

    def deliver(self, outcome: BulkOutcome) -> None:
        """Hand an outcome to the caller, then report progress."""
        if outcome.resumed:
            self._ledger.count_resumed(outcome)
        self._put(outcome.index, outcome)
        self._ledger.report()
        failure = None if outcome.ok or outcome.resumed else outcome.error
        if failure is not None and self._on_failure is not None:
            self._on_failure(failure)

    def skip(self, index: int) -> None:
        """An item that was never sent: free its window place and keep the order moving."""
        self._release()
        if self._ordered:
            self._put(index, None)

    def _put(self, index: int, outcome: BulkOutcome | None) -> None:
        # Past the order's point (a shared run's item taken over at its end): at once.
        if not self._ordered or index < self._next:
            if outcome is not None:
                self._send.send_nowait(outcome)
            return
        self._ready[index] = outcome
        while self._next in self._ready:
            ready = self._ready.pop(self._next)
            self._next += 1
            if ready is not None:
                self._send.send_nowait(ready)
