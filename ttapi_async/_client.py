"""The client: configuration, the session's lifecycle, and the one request path.

Strictly private; ``ttapi_async.Client`` is the public name. The client owns one
:class:`~ttapi_async._transport.AiohttpTransport` (one aiohttp session and pool) and hands
out the resources (``client.images``, ``client.dalle3``, ``client.gpt4o``), which build
requests with :mod:`ttapi_async._protocol` and send them through :meth:`Client._call`.
"""

from __future__ import annotations

import asyncio
import contextvars
import enum
import logging
import os
from collections.abc import AsyncIterable, Callable, Iterable, Mapping
from functools import cached_property
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, Self, TypeVar

import anyio
import attrs
import stamina

from ._downloads import DEFAULT_MAX_BYTES, fetch_bytes, save_result
from ._errors import (
    ClientClosedError,
    OutcomeUnknownError,
    Redactor,
    RequestTimeout,
    TTAPIError,
    ValidationError,
)
from ._limits import RequestBudget
from ._models import ImagesResponse, JobResult, JobSnapshot, ResponseInfo, SavedImage
from ._polling import PollPolicy
from ._protocol import RequestSpec, parse_error
from ._retry import RetryPolicy, default_retry_policy, is_outcome_unknown
from ._rules import check_timeout
from ._transport import AiohttpTransport, RawResponse, SendState
from ._types import NOT_GIVEN, Timeout
from ._waiter import JobWaiter


if TYPE_CHECKING:
    from anyio.abc import TaskGroup

    from ._bulk import BulkProgress, BulkRun
    from ._journal import Journal
    from ._requests import Request
    from ._resources import Dalle3, GPT4o, Images
    from ._webhook import WebhookReceiver


__all__ = ["DEFAULT_BASE_URL", "DEFAULT_TIMEOUT", "Client", "ClientStats"]

log = logging.getLogger("ttapi_async")

#: TTAPI's primary host. ``https://api.ttapi.org`` is its "acceleration" host, which TTAPI
#: recommends for long gpt-image-1 calls.
DEFAULT_BASE_URL: Final = "https://api.ttapi.io"
#: gpt-image-1 calls can take minutes; TTAPI's own examples allow 300 s.
DEFAULT_TIMEOUT: Final = 600.0

T = TypeVar("T")
Parser = Callable[[RawResponse, ResponseInfo], T]


class SendHook:
    """What a caller (the bulk runner) learns and decides at the moment a request is sent.

    Installed for one call with :data:`SEND_HOOK` (a context variable, so it applies only
    to the task that set it). ``before_send`` runs for each attempt of a billable request,
    after every wait (budget, backoff) and right before the request goes to the pool: the
    journal's "submitting" is written there, and raising aborts the call unsent. With
    ``shield``, the send itself is shielded from cancellation, so a reply (a job id) that
    is on its way is not thrown away when the caller is cancelled.
    """

    __slots__ = ("before_send", "shield")

    def __init__(self, before_send: Callable[[], object], *, shield: bool = False) -> None:
        self.before_send = before_send
        self.shield = shield


#: Longest a shielded send may take (see :class:`SendHook`).
_SHIELD_LIMIT: Final = 120.0

#: The :class:`SendHook` of the current task's calls, if any (private to the SDK).
SEND_HOOK: contextvars.ContextVar[SendHook | None] = contextvars.ContextVar(
    "ttapi_async_send_hook", default=None
)


async def _hooked_send(
    hook: SendHook,
    transport: AiohttpTransport,
    spec: RequestSpec,
    state: SendState,
    timeout: float | None,
) -> RawResponse:
    if not spec.billable:
        return await transport.send(spec, state, timeout)
    hook.before_send()
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


@attrs.define
class ClientStats:
    """Counters of one client: HTTP retries and billable calls left in doubt."""

    retries: int = 0
    outcome_unknown: int = 0


class _State(enum.Enum):
    UNOPENED = "unopened"
    OPENED = "opened"
    CLOSED = "closed"


class Client:
    """An asyncio client for TTAPI's OpenAI image endpoints.

    Use it as an async context manager, which closes the connection pool on exit::

        async with ttapi_async.Client() as client:
            r = await client.images.generate(prompt="a red fox", model="gpt-image-1")

    A client may also be created at start-up and closed with :meth:`aclose`; its pool is
    opened on first use. Once closed it refuses further calls.

    Args:
        api_key: the TT-API-KEY; defaults to the ``TTAPI_API_KEY`` environment variable.
        base_url: defaults to ``TTAPI_BASE_URL``, then ``https://api.ttapi.io``.
        timeout: default bound, in seconds, of every call (None: no limit). Each call's
            own ``timeout=`` overrides it and always bounds the whole call, retries included.
        connect_timeout: limit for opening one TCP/TLS connection.
        pool_timeout: limit for getting a connection from the pool (connecting included);
            a call that gets none is never sent, so it is safely retried.
        max_connections: size of the connection pool (aiohttp's ``limit``).
        max_connections_per_host: per-host cap (0: none).
        max_retries: retries after the first attempt; see :class:`RetryPolicy`.
        retry_unknown_outcome: retry billable calls even when they may have been accepted
            (can bill twice; off by default).
        max_retry_after: longest ``Retry-After`` honoured, in seconds.
        retry: a full :class:`RetryPolicy`; overrides the three arguments above.
        trust_env: honour ``HTTP(S)_PROXY``/``NO_PROXY`` and ``.netrc`` from the environment.
        headers: extra headers sent with every API request.
        poll_policy: how the waiter schedules fetches (see :class:`PollPolicy`).
        max_concurrent_polls: the waiter's fetches in flight at once.
        polls_per_second: a budget for the waiter's fetches alone.
        webhook: a :class:`WebhookReceiver`; submits then carry a hook URL.
        confirm_callbacks: confirm each callback with one fetch before trusting it.
        requests_per_second: one budget for every API request of this client (submits,
            synchronous calls, fetches); submits never wait behind the waiter's polls.
    """

    def __init__(
        self,
        api_key: str | None = None,
        *,
        base_url: str | None = None,
        timeout: float | None = DEFAULT_TIMEOUT,
        connect_timeout: float | None = 10.0,
        pool_timeout: float | None = 60.0,
        max_connections: int = 100,
        max_connections_per_host: int = 0,
        max_retries: int = 2,
        retry_unknown_outcome: bool = False,
        max_retry_after: float = 60.0,
        retry: RetryPolicy | None = None,
        trust_env: bool = False,
        headers: dict[str, str] | None = None,
        poll_policy: PollPolicy | None = None,
        max_concurrent_polls: int = 32,
        polls_per_second: float | None = None,
        webhook: WebhookReceiver | None = None,
        confirm_callbacks: bool = True,
        requests_per_second: float | None = None,
    ) -> None:
        key = api_key if api_key is not None else os.environ.get("TTAPI_API_KEY")
        if not key:
            raise ValidationError(
                "api_key",
                "<missing>",
                "pass api_key= or set the TTAPI_API_KEY environment variable",
            )
        url = base_url or os.environ.get("TTAPI_BASE_URL") or DEFAULT_BASE_URL
        if not url.startswith(("http://", "https://")):
            raise ValidationError("base_url", url, "an http(s) URL is required")
        if max_connections < 1:
            raise ValidationError("max_connections", max_connections, "at least 1")
        if max_retries < 0:
            raise ValidationError("max_retries", max_retries, "0 or more")
        self.base_url: Final = url.rstrip("/")
        self.timeout: Final = timeout
        self.retry: Final = retry or default_retry_policy(
            max_retries=max_retries,
            retry_unknown_outcome=retry_unknown_outcome,
            max_retry_after=max_retry_after,
        )
        self._api_key = key  # never printed: see __repr__
        self._transport_args = {
            "max_connections": max_connections,
            "max_connections_per_host": max_connections_per_host,
            "connect_timeout": connect_timeout,
            "pool_timeout": pool_timeout,
            "trust_env": trust_env,
            "headers": headers,
        }
        self._transport: AiohttpTransport | None = None
        self._state = _State.UNOPENED
        self._tg: TaskGroup | None = None
        #: The shared requests-per-second budget (None: no budget).
        self.budget: Final = (
            None if requests_per_second is None else RequestBudget(requests_per_second)
        )
        #: Counters (retries, unknown outcomes); the waiter has its own (``waiter.stats``).
        self.stats = ClientStats()
        # Servers may quote the key or a hook URL back; every error leaving a call is
        # scrubbed of them first, so no message, log line or journal row repeats them.
        self._redactor = (
            Redactor((key,))
            if webhook is None
            else Redactor((key,), (webhook.public_url,), webhook._knows)  # noqa: SLF001
        )
        #: The job waiter (see :class:`JobWaiter`); it runs while the client is open.
        self.waiter: Final = JobWaiter(
            self,
            poll_policy,
            max_concurrent_polls=max_concurrent_polls,
            polls_per_second=polls_per_second,
            confirm_callbacks=confirm_callbacks,
            redact=self._redactor.redact,
        )
        #: The webhook receiver jobs report to, if any.
        self.webhook: Final = webhook
        if webhook is not None:
            webhook._attach(self.waiter)  # noqa: SLF001

    def __repr__(self) -> str:
        return f"<ttapi_async.Client base_url={self.base_url!r} state={self._state.value}>"

    # ------------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> Self:
        if self._state is _State.CLOSED:
            raise ClientClosedError("cannot reopen a client once it has been closed")
        self._open()
        # The waiter's scheduler lives in a task group owned by this context: entered
        # here, cancelled and left in __aexit__ (anyio requires the same task for both).
        tg = anyio.create_task_group()
        await tg.__aenter__()
        try:
            await tg.start(self.waiter._run)  # noqa: SLF001
        except BaseException:
            tg.cancel_scope.cancel()
            await tg.__aexit__(None, None, None)
            raise
        self._tg = tg
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        tg, self._tg = self._tg, None
        self.waiter._close()  # noqa: SLF001 - waits in progress end with ClientClosedError
        try:
            if tg is not None:
                tg.cancel_scope.cancel()
                await tg.__aexit__(None, None, None)
        finally:
            await self.aclose()

    @property
    def waiting_enabled(self) -> bool:
        """True while the waiter's scheduler runs (inside ``async with client``)."""
        return self._tg is not None

    def _open(self) -> AiohttpTransport:
        # Synchronous on purpose: two first calls racing cannot open two sessions.
        if self._transport is None:
            self._transport = AiohttpTransport(
                self.base_url,
                self._api_key,
                **self._transport_args,  # type: ignore[arg-type]
            )
            self._state = _State.OPENED
        return self._transport

    async def aclose(self) -> None:
        """Close the connection pool. Further calls raise :class:`ClientClosedError`.

        Inside ``async with`` the exit does this, after stopping the waiter.
        """
        self._state = _State.CLOSED
        self.waiter._close()  # noqa: SLF001
        transport, self._transport = self._transport, None
        if transport is not None:
            await transport.aclose()

    @property
    def closed(self) -> bool:
        """True once the client has been closed."""
        return self._state is _State.CLOSED

    # ------------------------------------------------------------------ resources

    @cached_property
    def images(self) -> Images:
        """``/v1/images/generations`` and ``/v1/images/edits`` (OpenAI-compatible)."""
        from ._resources import Images  # noqa: PLC0415 - resources import this module

        return Images(self)

    @cached_property
    def dalle3(self) -> Dalle3:
        """The legacy DALL-E 3 route ``/openai/v1/images/generations`` (envelope unwrapped)."""
        from ._resources import Dalle3  # noqa: PLC0415

        return Dalle3(self)

    @cached_property
    def gpt4o(self) -> GPT4o:
        """4o-image jobs: ``submit`` and ``fetch``."""
        from ._resources import GPT4o  # noqa: PLC0415

        return GPT4o(self)

    def bulk(
        self,
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
    ) -> BulkRun:
        """Run many requests under limits; enter the result and iterate its outcomes.

        ::

            async with client.bulk(requests, save_to="out", journal="run.db") as outcomes:
                async for outcome in outcomes:
                    print(outcome.index, outcome.state.value, outcome.paths)

        ``requests`` is an iterable or async iterable of :class:`GPT4oRequest`,
        :class:`GenerateRequest`, :class:`EditRequest` and :class:`Dalle3Request`, read
        lazily. Each input yields one :class:`BulkOutcome` (a result or an error); one
        failure does not stop the others unless ``fail_fast``, which raises the first
        error from the loop. A 401/402/403 pauses the run: nothing new is submitted,
        running jobs finish, then :class:`BulkPausedError` is raised. Leaving the block
        early stops everything and leaves no task running.

        Args:
            requests: the inputs, read lazily (a list, a generator, an async iterator).
            max_jobs: job slots: 4o jobs accepted and not ended plus sync calls in flight.
                A 499 (TTAPI's queue is full) lowers it; jobs ending well raise it back.
            min_jobs: the floor a 499 never lowers the job slots under.
            max_requests: submits and sync calls in flight at once (HTTP concurrency).
            max_downloads: images being saved at once.
            ordered: hand outcomes back in input order.
            window: at most this many items started and not yet taken by the loop
                (default ``max(64, 2 * max_jobs)``); in ordered mode, how far the run
                may get ahead of its slowest item.
            fail_fast: stop at the first failure and raise its error.
            save_to: save each result's images (and a JSON sidecar) into this folder.
            sidecar: write the JSON sidecar next to each saved image.
            max_bytes: size cap of one saved image.
            journal: a SQLite file (or an open :class:`Journal`) recording each item's
                state; the same run started again resumes from it.
            resubmit_unknown: with a journal, submit again the items whose outcome was
                unknown (they may have been billed once already).
            retry_failed: with a journal, run again the items that failed.
            wait_timeout: bound of each 4o wait (default: the client's timeout). A wait
                that times out hands back the job id; a resumed run waits again.
            on_progress: called with a :class:`BulkProgress` on every change.

        The client's ``requests_per_second`` budget applies to every request, shared
        with the waiter's polls (submits first). Requires ``async with Client()``.
        """
        from ._bulk import BulkRun  # noqa: PLC0415 - the runner imports this module's types

        return BulkRun(
            self,
            requests,
            max_jobs=max_jobs,
            min_jobs=min_jobs,
            max_requests=max_requests,
            max_downloads=max_downloads,
            ordered=ordered,
            window=window,
            fail_fast=fail_fast,
            save_to=save_to,
            sidecar=sidecar,
            max_bytes=max_bytes,
            journal=journal,
            resubmit_unknown=resubmit_unknown,
            retry_failed=retry_failed,
            wait_timeout=wait_timeout,
            on_progress=on_progress,
        )

    # ------------------------------------------------------------------ requests

    def deadline(self, timeout: Timeout) -> float | None:
        """The event-loop time by which a call given ``timeout=`` must end (None: never)."""
        seconds = self.timeout if timeout is NOT_GIVEN else check_timeout(timeout)
        if seconds is None:
            return None
        return asyncio.get_running_loop().time() + seconds

    async def _call(
        self,
        spec: RequestSpec,
        parse: Parser[T],
        deadline: float | None,
        retry: RetryPolicy | None = None,
    ) -> T:
        """Send ``spec`` under the retry policy and the deadline, and parse the reply.

        The first attempt is inlined and carries no retry bookkeeping: the common case
        costs one request and one parse (this path is benchmarked against raw aiohttp).
        Only after a retryable failure does :meth:`_retry_loop` take over.

        The deadline is enforced per attempt by aiohttp's own total timeout (set to the
        time left), and between attempts by the policy, which never schedules a retry
        that cannot finish in time: one timer per request, as plain aiohttp has.
        """
        transport = self._transport
        if transport is None:
            if self._state is _State.CLOSED:
                raise ClientClosedError("the client is closed")
            transport = self._open()
        if self.budget is not None:
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
            hook = SEND_HOOK.get()
            if hook is None:
                raw = await transport.send(spec, state, timeout)
            else:
                raw = await _hooked_send(hook, transport, spec, state, timeout)
            if raw.status < 300:  # noqa: PLR2004
                return parse(raw, ResponseInfo(raw.status, raw.headers, loop.time() - start, 1))
            raise parse_error(raw.status, raw.headers, raw.body, operation=spec.operation)
        except TTAPIError as exc:
            self._scrub(spec, exc)
            policy = retry or self.retry
            remaining = None if deadline is None else deadline - loop.time()
            if policy.delay(exc, 1, billable=spec.billable, remaining=remaining) is None:
                self._raise_unknown(spec, exc, 1)
                raise
            return await self._retry_loop(spec, parse, deadline, start, state, exc, policy)

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
            self.stats.retries += 1
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
                    if self.budget is not None:
                        await self._take_budget(spec, deadline)
                    remaining = None
                    if deadline is not None:
                        remaining = deadline - loop.time()
                        if remaining <= 0:
                            msg = f"{spec.operation} did not finish within its timeout"
                            raise RequestTimeout(msg, request_sent=False)
                    transport = self._transport
                    if self._state is _State.CLOSED or transport is None:
                        raise ClientClosedError("the client was closed while retrying")
                    attempts += 1
                    hook = SEND_HOOK.get()
                    try:
                        if hook is None:
                            raw = await transport.send(spec, state, remaining)
                        else:
                            raw = await _hooked_send(hook, transport, spec, state, remaining)
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

    async def download(
        self, url: str, *, max_bytes: int = DEFAULT_MAX_BYTES, timeout: Timeout = NOT_GIVEN
    ) -> bytes:
        """Download an image URL (never sending the API key) and return its bytes.

        For results, prefer :meth:`save`: it streams to disk instead of holding the image.

        Raises:
            ImageUnavailableError: 403, 404 or 410: the URL expired (TTAPI and DALL-E URLs
                last about an hour) or never existed. A :class:`NotFoundError`.
            ResponseFormatError: the reply is larger than ``max_bytes`` or not an image.
            APIStatusError: any other error status. APIConnectionError: no full reply.
        """
        if self._state is _State.CLOSED:
            raise ClientClosedError("the client is closed")
        return await fetch_bytes(
            self._open(), url, max_bytes=max_bytes, deadline=self.deadline(timeout)
        )

    async def save(
        self,
        result: ImagesResponse | JobSnapshot | JobResult,
        directory: str | os.PathLike[str],
        *,
        stem: str | None = None,
        sidecar: bool = True,
        metadata: Mapping[str, Any] | None = None,
        max_bytes: int = DEFAULT_MAX_BYTES,
        timeout: Timeout = NOT_GIVEN,
    ) -> list[SavedImage]:
        """Save every image of a result into ``directory``; return what was saved.

        URL images (DALL-E, 4o jobs) are streamed to disk without the API key;
        ``b64_json`` images are decoded slice by slice. Each file is checked (Content-Type,
        magic bytes, ``max_bytes``), hashed, fsynced and then given a name of its own,
        ``<stem>-<i>.<ext>`` (``-2``, ``-3``, ... appended if taken: nothing is ever
        overwritten), the extension read from the bytes. ``stem`` defaults to a safe slug
        of ``metadata["prompt"]``, else of the prompt, revised prompt or job id. On any
        error or cancellation no partial file is left behind.

        With ``sidecar`` (the default), ``<image name>.json`` next to each image records
        the prompt, job id, timings, sha256, size, type, dimensions and the source URL
        without its query string, with ``metadata`` merged in. It never holds the API
        key, a hook URL or a hook token.

        ``timeout`` is one deadline for every download of the call.

        Raises:
            ImageUnavailableError: an image URL has expired (after about an hour).
            ResponseFormatError: not an image, or larger than ``max_bytes``.
            ValidationError: a job without an image, or a ``stem`` that is not one name.
            APIConnectionError, APIStatusError: the download failed.
        """
        if self._state is _State.CLOSED:
            raise ClientClosedError("the client is closed")
        try:
            return await self._save(result, directory, stem, sidecar, metadata, max_bytes, timeout)
        except TTAPIError as exc:
            # An image URL or an error page may quote the key or a hook token.
            self._redactor.scrub(exc)
            raise

    async def _save(
        self,
        result: ImagesResponse | JobSnapshot | JobResult,
        directory: str | os.PathLike[str],
        stem: str | None,
        sidecar: bool,
        metadata: Mapping[str, Any] | None,
        max_bytes: int,
        timeout: Timeout,
    ) -> list[SavedImage]:
        return await save_result(
            self._open(),
            result,
            directory,
            stem=stem,
            sidecar=sidecar,
            metadata=metadata,
            max_bytes=max_bytes,
            deadline=self.deadline(timeout),
            redactor=self._redactor,
        )

    async def _take_budget(self, spec: RequestSpec, deadline: float | None) -> None:
        """Wait for a token of the request budget, within the call's deadline."""
        budget = self.budget
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

    def _scrub(self, spec: RequestSpec, exc: TTAPIError) -> None:
        """Hide the key, hook URLs and tokens in ``exc`` (a server may have quoted them)."""
        redactor = self._redactor
        if spec.secrets:
            redactor = redactor.with_literals(spec.secrets)
        redactor.scrub(exc)

    def _raise_unknown(self, spec: RequestSpec, exc: TTAPIError, attempts: int) -> None:
        """Raise :class:`OutcomeUnknownError` if ``exc`` leaves a billable call in doubt."""
        if spec.billable and is_outcome_unknown(exc):
            self.stats.outcome_unknown += 1
            log.warning(
                "%s: outcome unknown after %d attempt(s): %s", spec.operation, attempts, exc
            )
            raise OutcomeUnknownError(spec.operation, exc, attempts=attempts) from exc
