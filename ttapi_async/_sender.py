"""The send path: one request under a budget, a deadline and a retry policy.

Strictly private. A :class:`Sender` is what the resources, the waiter and the bulk runner
are handed to talk to TTAPI; the client builds one and composes the rest around it. It
owns the transport's lifecycle (opened on first use, refused once closed), the request
budget, the deadline arithmetic, the retries (with stamina), the "outcome unknown" rule
for billable calls, and the scrubbing of secrets from every error that leaves.

A bulk run needs to act at the moment a request is sent (write "submitting" to its
journal, refuse to send once stopped); it gets a view of the sender carrying a
:class:`SendHook` (:meth:`Sender.with_hook`), passed down explicitly with the call.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Final, TypeVar

import anyio
import attrs
import stamina

from ._errors import (
    ClientClosedError,
    OutcomeUnknownError,
    Redactor,
    RequestTimeout,
    TTAPIError,
)
from ._http import OpenStream, RawResponse, SendState, Transport
from ._models import ResponseInfo
from ._protocol import RequestSpec, parse_error
from ._retry import RetryPolicy, is_outcome_unknown
from ._rules import check_timeout
from ._types import NOT_GIVEN, Timeout


if TYPE_CHECKING:
    from ._limits import RequestBudget
    from ._telemetry import CallRecord, Recorder


__all__ = ["ClientStats", "Parser", "SendHook", "Sender", "StreamOpener"]

log = logging.getLogger("ttapi_async")
# stamina logs each scheduled retry (WARNING, "stamina.retry_scheduled") on its own logger.
# In a script or the CLI with no logging set up, Python's last-resort handler printed
# that bare line on stderr for every retry. A NullHandler, the standard library's advice
# for libraries, ends that and nothing else: with logging configured, the record still
# propagates to the application's handlers. (Our own retry line is logged as ours.)
logging.getLogger("stamina").addHandler(logging.NullHandler())

T = TypeVar("T")
#: Turns a 2xx reply into the call's result (raising a TTAPIError for a bad body).
Parser = Callable[[RawResponse, ResponseInfo], T]

#: Longest a shielded send may take (see :class:`SendHook`).
_SHIELD_LIMIT: Final = 120.0


class SendHook:
    """What a caller (the bulk runner) learns and decides at the moment a request is sent.

    ``before_send`` (a coroutine function) runs for each attempt of a billable request,
    after every wait (budget, backoff) and right before the request goes to the pool: the
    journal's "submitting" is written there, and raising aborts the call unsent. With
    ``shield``, the send itself is shielded from cancellation, so a reply (a job id) that
    is on its way is not thrown away when the caller is cancelled.
    """

    __slots__ = ("before_send", "shield")

    def __init__(
        self, before_send: Callable[[], Awaitable[object]], *, shield: bool = False
    ) -> None:
        self.before_send = before_send
        self.shield = shield


@attrs.define
class ClientStats:
    """Counters of one client: HTTP retries and billable calls left in doubt."""

    retries: int = 0
    outcome_unknown: int = 0


class _State(enum.Enum):
    """The transport's lifecycle: opened on first use, never reopened once closed."""

    UNOPENED = "unopened"
    OPENED = "opened"
    CLOSED = "closed"


class _Shared:
    """What a sender and its hooked views share: the transport, its state, the counters."""

    __slots__ = ("budget", "open_transport", "redactor", "retry", "state", "stats", "timeout")

    def __init__(
        self,
        open_transport: Callable[[], Transport],
        timeout: float | None,
        retry: RetryPolicy,
        budget: RequestBudget | None,
        redactor: Redactor,
    ) -> None:
        self.open_transport = open_transport
        self.timeout = timeout
        self.retry = retry
        self.budget = budget
        self.redactor = redactor
        self.state = _State.UNOPENED
        self.stats = ClientStats()


class StreamOpener:
    """The transport of a streaming view of a sender (see :meth:`Sender.streaming`).

    It opens the stream and keeps it in :attr:`opened`.
    """

    __slots__ = ("_transport", "opened")

    def __init__(self, transport: Transport) -> None:
        self._transport = transport
        #: The open stream of the last attempt (None: not opened, or a plain reply).
        self.opened: OpenStream | None = None

    @property
    def closed(self) -> bool:
        """True once the transport was closed."""
        return self._transport.closed

    async def aclose(self) -> None:
        """Let the open stream go (the transport stays the client's)."""
        if self.opened is not None:
            opened, self.opened = self.opened, None
            await opened.aclose()

    async def send(
        self, spec: RequestSpec, state: SendState, timeout: float | None = None
    ) -> RawResponse:
        """Open the stream; a reply that is not one comes back whole, as from ``send``."""
        await self.aclose()  # an earlier attempt's (it failed, or we would not be here)
        reply = await self._transport.open_stream(spec, state, timeout)
        if isinstance(reply, RawResponse):
            return reply
        self.opened = reply
        return RawResponse(reply.status, reply.headers, b"")

    async def open_stream(
        self, spec: RequestSpec, state: SendState, timeout: float | None = None
    ) -> RawResponse | OpenStream:
        """As the transport's."""
        return await self._transport.open_stream(spec, state, timeout)

    async def download(self, url: str, state: SendState, max_bytes: int) -> RawResponse:
        """As the transport's."""
        return await self._transport.download(url, state, max_bytes)

    async def stream(
        self,
        url: str,
        state: SendState,
        sink: Callable[[bytes], None],
        *,
        max_bytes: int,
        check_headers: Callable[[int, Mapping[str, str]], None] | None = None,
    ) -> RawResponse:
        """As the transport's."""
        return await self._transport.stream(
            url, state, sink, max_bytes=max_bytes, check_headers=check_headers
        )


class Sender:
    """Sends :class:`RequestSpec` s and parses their replies, under one deadline each.

    Args:
        open_transport: makes the transport, on first use (synchronous on purpose: two
            first calls racing cannot open two pools).
        timeout: the default bound of a call, in seconds (None: no limit).
        retry: the retry policy of every call (a call may pass its own).
        budget: the shared requests-per-second budget (None: none).
        redactor: hides the key, hook URLs and tokens in every error that leaves.
        telemetry: records a span per call (None: off, and the send path pays one check).
    """

    __slots__ = ("_hook", "_record", "_shared", "_telemetry", "_transport")

    def __init__(
        self,
        open_transport: Callable[[], Transport],
        *,
        timeout: float | None,
        retry: RetryPolicy,
        budget: RequestBudget | None = None,
        redactor: Redactor,
        telemetry: Recorder | None = None,
    ) -> None:
        self._shared = _Shared(open_transport, timeout, retry, budget, redactor)
        self._transport: list[Transport] = []  # shared by every view: [] until opened
        self._hook: SendHook | None = None
        self._telemetry = telemetry
        self._record: CallRecord | None = None  # set on the view a traced call sends through

    def _view(
        self,
        transport: list[Transport],
        hook: SendHook | None,
        telemetry: Recorder | None,
        record: CallRecord | None = None,
    ) -> Sender:
        """A sender sharing this one's state, with its own transport list, hook, telemetry."""
        view = object.__new__(Sender)
        view._shared = self._shared
        view._transport = transport
        view._hook = hook
        view._telemetry = telemetry
        view._record = record
        return view

    def streaming(self) -> tuple[Sender, StreamOpener]:
        """A view of this sender for one streamed call, and the opener it sends through.

        The view retries and times out as :meth:`call` always does, until a reply starts;
        a ``text/event-stream`` success is then left open in ``opener.opened`` (the parse
        sees an empty body), and nothing is retried any more.
        """
        opener = StreamOpener(self.transport())
        return self._view([opener], None, self._telemetry), opener

    def with_hook(self, hook: SendHook) -> Sender:
        """A view of this sender whose billable sends call ``hook`` (see :class:`SendHook`)."""
        return self._view(self._transport, hook, self._telemetry)

    def untraced(self) -> Sender:
        """A view of this sender that records no spans.

        The waiter's polls go through it: they are counted, and summed up on the span of
        each wait, rather than one span each.
        """
        return self._view(self._transport, self._hook, None)

    # ------------------------------------------------------------------ state

    @property
    def timeout(self) -> float | None:
        """The default bound of a call, in seconds (None: no limit)."""
        return self._shared.timeout

    @property
    def retry(self) -> RetryPolicy:
        """The retry policy of every call that does not bring its own."""
        return self._shared.retry

    @property
    def budget(self) -> RequestBudget | None:
        """The shared requests-per-second budget, if any."""
        return self._shared.budget

    @property
    def redactor(self) -> Redactor:
        """What hides secrets in errors."""
        return self._shared.redactor

    @property
    def stats(self) -> ClientStats:
        """Retries and unknown outcomes so far."""
        return self._shared.stats

    @property
    def opened(self) -> bool:
        """True once the transport was opened and until it is closed."""
        return self._shared.state is _State.OPENED

    @property
    def closed(self) -> bool:
        """True once :meth:`aclose` ran."""
        return self._shared.state is _State.CLOSED

    def transport(self) -> Transport:
        """The transport, opened on first use.

        Raises:
            ClientClosedError: the sender was closed.
        """
        if self._transport:
            return self._transport[0]
        if self._shared.state is _State.CLOSED:
            raise ClientClosedError("the client is closed")
        transport = self._shared.open_transport()
        self._transport.append(transport)
        self._shared.state = _State.OPENED
        return transport

    async def aclose(self) -> None:
        """Close the transport; later calls raise :class:`ClientClosedError`."""
        self._shared.state = _State.CLOSED
        if self._transport:
            transport = self._transport.pop()
            await transport.aclose()

    def deadline(self, timeout: Timeout) -> float | None:
        """The event-loop time by which a call given ``timeout=`` must end (None: never)."""
        seconds = self._shared.timeout if timeout is NOT_GIVEN else check_timeout(timeout)
        if seconds is None:
            return None
        return asyncio.get_running_loop().time() + seconds

    # ------------------------------------------------------------------ sending

    async def call(
        self,
        spec: RequestSpec,
        parse: Parser[T],
        deadline: float | None,
        retry: RetryPolicy | None = None,
        *,
        model: str | None = None,
    ) -> T:
        """Send ``spec`` under the retry policy and the deadline, and parse the reply.

        The first attempt is inlined and carries no retry bookkeeping: the common case
        costs one request and one parse (this path is benchmarked against raw aiohttp).
        Only after a retryable failure does :meth:`_retry_loop` take over.

        The deadline is enforced per attempt by the transport's total timeout (set to the
        time left), and between attempts by the policy, which never schedules a retry
        that cannot finish in time: one timer per request, as plain aiohttp has.

        ``model`` names the model asked for, for telemetry only (the body already has it).

        Raises:
            OutcomeUnknownError: a billable call failed after it may have been accepted.
            TTAPIError: any other failure, scrubbed of secrets.
        """
        if self._telemetry is not None:  # off: this check is all telemetry costs here
            return await self._traced_call(spec, parse, deadline, retry, model)
        transport = self._transport[0] if self._transport else self.transport()
        shared = self._shared
        if shared.budget is not None:
            # Before the clock starts: the deadline is absolute, so the wait still counts.
            await self._take_budget(spec, deadline)
        loop = asyncio.get_running_loop()
        start = loop.time()
        state = SendState()
        try:
            timeout = None if deadline is None else deadline - start
            if timeout is not None and timeout <= 0:
                # An exhausted budget sends nothing (aiohttp would read 0 as "no limit").
                msg = f"{spec.operation}: the timeout ran out before the request was sent"
                raise RequestTimeout(msg, request_sent=False)
            if self._hook is None:
                raw = await transport.send(spec, state, timeout)
            else:
                raw = await self._hooked_send(transport, spec, state, timeout)
            if raw.status < 300:  # noqa: PLR2004
                return parse(raw, ResponseInfo(raw.status, raw.headers, loop.time() - start, 1))
            raise parse_error(raw.status, raw.headers, raw.body, operation=spec.operation)
        except TTAPIError as exc:
            self._scrub(spec, exc)
            policy = retry or shared.retry
            remaining = None if deadline is None else deadline - loop.time()
            if policy.delay(exc, 1, billable=spec.billable, remaining=remaining) is None:
                self._raise_unknown(spec, exc, 1)
                raise
            return await self._retry_loop(spec, parse, deadline, start, state, exc, policy)

    async def _traced_call(
        self,
        spec: RequestSpec,
        parse: Parser[T],
        deadline: float | None,
        retry: RetryPolicy | None,
        model: str | None,
    ) -> T:
        """:meth:`call` inside its span: through a view that notes attempts and retries."""
        telemetry = self._telemetry
        assert telemetry is not None  # noqa: S101 - the caller checks
        with telemetry.call(spec, model) as record:

            def noted(raw: RawResponse, info: ResponseInfo) -> T:
                record.replied(raw.status, info.attempts)
                return parse(raw, info)

            view = self._view(self._transport, self._hook, None, record)
            result = await view.call(spec, noted, deadline, retry)
            record.result(result)
            return result

    async def _retry_loop(
        self,
        spec: RequestSpec,
        parse: Parser[T],
        deadline: float | None,
        start: float,
        state: SendState,
        first: TTAPIError,
        policy: RetryPolicy,
    ) -> T:
        """Retry ``spec`` with stamina after ``first`` failed and the policy allows more."""
        loop = asyncio.get_running_loop()
        shared = self._shared
        attempts = 1
        pending: TTAPIError | None = first
        # Once any attempt may have been accepted, the call's outcome stays unknown, even if
        # a later attempt fails in a definite way (say, a 429 after a 500).
        doubtful: TTAPIError | None = first if is_outcome_unknown(first) else None

        def retry_delay(exc: Exception) -> float | bool:
            remaining = None if deadline is None else deadline - loop.time()
            wait = policy.delay(exc, attempts, billable=spec.billable, remaining=remaining)
            if wait is None:
                return False
            shared.stats.retries += 1
            if self._record is not None:
                self._record.retrying(exc, attempts, wait)
            log.info(
                "%s: retry %d in %.2fs after %s", spec.operation, attempts, wait, type(exc).__name__
            )
            return wait

        try:
            # The first failure is replayed inside stamina's loop, so stamina counts it
            # and sleeps the backoff our policy chose.
            async for retrying in stamina.retry_context(
                on=retry_delay, attempts=policy.max_retries + 1, timeout=None
            ):
                with retrying:
                    if pending is not None:
                        replay, pending = pending, None
                        raise replay
                    if shared.budget is not None:
                        await self._take_budget(spec, deadline)
                    remaining = None
                    if deadline is not None:
                        remaining = deadline - loop.time()
                        if remaining <= 0:
                            msg = f"{spec.operation} did not finish within its timeout"
                            raise RequestTimeout(msg, request_sent=False)
                    if shared.state is _State.CLOSED or not self._transport:
                        raise ClientClosedError("the client was closed while retrying")
                    transport = self._transport[0]
                    attempts += 1
                    if self._record is not None:
                        self._record.attempts = attempts
                    try:
                        if self._hook is None:
                            raw = await transport.send(spec, state, remaining)
                        else:
                            raw = await self._hooked_send(transport, spec, state, remaining)
                    except TTAPIError as exc:
                        if is_outcome_unknown(exc):
                            doubtful = exc
                        raise
                    if raw.status >= 300:  # noqa: PLR2004
                        raise parse_error(
                            raw.status, raw.headers, raw.body, operation=spec.operation
                        )
                    info = ResponseInfo(raw.status, raw.headers, loop.time() - start, attempts)
                    return parse(raw, info)
        except TTAPIError as exc:
            self._scrub(spec, exc)
            if is_outcome_unknown(exc):
                doubtful = exc
            self._raise_unknown(spec, doubtful or exc, attempts)
            raise
        raise AssertionError("unreachable: stamina always returns or raises")  # pragma: no cover

    async def _hooked_send(
        self,
        transport: Transport,
        spec: RequestSpec,
        state: SendState,
        timeout: float | None,
    ) -> RawResponse:
        hook = self._hook
        assert hook is not None  # noqa: S101 - callers check
        if not spec.billable:
            return await transport.send(spec, state, timeout)
        await hook.before_send()
        if not hook.shield:
            return await transport.send(spec, state, timeout)
        # Shielded, but never for ever: with no call timeout, a server that never answers
        # would otherwise hold a stopping run hostage.
        limit = _SHIELD_LIMIT if timeout is None else min(timeout, _SHIELD_LIMIT)
        raw = None
        with anyio.move_on_after(limit, shield=True):
            raw = await transport.send(spec, state, timeout)
        if raw is None:
            msg = f"{spec.operation}: no reply within {limit:g} s"
            raise RequestTimeout(msg, request_sent=state.connected)
        return raw

    async def _take_budget(self, spec: RequestSpec, deadline: float | None) -> None:
        """Wait for a token of the request budget, within the call's deadline."""
        budget = self._shared.budget
        assert budget is not None  # noqa: S101 - callers check
        acquire = budget.acquire_submit if spec.billable else budget.acquire_poll
        if deadline is None:
            await acquire()
            return
        with anyio.move_on_after(deadline - asyncio.get_running_loop().time()) as scope:
            await acquire()
        if scope.cancelled_caught:
            msg = f"{spec.operation}: the timeout ran out waiting for the request budget"
            raise RequestTimeout(msg, request_sent=False)

    def scrubber(self, spec: RequestSpec) -> Callable[[TTAPIError], None]:
        """What hides this call's secrets in an error raised later (a stream's)."""
        return lambda exc: self._scrub(spec, exc)

    def _scrub(self, spec: RequestSpec, exc: TTAPIError) -> None:
        """Hide the key, hook URLs and tokens in ``exc`` (a server may have quoted them)."""
        redactor = self._shared.redactor
        if spec.secrets:
            redactor = redactor.with_literals(spec.secrets)
        redactor.scrub(exc)

    def _raise_unknown(self, spec: RequestSpec, exc: TTAPIError, attempts: int) -> None:
        """Raise :class:`OutcomeUnknownError` if ``exc`` leaves a billable call in doubt."""
        if spec.billable and is_outcome_unknown(exc):
            self._shared.stats.outcome_unknown += 1
            log.warning(
                "%s: outcome unknown after %d attempt(s): %s", spec.operation, attempts, exc
            )
            raise OutcomeUnknownError(spec.operation, exc, attempts=attempts) from exc
