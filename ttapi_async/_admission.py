"""A bulk run's admission: when an item may start, and when its billable call may be sent.

Strictly private. One producer pulls the inputs lazily (10,000 queued inputs cost what is
in flight, not 10,000 tasks) and starts an item when three things allow it:

* the **window**: items started but not yet taken by the caller, at most ``window``. In
  ordered mode that is how far the run may get ahead of its slowest item; in either mode
  it is the back-pressure of a slow consumer.
* a **job slot** (:class:`~ttapi_async._limits.SlotController` on an
  :class:`anyio.CapacityLimiter`): jobs accepted by TTAPI and not yet ended, plus sync
  calls in flight. A 499 lowers the cap; jobs ending well raise it again.
* the run **admitting** (:class:`~ttapi_async._runstate.RunStatus`): a 401/402/403 pauses
  it, :meth:`BulkRun.stop` stops it.

Each billable call then takes an **HTTP slot** (``max_requests``) and is sent through a
view of the sender whose hook refuses to send once the run stops admitting.
"""

from __future__ import annotations

import contextlib
import enum
import logging
from collections.abc import AsyncGenerator, AsyncIterable, Awaitable, Callable, Iterable
from typing import Final, TypeVar

import anyio

from ._errors import QueueFullError, RateLimitError, TTAPIError, ValidationError
from ._limits import SlotController, acquire_fast, busy_backoff
from ._requests import (
    Dalle3Request,
    EditRequest,
    GenerateRequest,
    GPT4oRequest,
    GPTRequest,
    Request,
)
from ._runstate import RunStatus
from ._sender import Sender, SendHook


__all__ = ["NOT_SENT", "Admission", "NotSent", "Slot"]

log = logging.getLogger("ttapi_async.bulk")

_T = TypeVar("_T")
_REQUEST_TYPES: Final = (GPT4oRequest, GPTRequest, GenerateRequest, EditRequest, Dalle3Request)


class NotSent(enum.Enum):
    """The type of :data:`NOT_SENT`."""

    NOT_SENT = "not sent"


#: What :meth:`Admission.send` returns when the run stopped admitting before the send.
NOT_SENT: Final = NotSent.NOT_SENT


class _Refused(Exception):  # noqa: N818 - a signal, not an error anyone sees
    """Raised by the send hook to abort a call before it is sent (the run stopped)."""


class Slot:
    """A job slot held on behalf of one item; released once, whichever path ends first."""

    __slots__ = ("_borrower", "_limiter")

    def __init__(self, limiter: anyio.CapacityLimiter, borrower: object) -> None:
        self._limiter: anyio.CapacityLimiter | None = limiter
        self._borrower = borrower

    def release(self) -> None:
        """Give the slot back (again: nothing)."""
        if self._limiter is not None:
            self._limiter.release_on_behalf_of(self._borrower)
            self._limiter = None


class Admission:
    """The window, the job slots and the HTTP cap of one run, and its pause.

    Args:
        status: the run's state; only :attr:`RunStatus.admitting` lets work start.
        sender: the send path billable calls go through (a hooked view each).
        report: tells ``on_progress`` the counts changed.
    """

    __slots__ = (
        "_http",
        "_limiter",
        "_report",
        "_sender",
        "_status",
        "_unsent",
        "_window",
        "producer",
        "slots",
    )

    def __init__(
        self,
        status: RunStatus,
        sender: Sender,
        report: Callable[[], None],
        *,
        max_jobs: int,
        min_jobs: int,
        max_requests: int,
        window: int,
    ) -> None:
        self._status = status
        self._sender = sender
        self._report = report
        self.slots: Final = SlotController(max_jobs, min_jobs)
        self._limiter = anyio.CapacityLimiter(max_jobs)
        self._http = anyio.CapacityLimiter(max_requests)
        self._window = anyio.Semaphore(window)
        self._unsent: dict[int, anyio.CancelScope] = {}  # calls waiting to be sent
        self.producer = anyio.CancelScope()

    # ------------------------------------------------------------------ starting items

    async def admit(
        self,
        requests: Iterable[Request] | AsyncIterable[Request],
        *,
        prepare: Callable[[int, Request], Awaitable[_T | None]],
        launch: Callable[[int, Request, _T, Slot], None],
        input_failed: Callable[[BaseException], None],
    ) -> None:
        """Start one item per input as the window, a job slot and the run allow.

        ``prepare`` says where an item starts (None: it needs no task, as an item an
        earlier run finished); ``launch`` starts its task with its job slot; a broken
        input goes to ``input_failed`` and ends the admission.
        """
        with self.producer:
            index = -1
            # aclosing: the caller's async iterator is closed however the run ends.
            async with contextlib.aclosing(_inputs(requests)) as inputs:
                while True:
                    try:
                        request = await anext(inputs)
                    except StopAsyncIteration:
                        return
                    except Exception as exc:  # noqa: BLE001 - the caller's iterable failed
                        # Like stop(): what started finishes and is handed back, then it raises.
                        input_failed(exc)
                        return
                    index += 1
                    item: object = request  # typed, but callers may pass anything
                    if not isinstance(item, _REQUEST_TYPES):
                        input_failed(
                            ValidationError(
                                f"requests[{index}]",
                                type(request).__name__,
                                "a GPT4oRequest, GPTRequest, GenerateRequest, EditRequest or "
                                "Dalle3Request is required",
                            )
                        )
                        return
                    await acquire_fast(self._window)
                    start = await prepare(index, request)
                    if start is None:
                        continue
                    slot = await self._take_slot()
                    if slot is None:
                        return
                    launch(index, request, start, slot)

    async def _take_slot(self) -> Slot | None:
        """A job slot, or None if the run stopped admitting while it waited for one."""
        borrower = object()
        try:  # as acquire_fast: no extra turn of the loop when a slot is free
            self._limiter.acquire_on_behalf_of_nowait(borrower)
        except anyio.WouldBlock:
            await self._limiter.acquire_on_behalf_of(borrower)
        if not self._status.admitting:
            self._limiter.release_on_behalf_of(borrower)
            return None
        return Slot(self._limiter, borrower)

    async def enter(self) -> Slot | None:
        """A window place and a job slot for an item started outside :meth:`admit`.

        For a shared run's item taken over; None if the run stopped admitting meanwhile.
        """
        await acquire_fast(self._window)
        slot = await self._take_slot()
        if slot is None:
            self._window.release()
        return slot

    def leave_window(self) -> None:
        """An item left the window: taken by the caller, or never sent."""
        self._window.release()

    # ------------------------------------------------------------------ sending

    async def send(
        self,
        index: int,
        call: Callable[[Sender], Awaitable[_T]],
        *,
        shield: bool,
        on_send: Callable[[], Awaitable[None]],
    ) -> _T | NotSent:
        """Run one billable call under the HTTP cap; :data:`NOT_SENT` if the run stopped first.

        ``call`` sends through the sender it is given: a view whose hook runs right
        before each attempt goes out (after the budget and the HTTP slot): it refuses to
        send once the run stops admitting, else calls ``on_send`` (the journal's
        ``submitting``). With ``shield``, a reply on its way survives a cancellation.
        """
        scope = anyio.CancelScope()  # stop() and pauses cancel it until the call is sent
        status, unsent = self._status, self._unsent

        async def before_send() -> None:
            if not status.admitting:
                raise _Refused
            unsent.pop(index, None)  # sent: no longer cancellable
            await on_send()

        unsent[index] = scope
        sender = self._sender.with_hook(SendHook(before_send, shield=shield))
        try:
            with scope:
                await acquire_fast(self._http)
                try:
                    if status.admitting:
                        return await call(sender)
                finally:
                    self._http.release()
        except _Refused:
            pass
        finally:
            unsent.pop(index, None)
        return NOT_SENT

    # ------------------------------------------------------------------ reacting

    def close(self) -> None:
        """The run stopped admitting: stop the producer and the calls not sent yet."""
        self.producer.cancel()
        self.cancel_unsent()

    def cancel_unsent(self) -> None:
        """Calls queued for the budget or an HTTP slot give up; sent ones run on."""
        for scope in self._unsent.values():
            scope.cancel()

    def pause(self, exc: TTAPIError) -> None:
        """An account error: every remaining item would meet it, so nothing new starts."""
        if self._status.pause(exc):
            log.warning("bulk run paused: %s", exc)
            self.close()
            self._report()

    def on_busy(self, exc: TTAPIError, attempt: int, running: int) -> float:
        """React to the ``attempt``-th 429/499 in a row of a submit; return the wait.

        A 499 with ``running`` of the run's jobs in flight lowers the job cap.
        """
        if isinstance(exc, QueueFullError):
            cap = self.slots.on_queue_full(running)
            self._limiter.total_tokens = cap
            log.info("queue full (499) with %d running: job cap now %d", running, cap)
        self._report()
        retry_after = exc.retry_after if isinstance(exc, QueueFullError | RateLimitError) else None
        return busy_backoff(attempt, retry_after)

    def job_ended_well(self) -> None:
        """A job (or sync call) ended well: the job cap may creep back up."""
        cap = self.slots.on_job_done()
        if cap != self._limiter.total_tokens:
            self._limiter.total_tokens = cap


async def _inputs(
    requests: Iterable[Request] | AsyncIterable[Request],
) -> AsyncGenerator[Request, None]:
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
