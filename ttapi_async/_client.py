"""The client: configuration, the session's lifecycle, and the one request path.

Strictly private; ``ttapi_async.Client`` is the public name. The client owns one
:class:`~ttapi_async._transport.AiohttpTransport` (one aiohttp session and pool) and hands
out the resources (``client.images``, ``client.dalle3``, ``client.gpt4o``), which build
requests with :mod:`ttapi_async._protocol` and send them through :meth:`Client._call`.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import os
from collections.abc import Callable
from functools import cached_property
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Final, Self, TypeVar

import anyio
import attrs
import stamina

from ._errors import (
    ClientClosedError,
    OutcomeUnknownError,
    RequestTimeout,
    ResponseFormatError,
    TTAPIError,
    ValidationError,
)
from ._files import safe_stem, write_atomic
from ._images import EXTENSIONS, sniff_mime
from ._models import ImageData, ImagesResponse, JobResult, JobSnapshot, ResponseInfo
from ._polling import PollPolicy
from ._protocol import RequestSpec, parse_error
from ._retry import RetryPolicy, is_outcome_unknown
from ._transport import AiohttpTransport, RawResponse, SendState
from ._types import NOT_GIVEN, Timeout
from ._waiter import JobWaiter


if TYPE_CHECKING:
    from anyio.abc import TaskGroup

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
        self.retry: Final = retry or RetryPolicy(
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
        #: Counters (retries, unknown outcomes); the waiter has its own (``waiter.stats``).
        self.stats = ClientStats()
        #: The job waiter (see :class:`JobWaiter`); it runs while the client is open.
        self.waiter: Final = JobWaiter(
            self,
            poll_policy,
            max_concurrent_polls=max_concurrent_polls,
            polls_per_second=polls_per_second,
            confirm_callbacks=confirm_callbacks,
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

    # ------------------------------------------------------------------ requests

    def deadline(self, timeout: Timeout) -> float | None:
        """The event-loop time by which a call given ``timeout=`` must end (None: never)."""
        seconds = self.timeout if timeout is NOT_GIVEN else timeout
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
        loop = asyncio.get_running_loop()
        start = loop.time()
        state = SendState()
        try:
            timeout = None if deadline is None else deadline - start
            if timeout is not None and timeout <= 0:
                # An exhausted budget sends nothing (aiohttp would read 0 as "no limit").
                msg = f"{spec.operation}: the timeout ran out before the request was sent"
                raise RequestTimeout(msg, request_sent=False)
            raw = await transport.send(spec, state, timeout)
            if raw.status < 300:  # noqa: PLR2004
                return parse(raw, ResponseInfo(raw.status, raw.headers, loop.time() - start, 1))
            raise parse_error(raw.status, raw.headers, raw.body, operation=spec.operation)
        except TTAPIError as exc:
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
                    remaining = None
                    if deadline is not None:
                        remaining = deadline - loop.time()
                        if remaining <= 0:
                            msg = f"{spec.operation} did not finish within its timeout"
                            raise RequestTimeout(msg, request_sent=False)
                    if self._state is _State.CLOSED or self._transport is None:
                        raise ClientClosedError("the client was closed while retrying")
                    attempts += 1
                    try:
                        raw = await self._transport.send(spec, state, remaining)
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
            if is_outcome_unknown(exc):
                doubtful = exc
            self._raise_unknown(spec, doubtful or exc, attempts)
            raise
        raise AssertionError("unreachable: stamina always returns or raises")  # pragma: no cover

    async def download(
        self, url: str, *, max_bytes: int = 64 * 1024 * 1024, timeout: Timeout = NOT_GIVEN
    ) -> bytes:
        """Download an image URL (never sending the API key) and return its bytes.

        Raises:
            NotFoundError: the URL is gone (TTAPI and DALL-E URLs expire after about an hour).
            ResponseFormatError: the reply is larger than ``max_bytes`` or not an image.
        """
        if self._state is _State.CLOSED:
            raise ClientClosedError("the client is closed")
        transport = self._open()
        state = SendState()
        try:
            async with asyncio.timeout_at(self.deadline(timeout)):
                raw = await transport.download(url, state, max_bytes)
        except TimeoutError as exc:
            if isinstance(exc, TTAPIError):
                raise
            raise RequestTimeout("download timed out", request_sent=state.connected) from exc
        if raw.status >= 300:  # noqa: PLR2004
            raise parse_error(raw.status, raw.headers, raw.body, operation="download")
        if sniff_mime(raw.body) == "application/octet-stream":
            raise ResponseFormatError(
                "the download is not a PNG, JPEG, WebP or GIF image", status=raw.status
            )
        return raw.body

    async def save(
        self,
        result: ImagesResponse | JobSnapshot | JobResult,
        directory: str | os.PathLike[str],
        *,
        stem: str | None = None,
        timeout: Timeout = NOT_GIVEN,
    ) -> list[Path]:
        """Save every image of a result into ``directory`` and return the paths.

        ``b64_json`` images are decoded; URL images (DALL-E, 4o jobs) are downloaded
        without the API key. Names are ``<stem>-<i>.<ext>``, the extension read from the
        bytes; ``stem`` defaults to a safe slug of the prompt or job id. Each file is
        written atomically.
        """
        folder = Path(directory)
        if isinstance(result, JobResult):
            result = result.as_snapshot()
        sources: list[ImageData | str] = []
        if isinstance(result, JobSnapshot):
            if not result.image_url:
                raise ValidationError("result", result.status.value, "the job has no image to save")
            sources.append(result.image_url)
            default_stem = safe_stem(result.prompt or result.job_id)
        else:
            sources.extend(result.data)
            default_stem = safe_stem(
                next((d.revised_prompt for d in result.data if d.revised_prompt), "image")
            )
        base = stem if stem is not None else default_stem
        if not base or os.sep in base or (os.altsep and os.altsep in base) or base in {".", ".."}:
            raise ValidationError("stem", base, "a plain file-name stem is required")
        deadline = self.deadline(timeout)  # one budget for every download of the call
        loop = asyncio.get_running_loop()

        def left() -> float | None:
            return None if deadline is None else max(0.0, deadline - loop.time())

        paths = []
        for i, item in enumerate(sources):
            if isinstance(item, str):
                data = await self.download(item, timeout=left())
            elif item.b64_json is not None:
                try:
                    data = item.decode()
                except ValueError as exc:
                    raise ResponseFormatError(
                        "an image's b64_json is not base64", status=200
                    ) from exc
            elif item.url is not None:
                data = await self.download(item.url, timeout=left())
            else:
                raise ResponseFormatError("an image item has neither b64_json nor url", status=200)
            ext = EXTENSIONS.get(sniff_mime(data), "bin")
            path = folder / f"{base}-{i}.{ext}"
            await anyio.to_thread.run_sync(write_atomic, path, data)
            paths.append(path)
        return paths

    def _raise_unknown(self, spec: RequestSpec, exc: TTAPIError, attempts: int) -> None:
        """Raise :class:`OutcomeUnknownError` if ``exc`` leaves a billable call in doubt."""
        if spec.billable and is_outcome_unknown(exc):
            self.stats.outcome_unknown += 1
            log.warning(
                "%s: outcome unknown after %d attempt(s): %s", spec.operation, attempts, exc
            )
            raise OutcomeUnknownError(spec.operation, exc, attempts=attempts) from exc
