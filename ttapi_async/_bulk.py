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

import asyncio
import contextlib
import functools
import json
import logging
import math
import os
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
)
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, Self, TypeVar

import anyio
import attrs

from ._client import SEND_HOOK, SendHook
from ._downloads import part_prefix, tagged_parts
from ._errors import (
    AuthenticationError,
    BulkPausedError,
    ClientClosedError,
    ImageUnavailableError,
    InsufficientBalanceError,
    JobFailedError,
    JobNotFoundError,
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
from ._limits import SlotController, acquire_fast, busy_backoff
from ._models import ImagesResponse, JobResult, SavedImage
from ._requests import (
    Dalle3Request,
    EditRequest,
    GenerateRequest,
    GPT4oRequest,
    Request,
    call_params,
    fingerprint,
    label,
    params,
)
from ._types import NOT_GIVEN, Timeout


if TYPE_CHECKING:
    from anyio.abc import TaskGroup

    from ._client import Client

_T = TypeVar("_T")


__all__ = ["BulkOutcome", "BulkProgress", "BulkRun"]

log = logging.getLogger("ttapi_async.bulk")

#: Errors about the account, not the item: every remaining item would hit them too.
ACCOUNT_ERRORS: Final = (AuthenticationError, InsufficientBalanceError, PermissionDeniedError)
#: "Not now": the request was refused before it was accepted, so resubmitting is safe.
BUSY_ERRORS: Final = (QueueFullError, RateLimitError)
_REQUEST_TYPES: Final = (GPT4oRequest, GenerateRequest, EditRequest, Dalle3Request)
#: Journal states a resumed run hands back as they are (unless asked to retry them).
_FINISHED: Final = frozenset({ItemState.DONE, ItemState.FAILED, ItemState.OUTCOME_UNKNOWN})


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
        # Raised from the loop once the stream ends: fail-fast's error, the pause's, or an
        # error of the input iterable (after the items already started have finished).
        self._error: BaseException | None = None
        self._unsent: dict[int, anyio.CancelScope] = {}  # items waiting to send
        self._paused: TTAPIError | None = None
        self._stopping = False
        self._exhausted = False
        self._ready: dict[int, BulkOutcome | None] = {}  # None: never started
        self._next_index = 0
        self._active = 0  # jobs accepted and not ended, plus sync calls in flight
        self._started_at = 0.0
        self._counts = dict.fromkeys(
            ("submitted", "running", "done", "failed", "unknown", "timed_out", "skipped"), 0
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
            timed_out=c["timed_out"],
            skipped=c["skipped"],
            paused=self._paused is not None,
            jobs_cap=self.slots.current,
            elapsed=(asyncio.get_running_loop().time() - self._started_at)
            if self._started_at
            else 0.0,
        )

    def stop(self) -> None:
        """Stop submitting; items in flight finish and are handed back, then iteration ends.

        What was not submitted stays pending in the journal (the CLI's first Ctrl-C).
        """
        self._stopping = True
        self._producer_scope.cancel()
        self._cancel_unsent()

    def _cancel_unsent(self) -> None:
        # Items queued for the budget or an HTTP slot give up; sent ones run on.
        for scope in self._unsent.values():
            scope.cancel()

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
        run_id = self.journal.run_id if self.journal is not None else None
        if run_id is not None and self._save_to is not None:
            # A run killed mid-download leaves its temporary files, tagged with the
            # journal's run id; the journal's lock says no other run of this journal is
            # saving into the folder now. Other saves' files carry no such tag.
            await anyio.to_thread.run_sync(_sweep_parts, self._save_to, run_id)
        self._started_at = asyncio.get_running_loop().time()
        tg = anyio.create_task_group()
        await tg.__aenter__()
        with tagged_parts(run_id):  # the workers' saves inherit the tag
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
                    raise inner from inner.__cause__
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
                # Its own cause (a pause's account error), not the stream's end.
                raise self._error from self._error.__cause__
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

    async def _inputs(self) -> AsyncGenerator[Request, None]:
        requests = self._requests
        if isinstance(requests, AsyncIterable):
            iterator = aiter(requests)
            try:
                async for request in iterator:
                    yield request
            finally:
                # Closing this generator does not close the caller's iterator: do it.
                aclose = getattr(iterator, "aclose", None)
                if aclose is not None:
                    await aclose()
        else:
            for request in requests:
                yield request

    async def _produce(self, work: TaskGroup) -> None:
        """Start one task per input as the window, a job slot and no pause allow."""
        index = -1
        # aclosing: the caller's async iterator is closed however the run ends.
        async with contextlib.aclosing(self._inputs()) as inputs:
            while True:
                try:
                    request = await anext(inputs)
                except StopAsyncIteration:
                    return
                except Exception as exc:  # noqa: BLE001 - the caller's iterable failed
                    # Like stop(): what started finishes and is handed back, then it raises.
                    self._input_failed(exc)
                    return
                index += 1
                item: object = request  # typed, but callers may pass anything
                if not isinstance(item, _REQUEST_TYPES):
                    self._input_failed(
                        ValidationError(
                            f"requests[{index}]",
                            type(request).__name__,
                            "a GPT4oRequest, GenerateRequest, EditRequest or Dalle3Request "
                            "is required",
                        )
                    )
                    return
                await acquire_fast(self._window)
                start = self._resume_point(index, request)
                if start is None:
                    continue  # handed back from the journal
                job_id, retrying = start
                borrower = object()
                try:  # as acquire_fast: no extra turn of the loop when a slot is free
                    self._slot_limiter.acquire_on_behalf_of_nowait(borrower)
                except anyio.WouldBlock:
                    await self._slot_limiter.acquire_on_behalf_of(borrower)
                if self._paused is not None or self._stopping:
                    self._slot_limiter.release_on_behalf_of(borrower)
                    return
                work.start_soon(self._item, index, request, job_id, retrying, borrower)

    def _input_failed(self, exc: BaseException) -> None:
        if self._error is None:
            self._error = exc
        self._stopping = True
        self._cancel_unsent()

    def _resume_point(self, index: int, request: Request) -> tuple[str | None, bool] | None:
        """Where input ``index`` starts: ``(job id to wait on, retrying)``, or None if done.

        Without a journal every item starts afresh. With one, finished items are handed
        back as they were (unless asked to retry them) and submitted jobs are waited on.
        """
        journal = self.journal
        if journal is None:
            return None, False
        entry = journal.add_pending(index, fingerprint(request), request.kind, label(request))
        state = entry.state
        retrying = (state is ItemState.FAILED and self._retry_failed) or (
            state is ItemState.OUTCOME_UNKNOWN and self._resubmit_unknown
        )
        if state in _FINISHED and not retrying:
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
            return None
        if state is ItemState.SUBMITTED and entry.job_id:
            return entry.job_id, False
        if state is ItemState.FAILED and entry.job_id and isinstance(request, GPT4oRequest):
            # A job that may have succeeded (its image was not saved): look again before
            # paying for a new one.
            return entry.job_id, True
        if state is not ItemState.PENDING:
            journal.reset(index)
        return None, False

    async def _item(
        self, index: int, request: Request, job_id: str | None, retrying: bool, borrower: object
    ) -> None:
        start = asyncio.get_running_loop().time()
        slot = _Slot(self._slot_limiter, borrower)
        try:
            if isinstance(request, GPT4oRequest):
                outcome = await self._run_4o(index, request, job_id, retrying, slot, start)
            else:
                outcome = await self._run_sync(index, request, slot, start)
        finally:
            slot.release()
        if outcome is None:
            self._skip(index)  # never sent (stopped or paused): nothing to hand back
        else:
            self._deliver(outcome)

    async def _send_call(
        self, attempt: _Attempt, call: Callable[[], Awaitable[_T]], *, shield: bool
    ) -> _T | None:
        """Run one billable call under the HTTP cap; None if the run stopped before it was sent.

        The send hook writes ``submitting`` right before the request goes out (after the
        budget and the HTTP slot), and refuses to send once the run stops or pauses.
        """
        self._unsent[attempt.index] = attempt.scope
        token = SEND_HOOK.set(SendHook(attempt.before_send, shield=shield))
        result: _T | None = None
        try:
            # Cancelled by stop() or a pause only while waiting to send: then None.
            with attempt.scope:
                await acquire_fast(self._http)
                try:
                    if self._paused is None and not self._stopping:
                        result = await call()
                finally:
                    self._http.release()
        except _NotSent:
            if attempt.sent:
                # The client was about to retry an attempt that was refused (429/499) or
                # never written; the run stops instead. Not accepted, so pending again:
                # unless the client retries calls that may have been accepted.
                self._leave_running(attempt)
                if self._client.retry.retry_unknown_outcome:
                    if self.journal is not None:
                        self.journal.mark_unknown(
                            attempt.index, "stopped while retrying a request that was sent"
                        )
                else:
                    self._not_started(attempt.index)
            return None
        finally:
            SEND_HOOK.reset(token)
            self._unsent.pop(attempt.index, None)
        return result

    async def _run_4o(
        self,
        index: int,
        request: GPT4oRequest,
        job_id: str | None,
        retrying: bool,
        slot: _Slot,
        start: float,
    ) -> BulkOutcome | None:
        resumed = job_id is not None
        if job_id is not None:
            self._enter_running()
            try:
                result = await self._wait_job(job_id, fetch_first=True)
            except (JobFailedError, JobNotFoundError) as exc:
                if not retrying:
                    return self._ended(index, request, ItemState.FAILED, start, exc, job_id=job_id)
                job_id = None  # failed at TTAPI, or unknown there: a new job, as asked
                self._not_started(index)
            except JobTimeoutError as exc:
                return self._ended(index, request, ItemState.SUBMITTED, start, exc, job_id=job_id)
            finally:
                self._leave_running()
            if job_id is not None:
                slot.release()  # the job left TTAPI's queue; saving needs no job slot
                try:
                    return await self._finish(
                        index, request, result, start, job_id, resumed=resumed, retrying=retrying
                    )
                except ImageUnavailableError:
                    job_id = None  # its image expired: a new job, as asked
                    self._not_started(index)
        submitted = await self._submit_4o(index, request, start)
        if not isinstance(submitted, str):
            return submitted
        job_id = submitted
        try:
            result = await self._wait_job(job_id)
        except (JobFailedError, JobNotFoundError) as exc:
            return self._ended(index, request, ItemState.FAILED, start, exc, job_id=job_id)
        except JobTimeoutError as exc:
            return self._ended(index, request, ItemState.SUBMITTED, start, exc, job_id=job_id)
        finally:
            self._leave_running()
        self._job_ended_well()
        slot.release()
        return await self._finish(index, request, result, start, job_id)

    async def _submit_4o(
        self, index: int, request: GPT4oRequest, start: float
    ) -> str | BulkOutcome | None:
        """Submit until accepted: the job id, the item's end, or None (stopped first).

        On success the item counts as running (left by the caller after its wait).
        """
        client = self._client
        busy = 0
        while True:
            attempt = _Attempt(self, index)
            try:
                # Shielded send: once written, the reply (the job id) reaches the journal
                # even if the run is cancelled meanwhile.
                job = await self._send_call(
                    attempt,
                    lambda: client.gpt4o.submit(
                        prompt=request.prompt,
                        refer_images=list(request.refer_images) or None,
                        extra_body=request.extra_body,
                    ),
                    shield=True,
                )
            except ACCOUNT_ERRORS as exc:
                self._leave_running(attempt)
                self._not_started(index)
                self._pause(exc)
                return None
            except BUSY_ERRORS as exc:
                self._leave_running(attempt)
                self._not_started(index)
                busy += 1
                wait = self._on_busy(exc, busy, self._active)
            except OutcomeUnknownError as exc:
                self._leave_running(attempt)
                return self._ended(index, request, ItemState.OUTCOME_UNKNOWN, start, exc)
            except ClientClosedError:
                raise
            except TTAPIError as exc:
                self._leave_running(attempt)
                return self._ended(index, request, ItemState.FAILED, start, exc)
            else:
                if job is None:
                    self._leave_running(attempt)
                    return None
                if self.journal is not None:
                    self.journal.mark_submitted(
                        index, job.job_id, hooked=client.webhook is not None
                    )
                self._counts["submitted"] += 1
                self._report()
                return job.job_id
            await anyio.sleep(wait)

    async def _wait_job(self, job_id: str, *, fetch_first: bool = False) -> JobResult:
        """Wait for a job's end; a job TTAPI does not know raises JobNotFoundError."""
        client = self._client
        if fetch_first:
            # A job from an earlier run may be unknown here (another account or host, or
            # forgotten): one fetch says so at once instead of polling until the timeout.
            try:
                await client.gpt4o.fetch(job_id)
            except JobNotFoundError:
                raise
            except TTAPIError as exc:  # passing: the wait polls anyway
                log.debug("job %s: first fetch failed (%s); waiting anyway", job_id, exc)
        try:
            return await client.gpt4o.job(job_id).wait(timeout=self._wait_timeout)
        except JobTimeoutError as exc:
            if isinstance(exc.last_error, JobNotFoundError):
                raise exc.last_error from exc
            raise

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
            attempt = _Attempt(self, index)
            try:
                result = await self._send_call(attempt, lambda: self._call(request), shield=False)
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
                # Cancelled: once sent, it may have been accepted and billed.
                if attempt.sent and journal is not None:
                    journal.mark_unknown(index, "cancelled while the request was in flight")
                raise
            else:
                if result is None:
                    return None
                self._counts["submitted"] += 1
                break
            finally:
                self._leave_running(attempt)
            await anyio.sleep(wait)
        self._job_ended_well()
        slot.release()
        return await self._finish(index, request, result, start, None)

    async def _call(self, request: GenerateRequest | EditRequest | Dalle3Request) -> ImagesResponse:
        client = self._client
        kwargs = call_params(request)  # the request's fields are the call's keywords
        if isinstance(request, GenerateRequest):
            return await client.images.generate(**kwargs, extra_body=request.extra_body)
        if isinstance(request, EditRequest):
            return await client.images.edit(
                image=list(request.image),
                mask=request.mask,
                **kwargs,
                extra_body=request.extra_body,
            )
        return await client.dalle3.generate(**kwargs, extra_body=request.extra_body)

    async def _finish(
        self,
        index: int,
        request: Request,
        result: ImagesResponse | JobResult,
        start: float,
        job_id: str | None,
        *,
        resumed: bool = False,
        retrying: bool = False,
    ) -> BulkOutcome:
        """Save the result's images (if asked), then record the item done.

        With ``retrying``, an expired image raises :class:`ImageUnavailableError` so the
        caller can submit a new job instead.
        """
        files: tuple[SavedImage, ...] = ()
        paths: tuple[Path, ...] = ()
        stem = f"{index:05d}-{safe_stem(request.prompt)}"
        if self._save_to is not None and job_id is not None and resumed:
            # Killed after saving but before the journal said so: keep those files
            # rather than saving the same job twice.
            paths, unfinished = await anyio.to_thread.run_sync(
                functools.partial(_saved_before, self._save_to, stem, job_id, sidecar=self._sidecar)
            )
        else:
            unfinished = ()
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
                "seconds_to_result": round(asyncio.get_running_loop().time() - start, 3),
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
            except (TTAPIError, OSError) as exc:
                if retrying and isinstance(exc, ImageUnavailableError):
                    raise
                # Generated (and billed) but not saved: failed, with the job id kept.
                return self._ended(index, request, ItemState.FAILED, start, exc, job_id=job_id)
            except BaseException:
                if job_id is None and self.journal is not None:
                    # A sync result that was received but not saved: it cannot be fetched
                    # again. (A 4o job stays submitted: a resumed run saves it.)
                    self.journal.mark_failed(index, "cancelled before the result was saved")
                raise
        if unfinished and (files or paths):
            # A whole copy exists (kept, or saved again): the one whose sidecar never got
            # written can go.
            for leftover in unfinished:
                leftover.unlink(missing_ok=True)
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
            elapsed=asyncio.get_running_loop().time() - start,
        )

    # ------------------------------------------------------------------ bookkeeping

    def _enter_running(self) -> None:
        self._active += 1
        self._counts["running"] += 1
        self._report()

    def _leave_running(self, attempt: _Attempt | None = None) -> None:
        """One job or call fewer in flight (for an attempt: once, and only if it was sent)."""
        if attempt is not None:
            if not attempt.running:
                return
            attempt.running = False
        self._active -= 1
        self._counts["running"] -= 1

    def _ended(
        self,
        index: int,
        request: Request,
        state: ItemState,
        start: float,
        exc: TTAPIError | OSError,
        *,
        job_id: str | None = None,
    ) -> BulkOutcome:
        """Record an item that ended badly and build its outcome.

        ``state`` is ``failed``, ``outcome_unknown``, or ``submitted`` for a 4o wait that
        timed out: the job goes on, and the journal keeps it submitted so a resumed run
        waits again.
        """
        journal = self.journal
        reason = f"{type(exc).__name__}: {exc}"
        if state is ItemState.SUBMITTED:
            self._counts["timed_out"] += 1
        elif state is ItemState.OUTCOME_UNKNOWN:
            self._counts["unknown"] += 1
            if journal is not None:
                journal.mark_unknown(index, reason)
        else:
            self._counts["failed"] += 1
            if journal is not None:
                journal.mark_failed(index, reason)
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

    def _not_started(self, index: int) -> None:
        # Refused before being accepted (429/499/401/402/403) or never sent: pending again.
        if self.journal is not None:
            self.journal.reset(index)

    def _pause(self, exc: TTAPIError) -> None:
        if self._paused is None:
            log.warning("bulk run paused: %s", exc)
            self._paused = exc
            self._producer_scope.cancel()
            self._cancel_unsent()
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
            try:
                self._on_progress(self.progress)
            except Exception:
                # A display bug must not abandon billed work: log it and go on.
                log.exception("on_progress raised; the run goes on")

    def _deliver(self, outcome: BulkOutcome) -> None:
        """Hand an outcome to the caller (in input order if asked), then report progress."""
        if outcome.resumed:
            key = {
                ItemState.DONE: "skipped",
                ItemState.FAILED: "failed",
                ItemState.OUTCOME_UNKNOWN: "unknown",
            }[outcome.state]
            self._counts[key] += 1
        self._put(outcome.index, outcome)
        self._report()
        if self._fail_fast and not outcome.ok and not outcome.resumed and self._error is None:
            self._error = outcome.error
            self._stopping = True
            self._work_scope.cancel()

    def _skip(self, index: int) -> None:
        """An item that was never sent: free its window place and keep the order moving."""
        self._window.release()
        if self._ordered:
            self._put(index, None)

    def _put(self, index: int, outcome: BulkOutcome | None) -> None:
        # The stream is unbounded: the window semaphore bounds what can be in it.
        if not self._ordered:
            if outcome is not None:
                self._send.send_nowait(outcome)
            return
        self._ready[index] = outcome
        while self._next_index in self._ready:
            ready = self._ready.pop(self._next_index)
            self._next_index += 1
            if ready is not None:
                self._send.send_nowait(ready)


class _NotSent(Exception):  # noqa: N818 - a signal, not an error anyone sees
    """Raised by the send hook to abort a call before it is sent (the run stops)."""


class _Attempt:
    """One attempt of an item to send its billable request; the send hook's target."""

    __slots__ = ("_run", "index", "running", "scope", "sent")

    def __init__(self, run: BulkRun, index: int) -> None:
        self._run = run
        self.index = index
        self.scope = anyio.CancelScope()  # stop() and pauses cancel it until it is sent
        self.sent = False
        self.running = False  # counted in the run's "running" until _leave_running

    def before_send(self) -> None:
        run = self._run
        if run._stopping or run._paused is not None:  # noqa: SLF001
            raise _NotSent
        if not self.sent:
            self.sent = True
            self.running = True
            run._unsent.pop(self.index, None)  # noqa: SLF001 - sent: no longer cancellable
            run._enter_running()  # noqa: SLF001
        if run.journal is not None:
            run.journal.mark_submitting(self.index)


def _sweep_parts(folder: Path, run_id: str) -> None:
    """Remove the temporary files an earlier (killed) run of journal ``run_id`` left.

    Only ``.part-<run id>-*``: a ``client.save()`` streaming into the same folder, or a
    run of another journal, names its files otherwise. Best effort: a leftover that
    cannot be removed is only clutter.
    """
    for part in folder.glob(f"{part_prefix(run_id)}*"):
        with contextlib.suppress(OSError):
            part.unlink(missing_ok=True)


def _saved_before(
    folder: Path, stem: str, job_id: str, *, sidecar: bool
) -> tuple[tuple[Path, ...], tuple[Path, ...]]:
    """Images an earlier run of this journal saved under the item's ``stem``: (kept, unfinished).

    The stem (input index + prompt slug and hash) is the item's own and the journal's lock
    says no other run is saving here, so an image under it came from this item. Without
    sidecars, every such image is kept. With them, an image whose sidecar names the job is
    kept; an image with no sidecar is *unfinished* (the process died between placing it and
    writing its sidecar, or an earlier run saved without sidecars): the caller saves the
    job again and removes it only once that worked, so no image is doubled nor lost.
    """
    images = sorted(p for p in folder.glob(f"{stem}-*") if p.suffix != ".json" and p.is_file())
    if not sidecar:
        return tuple(images), ()
    kept, unfinished = [], []
    for image in images:
        side = image.with_name(image.name + ".json")
        try:
            meta = json.loads(side.read_text(encoding="utf-8"))
        except FileNotFoundError:
            unfinished.append(image)
            continue
        except (OSError, ValueError):
            continue
        if isinstance(meta, dict) and meta.get("job_id") == job_id:
            kept.append(image)
    return tuple(kept), tuple(unfinished)


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
