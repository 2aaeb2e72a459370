"""Bulk runs: many requests under limits, each outcome handed back as it ends.

Strictly private; users call :meth:`ttapi_async.Client.bulk`::

    async with client.bulk(requests, max_jobs=64, save_to="out") as outcomes:
        async for outcome in outcomes:
            print(outcome.index, outcome.state, outcome.paths)

Shape: :class:`BulkRun` is an async context manager that owns a task group and an async
iterator over a memory stream. It is *not* an async generator yielding from inside a task
group, which anyio documents as breaking cancellation: here the workers send into the
stream and the caller's task only receives.

Inside, one producer task pulls requests lazily (so 10,000 queued inputs cost what is in
flight, not 10,000 tasks) and starts one task per item when three things allow it:

* the **window**: items started but not yet taken by the caller, at most ``window``. In
  ordered mode that is how far the run may get ahead of its slowest item; in either mode
  it is the back-pressure of a slow consumer.
* a **job slot** (:class:`~ttapi_async._limits.SlotController` on an
  :class:`anyio.CapacityLimiter`): jobs accepted by TTAPI and not yet ended, plus sync
  calls in flight. A 499 lowers the cap; jobs ending well raise it again.
* no **pause**: a 401/402/403 stops new submissions (see :class:`BulkPausedError`).

Each item task then takes an **HTTP slot** (``max_requests``) for its submit or
synchronous call; the client's ``requests_per_second`` budget, shared with the waiter's
polls, applies inside the call. 4o jobs are waited on through the client's
:class:`~ttapi_async.JobWaiter` (webhook or polling), results are saved as they end
(``save_to``), and every state change is written to the journal first.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, Self

import anyio
import attrs

from ._errors import (
    AuthenticationError,
    BulkPausedError,
    ClientClosedError,
    InsufficientBalanceError,
    JobFailedError,
    JobTimeoutError,
    OutcomeUnknownError,
    PermissionDeniedError,
    QueueFullError,
    RateLimitError,
    TTAPIError,
    ValidationError,
)
from ._files import safe_stem
from ._journal import ItemState, Journal
from ._limits import SlotController, busy_backoff
from ._models import ImagesResponse, JobResult, SavedImage
from ._requests import (
    Dalle3Request,
    EditRequest,
    GenerateRequest,
    GPT4oRequest,
    Request,
    fingerprint,
    label,
    params,
)
from ._types import NOT_GIVEN, Timeout


if TYPE_CHECKING:
    from anyio.abc import TaskGroup

    from ._client import Client


__all__ = ["BulkOutcome", "BulkProgress", "BulkRun"]

log = logging.getLogger("ttapi_async.bulk")

#: Errors about the account, not the item: every remaining item would hit them too.
ACCOUNT_ERRORS: Final = (AuthenticationError, InsufficientBalanceError, PermissionDeniedError)
#: "Not now": the request was refused before it was accepted, so resubmitting is safe.
BUSY_ERRORS: Final = (QueueFullError, RateLimitError)


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
    skipped: int
    paused: bool
    jobs_cap: int
    elapsed: float

    @property
    def finished(self) -> int:
        """Items with an outcome: done, failed, unknown or skipped."""
        return self.done + self.failed + self.unknown + self.skipped


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
        error: the error, if any.
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
    error: TTAPIError | None = None
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


class BulkRun:
    """A running bulk job: enter it, then iterate over its outcomes. See ``Client.bulk``."""

    def __init__(
        self,
        client: Client,
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
        journal: str | os.PathLike[str] | Journal | None = None,
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
        self._client = client
        self._requests = requests
        self.slots: Final = SlotController(max_jobs, min_jobs)
        self._slot_limiter = anyio.CapacityLimiter(max_jobs)
        self._http = anyio.CapacityLimiter(max_requests)
        self._downloads = anyio.CapacityLimiter(max_downloads)
        self._window = anyio.Semaphore(window)
        self._ordered = ordered
        self._fail_fast = fail_fast
        self._save_to = None if save_to is None else Path(save_to)
        self._sidecar = sidecar
        self._max_bytes = max_bytes
        self._journal_arg = journal
        self._resubmit_unknown = resubmit_unknown
        self._retry_failed = retry_failed
        self._wait_timeout = wait_timeout
        self._on_progress = on_progress
        self.journal: Journal | None = None
        self._owns_journal = False
        self._total = len(requests) if hasattr(requests, "__len__") else None  # type: ignore[arg-type]
        send, receive = anyio.create_memory_object_stream[BulkOutcome](math.inf)
        self._send = send
        self._receive = receive
        self._tg: TaskGroup | None = None
        self._producer_scope = anyio.CancelScope()
        self._work_scope = anyio.CancelScope()
        self._error: TTAPIError | None = None  # fail-fast's or the pause's, raised at the end
        self._paused: TTAPIError | None = None
        self._stopping = False
        self._exhausted = False
        self._ready: dict[int, BulkOutcome] = {}
        self._next_index = 0
        self._active = 0  # jobs accepted and not ended, plus sync calls in flight
        self._started_at = 0.0
        self._counts = dict.fromkeys(
            ("submitted", "running", "done", "failed", "unknown", "skipped"), 0
        )

    # ------------------------------------------------------------------ public

    @property
    def progress(self) -> BulkProgress:
        """The counts now."""
        c = self._counts
        return BulkProgress(
            total=self._total,
            submitted=c["submitted"],
            running=c["running"],
            done=c["done"],
            failed=c["failed"],
            unknown=c["unknown"],
            skipped=c["skipped"],
            paused=self._paused is not None,
            jobs_cap=self.slots.current,
            elapsed=anyio.current_time() - self._started_at if self._started_at else 0.0,
        )

    def stop(self) -> None:
        """Stop submitting; items in flight finish and are handed back, then iteration ends.

        What was not submitted stays pending in the journal (the CLI's first Ctrl-C).
        """
        self._stopping = True
        self._producer_scope.cancel()

    async def __aenter__(self) -> Self:
        client = self._client
        if not client.waiting_enabled:
            raise ClientClosedError(
                "a bulk run needs the client's scheduler: use `async with Client() as client`"
            )
        arg = self._journal_arg
        if arg is not None and not isinstance(arg, Journal):
            self.journal = await anyio.to_thread.run_sync(Journal.open, arg)
            self._owns_journal = True
        else:
            self.journal = arg
        self._started_at = anyio.current_time()
        tg = anyio.create_task_group()
        await tg.__aenter__()
        tg.start_soon(self._run_workers)
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
                if not self._exhausted:
                    # Left early (break, error): stop everything. 4o submits already on
                    # the wire are shielded, so their job ids reach the journal.
                    self._stopping = True
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
                    raise inner from None
            return None
        finally:
            self._receive.close()
            if self._owns_journal and self.journal is not None:
                self.journal.close()

    def __aiter__(self) -> AsyncIterator[BulkOutcome]:
        return self

    async def __anext__(self) -> BulkOutcome:
        try:
            outcome = await self._receive.receive()
        except (anyio.EndOfStream, anyio.ClosedResourceError):
            self._exhausted = True
            if self._error is not None:
                raise self._error from None
            raise StopAsyncIteration from None
        self._window.release()
        return outcome

    # ------------------------------------------------------------------ workers

    async def _run_workers(self) -> None:
        with self._send:
            with self._work_scope:
                async with anyio.create_task_group() as work:
                    with self._producer_scope:
                        await self._produce(work)
            if self._paused is not None and self._error is None:
                self._error = BulkPausedError(self._paused)
                self._error.__cause__ = self._paused

    async def _inputs(self) -> AsyncIterator[Request]:
        requests = self._requests
        if isinstance(requests, AsyncIterable):
            async for request in requests:
                yield request
        else:
            for request in requests:
                yield request

    async def _produce(self, work: TaskGroup) -> None:
        journal = self.journal
        index = -1
        async for request in self._inputs():
            index += 1
            if not isinstance(
                request, GPT4oRequest | GenerateRequest | EditRequest | Dalle3Request
            ):
                raise ValidationError(
                    f"requests[{index}]",
                    type(request).__name__,
                    "a GPT4oRequest, GenerateRequest, EditRequest or Dalle3Request is required",
                )
            await self._window.acquire()
            job_id = None
            if journal is not None:
                entry = journal.add_pending(
                    index, fingerprint(request), request.kind, label(request)
                )
                state = entry.state
                finished = (
                    state is ItemState.DONE
                    or (state is ItemState.FAILED and not self._retry_failed)
                    or (state is ItemState.OUTCOME_UNKNOWN and not self._resubmit_unknown)
                )
                if finished:
                    self._deliver(
                        BulkOutcome(
                            index=index,
                            request=request,
                            state=state,
                            job_id=entry.job_id,
                            paths=tuple(Path(f) for f in entry.files),
                            resumed=True,
                            reason=entry.reason,
                        )
                    )
                    continue
                if state in {ItemState.FAILED, ItemState.OUTCOME_UNKNOWN}:
                    journal.reset(index)
                elif state is ItemState.SUBMITTED:
                    job_id = entry.job_id
            borrower = object()
            await self._slot_limiter.acquire_on_behalf_of(borrower)
            if self._paused is not None or self._stopping:
                self._slot_limiter.release_on_behalf_of(borrower)
                return
            work.start_soon(self._item, index, request, job_id, borrower)

    async def _item(
        self, index: int, request: Request, job_id: str | None, borrower: object
    ) -> None:
        start = anyio.current_time()
        slot = _Slot(self._slot_limiter, borrower)
        try:
            if isinstance(request, GPT4oRequest):
                outcome = await self._run_4o(index, request, job_id, slot, start)
            else:
                outcome = await self._run_sync(index, request, slot, start)
        finally:
            slot.release()
        if outcome is None:
            self._window.release()  # never started (paused or stopped): nothing to hand back
        else:
            self._deliver(outcome)

    async def _run_4o(
        self, index: int, request: GPT4oRequest, job_id: str | None, slot: _Slot, start: float
    ) -> BulkOutcome | None:
        client = self._client
        journal = self.journal
        resumed = job_id is not None
        if job_id is None:
            busy = 0
            while True:
                if self._paused is not None or self._stopping:
                    return None
                async with self._http:
                    if journal is not None:
                        journal.mark_submitting(index)
                    try:
                        # Shielded: once written, the submit's reply (the job id) must
                        # reach the journal even if the run is cancelled meanwhile.
                        with anyio.CancelScope(shield=True):
                            job = await client.gpt4o.submit(
                                prompt=request.prompt,
                                refer_images=list(request.refer_images) or None,
                                extra_body=request.extra_body,
                            )
                    except ACCOUNT_ERRORS as exc:
                        self._not_started(index)
                        self._pause(exc)
                        return None
                    except BUSY_ERRORS as exc:
                        self._not_started(index)
                        busy += 1
                        wait = self._on_busy(exc, busy, self._active)
                    except OutcomeUnknownError as exc:
                        return self._ended(index, request, ItemState.OUTCOME_UNKNOWN, start, exc)
                    except ClientClosedError:
                        raise
                    except TTAPIError as exc:
                        return self._ended(index, request, ItemState.FAILED, start, exc)
                    else:
                        if journal is not None:
                            journal.mark_submitted(
                                index, job.job_id, hooked=client.webhook is not None
                            )
                        job_id = job.job_id
                        self._counts["submitted"] += 1
                        break
                await anyio.sleep(wait)
        self._active += 1
        self._counts["running"] += 1
        self._report()
        try:
            result = await client.gpt4o.job(job_id).wait(timeout=self._wait_timeout)
        except JobFailedError as exc:
            return self._ended(index, request, ItemState.FAILED, start, exc, job_id=job_id)
        except JobTimeoutError as exc:
            # The job goes on; the journal keeps it submitted so a resumed run waits again.
            self._counts["failed"] += 1
            return BulkOutcome(
                index=index,
                request=request,
                state=ItemState.SUBMITTED,
                error=exc,
                job_id=job_id,
                elapsed=anyio.current_time() - start,
            )
        finally:
            self._active -= 1
            self._counts["running"] -= 1
        self._job_ended_well()
        slot.release()  # the job left TTAPI's queue; downloading needs no job slot
        return await self._finish(index, request, result, start, job_id, resumed=resumed)

    async def _run_sync(
        self,
        index: int,
        request: GenerateRequest | EditRequest | Dalle3Request,
        slot: _Slot,
        start: float,
    ) -> BulkOutcome | None:
        journal = self.journal
        busy = 0
        while True:
            if self._paused is not None or self._stopping:
                return None
            async with self._http:
                if journal is not None:
                    journal.mark_submitting(index)
                self._active += 1
                self._counts["running"] += 1
                self._report()
                try:
                    result = await self._call(request)
                except ACCOUNT_ERRORS as exc:
                    self._not_started(index)
                    self._pause(exc)
                    return None
                except BUSY_ERRORS as exc:
                    self._not_started(index)
                    busy += 1
                    wait = self._on_busy(exc, busy, self._active - 1)
                except OutcomeUnknownError as exc:
                    return self._ended(index, request, ItemState.OUTCOME_UNKNOWN, start, exc)
                except ClientClosedError:
                    raise
                except TTAPIError as exc:
                    return self._ended(index, request, ItemState.FAILED, start, exc)
                except BaseException:
                    # Cancelled mid-call: it may have been sent and billed.
                    if journal is not None:
                        journal.mark_unknown(index, "cancelled while the request was in flight")
                    raise
                else:
                    self._counts["submitted"] += 1
                    break
                finally:
                    self._active -= 1
                    self._counts["running"] -= 1
            await anyio.sleep(wait)
        self._job_ended_well()
        slot.release()
        return await self._finish(index, request, result, start, None)

    async def _call(self, request: GenerateRequest | EditRequest | Dalle3Request) -> ImagesResponse:
        client = self._client
        if isinstance(request, GenerateRequest):
            return await client.images.generate(
                prompt=request.prompt,
                model=request.model,
                n=request.n,
                size=request.size,
                quality=request.quality,
                response_format=request.response_format,
                style=request.style,
                background=request.background,
                moderation=request.moderation,
                output_format=request.output_format,
                output_compression=request.output_compression,
                user=request.user,
                extra_body=request.extra_body,
            )
        if isinstance(request, EditRequest):
            return await client.images.edit(
                image=list(request.image),
                prompt=request.prompt,
                mask=request.mask,
                model=request.model,
                n=request.n,
                size=request.size,
                quality=request.quality,
                response_format=request.response_format,
                background=request.background,
                output_format=request.output_format,
                output_compression=request.output_compression,
                user=request.user,
                extra_body=request.extra_body,
            )
        return await client.dalle3.generate(
            prompt=request.prompt,
            size=request.size,
            quality=request.quality,
            style=request.style,
            n=request.n,
            model=request.model,
            extra_body=request.extra_body,
        )

    async def _finish(
        self,
        index: int,
        request: Request,
        result: ImagesResponse | JobResult,
        start: float,
        job_id: str | None,
        *,
        resumed: bool = False,
    ) -> BulkOutcome:
        """Save the result's images (if asked), then record the item done."""
        files: tuple[SavedImage, ...] = ()
        paths: tuple[Path, ...] = ()
        stem = f"{index:05d}-{safe_stem(request.prompt)}"
        if self._save_to is not None and job_id is not None and resumed:
            # Killed after saving but before the journal said so: keep those files
            # rather than saving the same job twice.
            paths = await anyio.to_thread.run_sync(_saved_before, self._save_to, stem, job_id)
        if self._save_to is not None and not paths:
            metadata: dict[str, Any] = {
                "index": index,
                "kind": request.kind,
                "prompt": request.prompt,
                "model": "gpt-4o-image"
                if request.kind == "4o"
                else getattr(request, "model", None),
                "parameters": params(request),
                "job_id": job_id,
                "seconds_to_result": round(anyio.current_time() - start, 3),
            }
            try:
                async with self._downloads:
                    files = tuple(
                        await self._client.save(
                            result,
                            self._save_to,
                            stem=stem,
                            sidecar=self._sidecar,
                            metadata=metadata,
                            max_bytes=self._max_bytes,
                        )
                    )
            except ClientClosedError:
                raise
            except TTAPIError as exc:
                # Generated (and billed) but not saved: failed, with the job id kept.
                return self._ended(index, request, ItemState.FAILED, start, exc, job_id=job_id)
        paths = paths or tuple(f.path for f in files)
        if self.journal is not None:
            self.journal.mark_done(index, [str(p) for p in paths])
        self._counts["done"] += 1
        return BulkOutcome(
            index=index,
            request=request,
            state=ItemState.DONE,
            result=result,
            job_id=job_id,
            files=files,
            paths=paths,
            elapsed=anyio.current_time() - start,
        )

    # ------------------------------------------------------------------ bookkeeping

    def _ended(
        self,
        index: int,
        request: Request,
        state: ItemState,
        start: float,
        exc: TTAPIError,
        *,
        job_id: str | None = None,
    ) -> BulkOutcome:
        """Record an item that ended badly (failed or outcome unknown) and build its outcome."""
        journal = self.journal
        if state is ItemState.OUTCOME_UNKNOWN:
            self._counts["unknown"] += 1
            if journal is not None:
                journal.mark_unknown(index, str(exc))
        else:
            self._counts["failed"] += 1
            if journal is not None:
                journal.mark_failed(index, f"{type(exc).__name__}: {exc}")
        log.info("item %d %s: %s", index, state.value, exc)
        return BulkOutcome(
            index=index,
            request=request,
            state=state,
            error=exc,
            job_id=job_id,
            reason=str(exc),
            elapsed=anyio.current_time() - start,
        )

    def _not_started(self, index: int) -> None:
        # Refused before being accepted (429/499/401/402/403): back to pending.
        if self.journal is not None:
            self.journal.reset(index)

    def _pause(self, exc: TTAPIError) -> None:
        if self._paused is None:
            log.warning("bulk run paused: %s", exc)
            self._paused = exc
            self._producer_scope.cancel()
            self._report()

    def _on_busy(self, exc: QueueFullError | RateLimitError, attempt: int, running: int) -> float:
        """React to a 429/499 on a submit: maybe lower the cap; return the wait."""
        if isinstance(exc, QueueFullError):
            cap = self.slots.on_queue_full(running)
            self._slot_limiter.total_tokens = cap
            log.info("queue full (499) with %d running: job cap now %d", running, cap)
        self._report()
        return busy_backoff(attempt, exc.retry_after)

    def _job_ended_well(self) -> None:
        cap = self.slots.on_job_done()
        if cap != self._slot_limiter.total_tokens:
            self._slot_limiter.total_tokens = cap

    def _report(self) -> None:
        if self._on_progress is not None:
            self._on_progress(self.progress)

    def _deliver(self, outcome: BulkOutcome) -> None:
        """Hand an outcome to the caller (in input order if asked), then report progress."""
        if outcome.resumed:
            key = {
                ItemState.DONE: "skipped",
                ItemState.FAILED: "failed",
                ItemState.OUTCOME_UNKNOWN: "unknown",
            }[outcome.state]
            self._counts[key] += 1
        # The stream is unbounded: the window semaphore bounds what can be in it.
        if self._ordered:
            self._ready[outcome.index] = outcome
            while self._next_index in self._ready:
                self._send.send_nowait(self._ready.pop(self._next_index))
                self._next_index += 1
        else:
            self._send.send_nowait(outcome)
        self._report()
        if self._fail_fast and not outcome.ok and not outcome.resumed and self._error is None:
            self._error = outcome.error
            self._stopping = True
            self._work_scope.cancel()


def _saved_before(folder: Path, stem: str, job_id: str) -> tuple[Path, ...]:
    """Images an earlier run saved for ``job_id`` under ``stem`` (found by their sidecars)."""
    found = []
    for sidecar in sorted(folder.glob(f"{stem}*.json")):
        try:
            meta = json.loads(sidecar.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        image = sidecar.with_suffix("")  # "<image name>.json" -> the image
        if isinstance(meta, dict) and meta.get("job_id") == job_id and image.is_file():
            found.append(image)
    return tuple(found)


class _Slot:
    """A job slot held on behalf of one item; released once, whichever path ends first."""

    __slots__ = ("_borrower", "_limiter")

    def __init__(self, limiter: anyio.CapacityLimiter, borrower: object) -> None:
        self._limiter: anyio.CapacityLimiter | None = limiter
        self._borrower = borrower

    def release(self) -> None:
        if self._limiter is not None:
            self._limiter.release_on_behalf_of(self._borrower)
            self._limiter = None
