"""A bulk item's lifecycle, from its start to its outcome.

Strictly private. A 4o item submits a job (until TTAPI accepts it), waits for its end,
then saves its image; a sync item (generate, edit, DALL-E 3) makes its call, then saves
its images. Both send their billable request the same way (:meth:`ItemRunner._accepted`):
whatever the call raises is sorted by one pure rule, :func:`classify`, into what the run
does about it.

Every state change is written to the journal first (:class:`~ttapi_async._outcomes.Ledger`),
``submitting`` right before the request goes out (the send hook).
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Final, TypeVar

import anyio

from ._admission import NOT_SENT, Admission, NotSent, Slot
from ._errors import (
    AuthenticationError,
    ClaimLostError,
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
)
from ._finish import Finisher
from ._jobs import GPT, GPT4o, Job
from ._journalstore import ItemState
from ._models import ImagesResponse, JobResult
from ._outcomes import BulkOutcome, Delivery, Ledger
from ._requests import (
    Dalle3Request,
    EditRequest,
    GenerateRequest,
    GPT4oRequest,
    GPTRequest,
    JobRequest,
    Request,
    call_params,
)
from ._resources import Dalle3, Images
from ._resume import Start, resume_point
from ._sender import Sender
from ._types import Timeout
from ._waiter import JobWaiter


if TYPE_CHECKING:
    from ._webhook import WebhookReceiver


__all__ = [
    "ACCOUNT_ERRORS",
    "BUSY_ERRORS",
    "ItemRunner",
    "Submitter",
    "Verdict",
    "call_sync",
    "classify",
]

log = logging.getLogger("ttapi_async.bulk")

_T = TypeVar("_T")

#: Errors about the account, not the item: every remaining item would hit them too.
ACCOUNT_ERRORS: Final = (AuthenticationError, InsufficientBalanceError, PermissionDeniedError)
#: "Not now": the request was refused before it was accepted, so resubmitting is safe.
BUSY_ERRORS: Final = (QueueFullError, RateLimitError)


class Verdict(enum.Enum):
    """What a bulk run does about an error of an item's billable call."""

    PAUSE = "pause"
    """An account error: the item goes back to pending and the run pauses."""
    BUSY = "busy"
    """Refused before it was accepted (429/499): pending again, resubmitted after a wait."""
    UNKNOWN = "unknown"
    """It may have been accepted (and billed): the item ends ``outcome_unknown``."""
    FAILED = "failed"
    """A definite error of this item: it ends ``failed``; the run goes on."""
    CLOSED = "closed"
    """The client was closed under the run: the error is raised."""


def classify(exc: TTAPIError) -> Verdict:
    """The :class:`Verdict` on ``exc``, raised by an item's submit or sync call."""
    if isinstance(exc, ACCOUNT_ERRORS):
        return Verdict.PAUSE
    if isinstance(exc, BUSY_ERRORS):
        return Verdict.BUSY
    if isinstance(exc, OutcomeUnknownError):
        return Verdict.UNKNOWN
    if isinstance(exc, ClientClosedError):
        return Verdict.CLOSED
    return Verdict.FAILED


async def call_sync(
    sender: Sender, request: GenerateRequest | EditRequest | Dalle3Request
) -> ImagesResponse:
    """The synchronous call of ``request``, sent through ``sender``."""
    kwargs = call_params(request)  # the request's fields are the call's keywords
    if isinstance(request, GenerateRequest):
        result: ImagesResponse = await Images(sender).generate(
            **kwargs, extra_body=request.extra_body
        )
        return result
    if isinstance(request, EditRequest):
        edited: ImagesResponse = await Images(sender).edit(
            image=list(request.image),
            mask=request.mask,
            **kwargs,
            extra_body=request.extra_body,
        )
        return edited
    return await Dalle3(sender).generate(**kwargs, extra_body=request.extra_body)


async def _submit_job(jobs: GPT4o | GPT, request: JobRequest) -> Job:
    """Submit ``request`` on its route."""
    refs = list(request.refer_images) or None
    if isinstance(request, GPTRequest):
        assert isinstance(jobs, GPT)  # noqa: S101 - _jobs picks the route by the request
        return await jobs.submit(
            prompt=request.prompt,
            model=request.model,
            aspect_ratio=request.aspect_ratio,
            size=request.size,
            refer_images=refs,
            extra_body=request.extra_body,
        )
    return await jobs.submit(
        prompt=request.prompt, refer_images=refs, extra_body=request.extra_body
    )


def _nowhere(index: int, request: Request) -> None:
    """Items other workers hold go nowhere, without a shared journal."""


#: The state an item ends in, by verdict (the others do not end it).
_ENDS: Final = {Verdict.FAILED: ItemState.FAILED, Verdict.UNKNOWN: ItemState.OUTCOME_UNKNOWN}


class _Attempt:
    """One attempt of an item to send its billable request."""

    __slots__ = ("running", "sent")

    def __init__(self) -> None:
        self.sent = False  # the send hook ran: it may have reached TTAPI
        self.running = False  # counted in the run's "running" until it leaves


class Submitter:
    """Sends an item's billable request until TTAPI accepts it, as the run's state allows.

    Both lifecycles send this way; :func:`classify` sorts what the call raises.

    Args:
        sender: the send path (its retry policy says whether a stop may leave doubt).
        admission: the run's limits: sends, pauses, 499s.
        ledger: the run's counts and journal.
    """

    __slots__ = ("_admission", "_ledger", "_sender")

    def __init__(self, sender: Sender, admission: Admission, ledger: Ledger) -> None:
        self._sender = sender
        self._admission = admission
        self._ledger = ledger

    async def until_accepted(
        self,
        index: int,
        request: Request,
        began: float,
        call: Callable[[Sender], Awaitable[_T]],
        *,
        sync: bool,
    ) -> _T | BulkOutcome | None:
        """Send ``call`` until TTAPI accepts it: its result, the item's end, or None.

        None: never sent, as the run stopped or paused first. A 4o submit (``sync``
        False) is sent shielded and stays running once accepted (its wait leaves); a sync
        call stops running once answered, and one cancelled after it was sent ends
        ``outcome_unknown`` (it may have been billed).
        """
        ledger = self._ledger
        busy = 0
        while True:
            attempt = _Attempt()
            try:
                result = await self._send(index, attempt, call, shield=not sync)
            except ClaimLostError:
                self._leave(attempt)
                raise
            except TTAPIError as exc:
                self._leave(attempt)
                verdict = classify(exc)
                if verdict is Verdict.CLOSED:
                    raise
                if verdict is Verdict.PAUSE:
                    await ledger.not_started(index)
                    self._admission.pause(exc)
                    return None
                if verdict is not Verdict.BUSY:  # the item ends here
                    return await ledger.ended(index, request, _ENDS[verdict], began, exc)
                await ledger.not_started(index)
                busy += 1
                wait = self._admission.on_busy(exc, busy, ledger.running)
            except BaseException:
                if sync:
                    if attempt.sent:
                        # Cancelled: once sent, it may have been accepted and billed.
                        reason = "cancelled while the request was in flight"
                        await ledger.write(
                            index, ItemState.OUTCOME_UNKNOWN, reason=reason, shield=True
                        )
                    self._leave(attempt)
                raise
            else:
                if sync or isinstance(result, NotSent):
                    self._leave(attempt)
                return None if isinstance(result, NotSent) else result
            await anyio.sleep(wait)

    async def _send(
        self,
        index: int,
        attempt: _Attempt,
        call: Callable[[Sender], Awaitable[_T]],
        *,
        shield: bool,
    ) -> _T | NotSent:
        """One attempt through the run's admission; :data:`NOT_SENT` if the run stopped."""
        ledger = self._ledger

        async def on_send() -> None:  # the send hook: right before each attempt goes out
            if not attempt.sent:
                attempt.sent = attempt.running = True
                ledger.enter_running()
            # Shielded: once the request is about to go, its row must say so.
            await ledger.write(index, ItemState.SUBMITTING, shield=True)

        result = await self._admission.send(index, call, shield=shield, on_send=on_send)
        if result is NOT_SENT and attempt.sent:
            # The client was about to retry an attempt that was refused (429/499) or
            # never written; the run stops instead. Not accepted, so pending again:
            # unless the client retries calls that may have been accepted.
            self._leave(attempt)
            if self._sender.retry.retry_unknown_outcome:
                reason = "stopped while retrying a request that was sent"
                await ledger.write(index, ItemState.OUTCOME_UNKNOWN, reason=reason)
            else:
                await ledger.not_started(index)
        return result

    def _leave(self, attempt: _Attempt) -> None:
        """The attempt is no longer in flight (once, and only if it was sent)."""
        if attempt.running:
            attempt.running = False
            self._ledger.leave_running()


class ItemRunner:
    """Runs the items of one bulk run, each from its start to its outcome.

    Args:
        sender: the send path (its hooked views send the billable calls).
        waiter: waits for 4o jobs.
        webhook: the receiver 4o submits name as their hook (None: polling).
        admission: the run's limits: sends, pauses, 499s, the job cap.
        ledger: the run's counts and journal.
        delivery: hands the outcomes to the caller.
        finisher: saves results and records items done.
        wait_timeout: bound of each 4o wait.
        retry_failed, resubmit_unknown: what a resumed run runs again.
    """

    __slots__ = (
        "_admission",
        "_delivery",
        "_finisher",
        "_ledger",
        "_resubmit_unknown",
        "_retry_failed",
        "_sender",
        "_submitter",
        "_wait_timeout",
        "_waiter",
        "_webhook",
        "elsewhere",
    )

    def __init__(
        self,
        sender: Sender,
        waiter: JobWaiter,
        webhook: WebhookReceiver | None,
        admission: Admission,
        ledger: Ledger,
        delivery: Delivery,
        finisher: Finisher,
        *,
        wait_timeout: Timeout,
        retry_failed: bool,
        resubmit_unknown: bool,
    ) -> None:
        self._sender = sender
        self._waiter = waiter
        self._webhook = webhook
        self._admission = admission
        self._ledger = ledger
        self._delivery = delivery
        self._finisher = finisher
        self._wait_timeout = wait_timeout
        self._retry_failed = retry_failed
        self._resubmit_unknown = resubmit_unknown
        self._submitter = Submitter(sender, admission, ledger)
        #: Told of items another worker of a shared run holds (see ``_takeover``).
        self.elsewhere: Callable[[int, Request], None] = _nowhere

    # ------------------------------------------------------------------ start and end

    async def prepare(self, index: int, request: Request) -> Start | None:
        """Where input ``index`` starts; None if it needs no task.

        An item an earlier run finished is handed back as it is; an item another worker
        of a shared journal holds is left to it.
        """
        point = await self._claim(index, request)
        if point is None:
            self._delivery.skip(index)
            self.elsewhere(index, request)
            return None
        if isinstance(point, Start):
            return point
        self._delivery.deliver(point)
        return None

    async def take_over(self, index: int, request: Request) -> Start | None:
        """Claim an item another worker held; where it resumes here.

        None: still held (its worker is alive), or it needs nothing more: it ended, and
        its outcome is the run's (in the journal), not this worker's to hand back.
        """
        point = await self._claim(index, request)
        return point if isinstance(point, Start) else None

    async def _claim(self, index: int, request: Request) -> Start | BulkOutcome | None:
        """Claim the item; where it resumes, or its outcome if it ended (claim let go).

        None: another worker holds it.
        """
        ledger = self._ledger
        if not await ledger.claim(index):
            return None
        try:
            point = await resume_point(
                ledger.journal,
                index,
                request,
                retry_failed=self._retry_failed,
                resubmit_unknown=self._resubmit_unknown,
            )
        except BaseException:
            await ledger.release(index)
            raise
        if not isinstance(point, Start):
            await ledger.release(index)
        return point

    async def run(self, index: int, request: Request, start: Start, slot: Slot) -> None:
        """Run one item (its own task) and hand its outcome back."""
        began = asyncio.get_running_loop().time()
        try:
            try:
                try:
                    if isinstance(request, GPT4oRequest | GPTRequest):
                        outcome = await self._run_job(index, request, start, slot, began)
                    else:
                        outcome = await self._run_sync(index, request, slot, began)
                finally:
                    slot.release()
            except ClaimLostError:
                # A shared run's item this worker no longer holds (it stalled past its
                # lease): nothing was written or sent since; it is the new holder's.
                log.warning("item %d: claim lost; left to the worker that holds it", index)
                self._delivery.skip(index)
                self.elsewhere(index, request)
                return
            if outcome is None:
                self._delivery.skip(index)  # never sent (stopped or paused): nothing to hand back
            else:
                self._delivery.deliver(outcome)
        finally:
            await self._ledger.release(index)

    # ------------------------------------------------------------------ lifecycles

    async def _run_job(
        self, index: int, request: JobRequest, start: Start, slot: Slot, began: float
    ) -> BulkOutcome | None:
        if start.job_id is not None:
            outcome = await self._resume_job(index, request, start, slot, began, start.job_id)
            if outcome is not None:
                return outcome
        ledger = self._ledger
        # Sent shielded (not sync): once written, the reply (the job id) reaches the
        # journal even if the run is cancelled meanwhile.
        job = await self._submitter.until_accepted(
            index,
            request,
            began,
            lambda sender: _submit_job(self._jobs(sender, request), request),
            sync=False,
        )
        if job is None or isinstance(job, BulkOutcome):
            return job
        job_id = job.job_id
        hooked = self._webhook is not None
        await ledger.write(index, ItemState.SUBMITTED, job_id=job_id, hooked=hooked, shield=True)
        ledger.submitted += 1
        ledger.report()
        # Accepted: the job runs (and holds its slot) until its wait ends.
        try:
            result = await self._wait_job(job_id, request)
        except (JobFailedError, JobNotFoundError) as exc:
            return await ledger.ended(index, request, ItemState.FAILED, began, exc, job_id=job_id)
        except JobTimeoutError as exc:
            return await ledger.ended(
                index, request, ItemState.SUBMITTED, began, exc, job_id=job_id
            )
        finally:
            ledger.leave_running()
        self._admission.job_ended_well()
        slot.release()
        return await self._finisher.finish(index, request, result, began, job_id)

    async def _resume_job(
        self,
        index: int,
        request: JobRequest,
        start: Start,
        slot: Slot,
        began: float,
        job_id: str,
    ) -> BulkOutcome | None:
        """Wait again on ``job_id``, submitted by an earlier run; None: submit a new job."""
        ledger = self._ledger
        ledger.enter_running()
        try:
            result = await self._wait_job(job_id, request, fetch_first=True)
        except (JobFailedError, JobNotFoundError) as exc:
            if not start.retrying:
                return await ledger.ended(
                    index, request, ItemState.FAILED, began, exc, job_id=job_id
                )
            await ledger.not_started(index)  # failed at TTAPI, or unknown there: a new job
            return None
        except JobTimeoutError as exc:
            return await ledger.ended(
                index, request, ItemState.SUBMITTED, began, exc, job_id=job_id
            )
        finally:
            ledger.leave_running()
        slot.release()  # the job left TTAPI's queue; saving needs no job slot
        try:
            return await self._finisher.finish(
                index, request, result, began, job_id, resumed=True, retrying=start.retrying
            )
        except ImageUnavailableError:
            await ledger.not_started(index)  # its image expired: a new job, as asked
            return None

    async def _run_sync(
        self,
        index: int,
        request: GenerateRequest | EditRequest | Dalle3Request,
        slot: Slot,
        began: float,
    ) -> BulkOutcome | None:
        result = await self._submitter.until_accepted(
            index, request, began, lambda sender: call_sync(sender, request), sync=True
        )
        if result is None or isinstance(result, BulkOutcome):
            return result
        self._ledger.submitted += 1
        self._admission.job_ended_well()
        slot.release()
        return await self._finisher.finish(index, request, result, began, None)

    def _jobs(self, sender: Sender, request: JobRequest) -> GPT4o | GPT:
        """The job route of ``request`` (its kind, as the journal records it)."""
        cls = GPT if isinstance(request, GPTRequest) else GPT4o
        return cls(sender, self._waiter, self._webhook)

    async def _wait_job(
        self, job_id: str, request: JobRequest, *, fetch_first: bool = False
    ) -> JobResult:
        """Wait for a job's end; a job TTAPI does not know raises JobNotFoundError."""
        jobs = self._jobs(self._sender, request)
        if fetch_first:
            # A job from an earlier run may be unknown here (another account or host, or
            # forgotten): one fetch says so at once instead of polling until the timeout.
            try:
                await jobs.fetch(job_id)
            except JobNotFoundError:
                raise
            except TTAPIError as exc:  # passing: the wait polls anyway
                log.debug("job %s: first fetch failed (%s); waiting anyway", job_id, exc)
        try:
            return await jobs.job(job_id).wait(timeout=self._wait_timeout)
        except JobTimeoutError as exc:
            if isinstance(exc.last_error, JobNotFoundError):
                raise exc.last_error from exc
            raise
