"""Bulk runs: many requests under limits, each outcome handed back as it ends.

Strictly private; users call :meth:`ttapi_async.Client.bulk`::

    async with client.bulk(requests, max_jobs=64, save_to="out") as outcomes:
        async for outcome in outcomes:
            print(outcome.index, outcome.state, outcome.paths)

Shape: :class:`BulkRun` is an async context manager that owns a task group and an async
iterator over a memory stream. It is *not* an async generator yielding from inside a task
group, which anyio documents as breaking cancellation: here the workers send into the
stream and the caller's task only receives.

This module is the run's shell: the task group, the iteration, :attr:`BulkRun.progress`
and :meth:`BulkRun.stop`. The rest is cut along its seams, bottom-up:

* :mod:`~ttapi_async._runstate`: the run's state, one enum moved by a transition table.
* :mod:`~ttapi_async._outcomes`: :class:`BulkOutcome`, :class:`BulkProgress`, the counts
  and the journal writes that go with them, and the (ordered) delivery.
* :mod:`~ttapi_async._resume`: where an item starts from the journal; leftover files.
* :mod:`~ttapi_async._admission`: the window, the job slots (a 499 lowers the cap), the
  HTTP cap, the pause on 401/402/403, and the producer that starts items lazily.
* :mod:`~ttapi_async._finish`: saving a result and recording the item done.
* :mod:`~ttapi_async._items`: the item lifecycles (4o: submit, wait, save; sync: call,
  save), with one classification of the errors of a billable call.

The client's ``requests_per_second`` budget, shared with the waiter's polls, applies
inside each call; 4o jobs are waited on through the client's
:class:`~ttapi_async.JobWaiter` (webhook or polling), and every state change is written to
the journal (a :class:`~ttapi_async._journalstore.JournalStore`) first.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Self

import anyio
import attrs

from ._admission import Admission, Slot
from ._errors import ClientClosedError, ValidationError
from ._finish import Finisher, Save
from ._items import ItemRunner
from ._journal import Journal
from ._journalstore import JournalStore
from ._outcomes import BulkOutcome, BulkProgress, Delivery, Ledger, outcome_stream
from ._requests import Request
from ._resume import Start, sweep_parts
from ._runstate import RunEvent, RunState, RunStatus
from ._sender import Sender
from ._takeover import SharedRows, Takeover
from ._types import NOT_GIVEN, Timeout
from ._waiter import JobWaiter


if TYPE_CHECKING:
    from anyio.abc import TaskGroup

    from ._webhook import WebhookReceiver


__all__ = ["BulkOutcome", "BulkProgress", "BulkRun", "RunParts", "Save"]

log = logging.getLogger("ttapi_async.bulk")


@attrs.frozen
class RunParts:
    """What a bulk run is handed by the client: the send path, the waiter, the saver."""

    sender: Sender
    waiter: JobWaiter
    webhook: WebhookReceiver | None
    save: Save


@attrs.frozen
class _Options:
    """What the items of a run are asked to do (``Client.bulk``'s arguments)."""

    save_to: Path | None
    sidecar: bool
    max_bytes: int
    max_downloads: int
    resubmit_unknown: bool
    retry_failed: bool
    wait_timeout: Timeout


class BulkRun:
    """A running bulk job: enter it, then iterate over its outcomes. See ``Client.bulk``."""

    def __init__(
        self,
        parts: RunParts,
        requests: Iterable[Request] | AsyncIterable[Request],
        *,
        max_jobs: int = 64,
        min_jobs: int = 1,
        max_requests: int = 16,
        max_downloads: int = 8,
        ordered: bool = False,
        window: int | None = None,
        fail_fast: bool = False,
        save_to: str | os.PathLike[str] | None = None,
        sidecar: bool = True,
        max_bytes: int = 64 * 1024 * 1024,
        journal: str | os.PathLike[str] | JournalStore | None = None,
        resubmit_unknown: bool = False,
        retry_failed: bool = False,
        wait_timeout: Timeout = NOT_GIVEN,
        on_progress: Callable[[BulkProgress], object] | None = None,
    ) -> None:
        for name, value in (
            ("max_requests", max_requests),
            ("max_downloads", max_downloads),
        ):
            if value < 1:
                raise ValidationError(name, value, "at least 1")
        window = window if window is not None else max(64, 2 * max_jobs)
        if window < 1:
            raise ValidationError("window", window, "at least 1")
        self._parts = parts
        self._requests = requests
        self._options = _Options(
            save_to=None if save_to is None else Path(save_to),
            sidecar=sidecar,
            max_bytes=max_bytes,
            max_downloads=max_downloads,
            resubmit_unknown=resubmit_unknown,
            retry_failed=retry_failed,
            wait_timeout=wait_timeout,
        )
        self._on_progress = on_progress
        self._status = RunStatus()
        self._admission = Admission(
            self._status,
            parts.sender,
            self._report,
            max_jobs=max_jobs,
            min_jobs=min_jobs,
            max_requests=max_requests,
            window=window,
        )
        #: The job-slot cap (lowered by 499s, creeping back up).
        self.slots = self._admission.slots
        self._journal_arg = journal
        self.journal: JournalStore | None = None
        #: With a shared journal: the items of other workers this one watches and takes
        #: over (``takeover.taken_over`` counts them).
        self.takeover: Takeover[Start, Slot] | None = None
        self._owns_journal = False
        self._ledger = Ledger(None, self._report)
        self._send, self._receive = outcome_stream()
        self._delivery = Delivery(
            self._send,
            self._ledger,
            ordered=ordered,
            release_window=self._admission.leave_window,
            on_failure=self._fail_fast if fail_fast else None,
        )
        self._total = len(requests) if hasattr(requests, "__len__") else None  # type: ignore[arg-type]
        self._tg: TaskGroup | None = None
        self._work_scope = anyio.CancelScope()
        self._started_at = 0.0

    # ------------------------------------------------------------------ public

    @property
    def progress(self) -> BulkProgress:
        """The counts now."""
        return self._ledger.progress(
            self._total,
            paused=self._status.paused_by is not None,
            jobs_cap=self.slots.current,
            elapsed=(asyncio.get_running_loop().time() - self._started_at)
            if self._started_at
            else 0.0,
        )

    def stop(self) -> None:
        """Stop submitting; items in flight finish and are handed back, then iteration ends.

        What was not submitted stays pending in the journal (the CLI's first Ctrl-C).
        """
        self._status.move(RunEvent.STOP)
        self._admission.close()

    async def __aenter__(self) -> Self:
        if not self._parts.waiter.running:
            raise ClientClosedError(
                "a bulk run needs the client's scheduler: use `async with Client() as client`"
            )
        arg = self._journal_arg
        if isinstance(arg, str | os.PathLike):
            self.journal = await anyio.to_thread.run_sync(Journal.open, arg)
            self._owns_journal = True
        else:
            self.journal = arg
        self._ledger.journal = self.journal
        run_id = self.journal.run_id if self.journal is not None else None
        options = self._options
        if run_id is not None and options.save_to is not None:
            # A run killed mid-download leaves its temporary files, tagged with the
            # journal's run id; the journal's lock says no other run of this journal is
            # saving into the folder now. Other saves' files carry no such tag.
            await anyio.to_thread.run_sync(sweep_parts, options.save_to, run_id)
        self._started_at = asyncio.get_running_loop().time()
        tg = anyio.create_task_group()
        await tg.__aenter__()
        tg.start_soon(self._run_workers, self._items(run_id))
        self._tg = tg
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        tg, self._tg = self._tg, None
        try:
            if tg is not None:
                if self._status.state is not RunState.ENDED:
                    # Left early (break, error): stop everything. 4o submits already on
                    # the wire are shielded, so their job ids reach the journal.
                    self._status.move(RunEvent.LEAVE)
                    tg.cancel_scope.cancel()
                try:
                    return await tg.__aexit__(exc_type, exc, tb)
                except BaseExceptionGroup as group:
                    # One worker error: raise it as itself, not wrapped in (nested) groups.
                    inner: BaseException = group
                    while isinstance(inner, BaseExceptionGroup) and len(inner.exceptions) == 1:
                        inner = inner.exceptions[0]
                    if inner is group:
                        raise
                    raise inner from inner.__cause__
            return None
        finally:
            self._receive.close()
            if self._owns_journal and self.journal is not None:
                with anyio.CancelScope(shield=True):
                    await self.journal.aclose()

    def __aiter__(self) -> AsyncIterator[BulkOutcome]:
        return self

    async def __anext__(self) -> BulkOutcome:
        try:
            outcome = await self._receive.receive()
        except (anyio.EndOfStream, anyio.ClosedResourceError):
            self._status.move(RunEvent.END)
            error = self._status.error
            if error is not None:
                # Its own cause (a pause's account error), not the stream's end.
                raise error from error.__cause__
            raise StopAsyncIteration from None
        self._admission.leave_window()
        return outcome

    # ------------------------------------------------------------------ workers

    def _items(self, run_id: str | None) -> ItemRunner:
        parts, options = self._parts, self._options
        finisher = Finisher(
            parts.save,
            self._ledger,
            folder=options.save_to,
            sidecar=options.sidecar,
            max_bytes=options.max_bytes,
            downloads=anyio.CapacityLimiter(options.max_downloads),
            run_id=run_id,
        )
        return ItemRunner(
            parts.sender,
            parts.waiter,
            parts.webhook,
            self._admission,
            self._ledger,
            self._delivery,
            finisher,
            wait_timeout=options.wait_timeout,
            retry_failed=options.retry_failed,
            resubmit_unknown=options.resubmit_unknown,
        )

    async def _run_workers(self, items: ItemRunner) -> None:
        with self._send:
            with self._work_scope:
                async with anyio.create_task_group() as work:

                    def launch(index: int, request: Request, start: Start, slot: Slot) -> None:
                        work.start_soon(items.run, index, request, start, slot)

                    journal: object = self.journal  # any store; a shared one has rows()
                    if isinstance(journal, SharedRows):
                        # A shared run: items other workers hold are watched to their end,
                        # and run here if their worker dies.
                        self.takeover = Takeover(
                            journal, items.take_over, self._admission.enter, launch
                        )
                        self.takeover.bind(work)
                        items.elsewhere = self.takeover.watch

                    await self._admission.admit(
                        self._requests,
                        prepare=items.prepare,
                        launch=launch,
                        input_failed=self._input_failed,
                    )
            self._status.settle()

    def _input_failed(self, exc: BaseException) -> None:
        # Like stop(): what started finishes and is handed back, then the loop raises it.
        self._status.fail(exc)
        self._admission.cancel_unsent()

    def _fail_fast(self, exc: Exception) -> None:
        if self._status.fail(exc):
            self._work_scope.cancel()

    def _report(self) -> None:
        if self._on_progress is not None:
            try:
                self._on_progress(self.progress)
            except Exception:
                # A display bug must not abandon billed work: log it and go on.
                log.exception("on_progress raised; the run goes on")
