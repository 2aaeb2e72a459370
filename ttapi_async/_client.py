"""The client: configuration, and the parts it composes.

Strictly private; ``ttapi_async.Client`` is the public name. The client sits on top of
the house: it builds one :class:`~ttapi_async._sender.Sender` (over one
:class:`~ttapi_async._transport.AiohttpTransport`: one aiohttp session and pool), hands it
to the resources (``client.images``, ``client.dalle3``, ``client.gpt4o``) and, as a fetch
callable, to the :class:`~ttapi_async._waiter.JobWaiter`; ``client.bulk()`` hands a run
the parts it needs. Nothing below imports this module.
"""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterable, Callable, Iterable
from types import TracebackType
from typing import TYPE_CHECKING, Final, Self

import anyio

from ._bulk import BulkProgress, BulkRun, RunParts
from ._errors import ClientClosedError, Redactor, ValidationError
from ._jobs import GPT, GPT4o, fetch_once
from ._limits import RequestBudget
from ._polling import PollPolicy
from ._resources import Dalle3, Images
from ._retry import NO_RETRY, RetryPolicy, default_retry_policy
from ._saver import Saver
from ._sender import Sender
from ._telemetry import resolve as resolve_telemetry
from ._transport import AiohttpTransport
from ._types import NOT_GIVEN, Timeout
from ._waiter import JobWaiter


if TYPE_CHECKING:
    from anyio.abc import TaskGroup

    from ._http import Transport
    from ._journalstore import JournalStore
    from ._models import JobSnapshot
    from ._redisbroker import RedisBroker
    from ._requests import Request
    from ._telemetry import Telemetry
    from ._webhook import WebhookReceiver


__all__ = ["DEFAULT_BASE_URL", "DEFAULT_TIMEOUT", "Client"]

log = logging.getLogger("ttapi_async")

#: TTAPI's primary host. ``https://api.ttapi.org`` is its "acceleration" host, which TTAPI
#: recommends for long gpt-image-1 calls.
DEFAULT_BASE_URL: Final = "https://api.ttapi.io"
#: gpt-image-1 calls can take minutes; TTAPI's own examples allow 300 s.
DEFAULT_TIMEOUT: Final = 600.0


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
        broker: a :class:`RedisBroker`, for several workers: a callback accepted by any
            worker ends the wait in the worker awaiting its job, and any worker can wait
            on any job. It is opened with the client (``async with``): an unreachable
            Redis then raises :class:`BrokerError`.
        telemetry: OpenTelemetry spans and metrics: a :class:`Telemetry` (which takes a
            tracer and a meter provider), or True for one over the global providers.
            Off by default; needs ``pip install 'ttapi-async[otel]'``
            (else :class:`TelemetryUnavailableError`).
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
        broker: RedisBroker | None = None,
        telemetry: Telemetry | bool | None = None,
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
        transport_args = {
            "max_connections": max_connections,
            "max_connections_per_host": max_connections_per_host,
            "connect_timeout": connect_timeout,
            "pool_timeout": pool_timeout,
            "trust_env": trust_env,
            "headers": headers,
        }

        def open_transport() -> Transport:
            return AiohttpTransport(
                self.base_url,
                key,
                default_timeout=timeout,
                **transport_args,  # type: ignore[arg-type]
            )

        # Servers may quote the key or a hook URL back; every error leaving a call is
        # scrubbed of them first, so no message, log line or journal row repeats them.
        redactor = (
            Redactor((key,))
            if webhook is None
            else Redactor((key,), (webhook.public_url,), webhook._knows)  # noqa: SLF001
        )
        self._tg: TaskGroup | None = None
        #: The shared requests-per-second budget (None: no budget).
        self.budget: Final = (
            None if requests_per_second is None else RequestBudget(requests_per_second)
        )
        tel = resolve_telemetry(telemetry)
        #: The telemetry this client records into (None: off).
        self.telemetry: Final = tel
        # Handed to the parts below, or None: then they pay one None-check, nothing more.
        recorder = None if tel is None else tel._recorder(self.base_url)  # noqa: SLF001
        self._sender = Sender(
            open_transport,
            timeout=timeout,
            retry=self.retry,
            budget=self.budget,
            redactor=redactor,
            telemetry=recorder,
        )
        #: Counters (retries, unknown outcomes); the waiter has its own (``waiter.stats``).
        self.stats: Final = self._sender.stats
        #: The job waiter (see :class:`JobWaiter`); it runs while the client is open.
        # The waiter's polls record no span each (they are counted, and summed on the span
        # of each wait); a user's own fetch is a call like any other.
        sender = self._sender.untraced()

        async def fetch(job_id: str, route: str, deadline: float) -> JobSnapshot:
            # No retry of its own: the waiter schedules the next poll itself.
            return await fetch_once(sender, job_id, deadline, NO_RETRY, route=route)

        self.waiter: Final = JobWaiter(
            fetch,
            poll_policy,
            timeout=timeout,
            max_concurrent_polls=max_concurrent_polls,
            polls_per_second=polls_per_second,
            confirm_callbacks=confirm_callbacks,
            redact=redactor.redact,
            shared=broker,
            telemetry=recorder,
        )
        #: The broker shared with other workers, if any.
        self.broker: Final = broker
        if broker is not None:
            broker.attach(self.waiter)
        #: The webhook receiver jobs report to, if any.
        self.webhook: Final = webhook
        if webhook is not None:
            webhook._attach(  # noqa: SLF001
                self.waiter, broker, None if recorder is None else recorder.callback
            )
        #: ``/v1/images/generations`` and ``/v1/images/edits`` (OpenAI-compatible).
        self.images: Final = Images(self._sender)
        #: The legacy DALL-E 3 route ``/openai/v1/images/generations`` (envelope unwrapped).
        self.dalle3: Final = Dalle3(self._sender)
        #: 4o-image jobs: ``submit``, ``fetch``, ``generate`` and ``job(id)``.
        self.gpt4o: Final = GPT4o(self._sender, self.waiter, webhook)
        #: GPT image jobs on ``/openai/gpt/*``: ``submit``, ``fetch``, ``generate``, ``job(id)``.
        self.gpt: Final = GPT(self._sender, self.waiter, webhook)
        self._saver = Saver(self._sender)
        #: Save every image of a result into a folder (see :meth:`Saver.save`).
        self.save: Final = self._saver.save
        #: Download one image URL into memory (see :meth:`Saver.download`).
        self.download: Final = self._saver.download

    def __repr__(self) -> str:
        state = "closed" if self.closed else "opened" if self._sender.opened else "unopened"
        return f"<ttapi_async.Client base_url={self.base_url!r} state={state}>"

    # ------------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> Self:
        if self.closed:
            raise ClientClosedError("cannot reopen a client once it has been closed")
        self._sender.transport()
        # The waiter's scheduler lives in a task group owned by this context: entered
        # here, cancelled and left in __aexit__ (anyio requires the same task for both).
        tg = anyio.create_task_group()
        await tg.__aenter__()
        try:
            if self.broker is not None:
                # First: subscribed to the fleet's outcomes before any wait can start.
                await tg.start(self.broker.run)
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
        return self.waiter.running

    async def aclose(self) -> None:
        """Close the connection pool. Further calls raise :class:`ClientClosedError`.

        Inside ``async with`` the exit does this, after stopping the waiter.
        """
        self.waiter._close()  # noqa: SLF001
        await self._sender.aclose()

    @property
    def closed(self) -> bool:
        """True once the client has been closed."""
        return self._sender.closed

    # ------------------------------------------------------------------ resources

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
        journal: str | os.PathLike[str] | JournalStore | None = None,
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
            journal: a SQLite file, an open :class:`Journal`, or any other
                :class:`JournalStore`, recording each item's state; the same run started
                again resumes from it.
            resubmit_unknown: with a journal, submit again the items whose outcome was
                unknown (they may have been billed once already).
            retry_failed: with a journal, run again the items that failed.
            wait_timeout: bound of each 4o wait (default: the client's timeout). A wait
                that times out hands back the job id; a resumed run waits again.
            on_progress: called with a :class:`BulkProgress` on every change.

        The client's ``requests_per_second`` budget applies to every request, shared
        with the waiter's polls (submits first). Requires ``async with Client()``.
        """
        return BulkRun(
            RunParts(
                sender=self._sender,
                waiter=self.waiter,
                webhook=self.webhook,
                save=self._saver.save_for_run,
            ),
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
        return self._sender.deadline(timeout)
