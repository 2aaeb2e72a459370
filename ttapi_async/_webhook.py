"""WebhookReceiver: TTAPI's hookUrl callbacks turned into resolved waits.

Strictly private; ``ttapi_async.WebhookReceiver`` is the public name. TTAPI POSTs a job's
final state (the fetch body) to the job's ``hookUrl``, unsigned. So:

* Each job gets its own unguessable token in its hook URL
  (``<public_url>/<token>``), registered **before** the submit is sent: callbacks that
  beat the submit's reply are kept (a few per token) and, once the job id is known, those
  naming it are delivered and the others refused; a cross-job callback never displaces
  the true one.
* A token belongs to the waiter (the client) that minted it, so one receiver serves
  several clients: each callback reaches the waiter of its token, and only it
  (:meth:`WebhookReceiver._deliver` is that one seam).
* A callback is accepted only for a known, unexpired token whose job id matches; anything
  else gets a 4xx and changes nothing. The handler never answers 500.
* A request body must arrive within ``read_timeout`` seconds (else 408) and stay under
  ``max_body`` bytes (else 413): a slow or stalled sender cannot pin a connection.
* By default the waiter confirms a callback with one fetch before trusting it, so a forged
  SUCCESS for a running job changes nothing. Duplicates are counted and ignored.
* Tokens never appear in logs, reprs or errors; they live ``token_ttl`` seconds.

The core is :meth:`WebhookReceiver.handle` over ``(token, body bytes)``; the aiohttp handler,
the ASGI app and :meth:`serve` are thin adapters around it.
"""

from __future__ import annotations

import heapq
import logging
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import TYPE_CHECKING, Final, Protocol

import anyio
import attrs
from aiohttp import web

from . import _hookhttp
from ._errors import TOKEN_LENGTH, ResponseFormatError, TTAPIError, ValidationError
from ._fleet import CallbackVerdict, JobRecord, token_digest
from ._hookhttp import ASGIReceive, ASGIScope, ASGISend
from ._models import JobSnapshot
from ._protocol import parse_callback


if TYPE_CHECKING:
    from ._intake import CallbackIntake


__all__ = ["CallbackTarget", "SharedHooks", "WebhookReceiver"]

log = logging.getLogger("ttapi_async.webhook")

_TOKEN_BYTES: Final = 24
_MAX_EARLY: Final = 8  # callbacks kept per token until the submit returns; the oldest go first


class _RefusalCounter(Protocol):
    callbacks_refused: int


class CallbackTarget(Protocol):
    """What the receiver needs of a waiter (:class:`~ttapi_async.JobWaiter` is one).

    A Protocol, not the waiter's class: the receiver sits beside the waiter, not above it.
    """

    #: Called with a job's id when it ends; the receiver sets it (see ``_attach``).
    _on_end: Callable[[str], object] | None

    @property
    def stats(self) -> _RefusalCounter:
        """The waiter's counters; the receiver counts callbacks it refused there."""

    @property
    def intake(self) -> CallbackIntake:
        """Where checked callbacks go: for the waiter's jobs, or adopted (another worker's)."""

    @property
    def running(self) -> bool:
        """True while the waiter runs (its client is open)."""


class SharedHooks(Protocol):
    """Where several workers share hook tokens (:class:`~ttapi_async.RedisBroker` is one).

    Tokens travel as their SHA-256 digests (:func:`~ttapi_async._fleet.token_digest`).
    Each method raises a :class:`TTAPIError` when the store cannot be reached.
    """

    async def register_hook(self, digest: str, ttl: float) -> None:
        """Store a new, unbound token (before the submit is sent)."""

    async def bind_hook(self, digest: str, record: JobRecord, ttl: float) -> list[bytes]:
        """Bind a token to its job and store the job's record; the early callbacks' bodies."""

    def forget_hook(self, digest: str) -> None:
        """Drop a token whose submit failed (queued)."""

    async def check_callback(self, digest: str, snapshot: JobSnapshot) -> CallbackVerdict:
        """Judge a callback against the shared token (and claim its confirmation)."""

    async def job_route(self, job_id: str) -> str | None:
        """The route a job of the fleet was submitted on (None: unknown)."""


@attrs.define
class _Hook:
    waiter: CallbackTarget | None  # the waiter that minted the token: its callbacks go there
    job_id: str | None
    expires: float
    early: list[JobSnapshot] = attrs.Factory(list)  # callbacks that beat the submit reply
    route: str = "4o-image"  # the job route of its job (set by bind)


class WebhookReceiver:
    """Receives TTAPI's hookUrl callbacks and resolves the matching waits.

    Args:
        public_url: the URL TTAPI can reach, up to the receiver's path, e.g.
            ``"https://api.example.com/ttapi/hook"``; each job's hook URL is this plus
            ``/<token>``.
        max_body: larger callbacks are refused (413).
        token_ttl: seconds a job's token stays valid after the submit.
        grace: seconds a token stays valid after its job ended (late duplicates get 200).
        read_timeout: seconds a callback's body may take to arrive (else 408); with
            :meth:`serve`, also how long a connection may sit idle or send its headers.

    The token is in the URL path: keep access logs off for this route, or scrub them
    (:meth:`serve` logs nothing; an aiohttp or uvicorn app you mount it in may).

    Pass it to the client (``Client(webhook=receiver)``; several clients may share one),
    then mount it:
    ``receiver.add_to_app(app)`` for aiohttp, ``app.mount(path, receiver.asgi_app)`` for
    FastAPI/Starlette, or ``await receiver.serve(host, port)`` on its own.
    """

    def __init__(
        self,
        public_url: str,
        *,
        max_body: int = 256 * 1024,
        token_ttl: float = 3 * 3600.0,
        grace: float = 120.0,
        read_timeout: float = 10.0,
    ) -> None:
        if not public_url.startswith(("http://", "https://")):
            raise ValidationError("public_url", public_url, "an http(s) URL is required")
        self.public_url: Final = public_url.rstrip("/")
        self.max_body = max_body
        self.token_ttl = token_ttl
        self.grace = grace
        self.read_timeout = read_timeout
        self._hooks: OrderedDict[str, _Hook] = OrderedDict()
        self._expiry: list[tuple[float, str]] = []  # (expires, token), a heap
        # (waiter, job id) -> token: two clients (two servers) may see the same job id.
        self._by_job: dict[tuple[CallbackTarget | None, str], str] = {}
        self.accepted = 0
        self.refused = 0
        # With a shared store: tokens live there too, and callbacks for jobs other workers
        # submitted go to this process's waiter.
        self._shared: SharedHooks | None = None
        self._fleet_waiter: CallbackTarget | None = None
        # Telemetry: told the status of every callback answered (None: off).
        self._count: Callable[[int | None], object] | None = None

    def __repr__(self) -> str:
        return f"<WebhookReceiver {self.public_url!r} tokens={len(self._hooks)}>"

    # ------------------------------------------------------------------ registry

    def _attach(
        self,
        waiter: CallbackTarget,
        shared: SharedHooks | None = None,
        count: Callable[[int | None], object] | None = None,
    ) -> None:
        """Hear from ``waiter`` (a client's) when its jobs end, to expire their tokens.

        Several waiters may attach; each token routes to the one that registered it. With
        ``shared`` (the client's broker) tokens are shared with the other workers, and
        callbacks for their jobs go to ``waiter``. ``count`` (the client's telemetry) is
        told the status of each callback answered; the first client with one keeps it (a
        callback to an unknown token belongs to no client).
        """
        if count is not None and self._count is None:
            self._count = count
        waiter._on_end = lambda job_id: self._job_ended(waiter, job_id)  # noqa: SLF001
        if shared is not None:
            if self._shared is not None and self._shared is not shared:
                raise ValidationError("broker", shared, "one receiver shares one broker")
            self._shared = shared
            if self._fleet_waiter is None:
                self._fleet_waiter = waiter

    def _job_ended(self, waiter: CallbackTarget | None, job_id: str) -> None:
        """Keep a finished job's token only for the grace period (late duplicates)."""
        token = self._by_job.pop((waiter, job_id), None)
        if token is None:
            return
        hook = self._hooks.get(token)
        if hook is not None:
            hook.expires = min(hook.expires, time.monotonic() + self.grace)
            heapq.heappush(self._expiry, (hook.expires, token))

    def _knows(self, token: str) -> bool:
        """True for a token this receiver minted and still holds (for redaction)."""
        return token in self._hooks

    async def register(self, waiter: CallbackTarget | None = None) -> tuple[str, str]:
        """Mint a token before a submit; returns ``(token, hook_url)``.

        Callbacks on the token go to ``waiter`` (the submitting client's); with None they
        are checked and answered, and delivered nowhere. With a shared store the token
        (its digest) is stored there before this returns, so any worker accepts its
        callback; if the store is unreachable the token stays this process's own.
        """
        self._purge()
        token = secrets.token_urlsafe(_TOKEN_BYTES)
        assert len(token) == TOKEN_LENGTH  # noqa: S101 - the redactor looks for this length
        expires = time.monotonic() + self.token_ttl
        self._hooks[token] = _Hook(waiter=waiter, job_id=None, expires=expires)
        heapq.heappush(self._expiry, (expires, token))
        if self._shared is not None:
            try:
                await self._shared.register_hook(token_digest(token), self.token_ttl)
            except TTAPIError as exc:  # the waiter polls such a job often (degraded)
                log.warning("webhook: token not shared (%s); its callback must land here", exc)
        return token, f"{self.public_url}/{token}"

    async def bind(self, token: str, job_id: str, *, route: str = "4o-image") -> None:
        """Link a token to the job id the submit returned; deliver early callbacks.

        Of the callbacks kept before, those naming the job are delivered (in the order
        they came) and the others refused: forged or misrouted, they change nothing.
        With a shared store, the job's record (``route``, submit time) is stored too, so
        any worker can wait on it.
        """
        hook = self._hooks.get(token)
        if hook is None:
            return
        hook.job_id = job_id
        hook.route = route
        self._by_job[hook.waiter, job_id] = token
        early, hook.early = hook.early, []
        if self._shared is not None:
            try:
                digest = token_digest(token)
                record = JobRecord(
                    job_id, route, hooked=True, submitted_at=time.time(), hook=digest
                )
                bodies = await self._shared.bind_hook(digest, record, self.token_ttl)
            except TTAPIError as exc:
                log.warning("webhook: token not bound in the shared store (%s)", exc)
                bodies = []
            for body in bodies:
                try:
                    early.append(parse_callback(body))
                except ResponseFormatError:
                    self._refuse(hook)
        for snap in early:
            if snap.job_id == job_id:
                self.accepted += 1
                self._deliver(hook, snap)
            else:
                self._refuse(hook)
                log.warning("webhook: early callback for job %s on another job's hook", snap.job_id)

    def release(self, token: str) -> None:
        """Forget a token whose submit failed."""
        if self._shared is not None:
            self._shared.forget_hook(token_digest(token))
        hook = self._hooks.pop(token, None)
        if hook is not None and hook.job_id is not None:
            self._by_job.pop((hook.waiter, hook.job_id), None)

    def _purge(self) -> None:
        # A heap by expiry, not the minting order: a finished job's token expires after
        # the grace period even while older tokens of long jobs are still live. A token
        # whose expiry was shortened has a stale, later entry too; it finds nothing to do.
        now = time.monotonic()
        expiry = self._expiry
        while expiry and expiry[0][0] <= now:
            _, token = heapq.heappop(expiry)
            hook = self._hooks.get(token)
            if hook is None or hook.expires > now:
                continue
            del self._hooks[token]
            if hook.job_id is not None:
                self._by_job.pop((hook.waiter, hook.job_id), None)

    # ------------------------------------------------------------------ the core

    def handle(self, token: str, body: bytes) -> tuple[int, str]:
        """Process one callback; returns ``(http status, short text)`` for the reply.

        200 accepted (or a harmless duplicate), 202 kept until the submit returns,
        400 not a job body or not this token's job, 404 unknown or expired token,
        413 too large.
        Never raises.
        """
        try:
            return self._handle(token, body)
        except Exception:  # the handler never answers 500
            log.exception("webhook: unexpected error while handling a callback")
            self.refused += 1
            return 400, "bad callback"

    def _handle(self, token: str, body: bytes) -> tuple[int, str]:
        self._purge()
        hook = self._hooks.get(token)
        if hook is None or hook.expires < time.monotonic():
            self._refuse(None)
            return 404, "unknown hook"
        snap = self._parsed(hook, body)
        if not isinstance(snap, JobSnapshot):
            return snap
        if hook.job_id is None:
            # The callback beat the submit's reply: keep it until bind() tells which is
            # the job's, and count it then (accepted or refused, once). Bounded: past
            # _MAX_EARLY the oldest goes, so a flood of forged callbacks can never shut
            # out the true one that comes after it (and the backstop poll still ends
            # the job whatever a flood drops).
            if len(hook.early) >= _MAX_EARLY:
                hook.early.pop(0)
                self._refuse(hook)
            hook.early.append(snap)
            return 202, "kept"
        if snap.job_id != hook.job_id:
            self._refuse(hook)
            log.warning("webhook: callback for job %s on another job's hook", snap.job_id)
            return 400, "job mismatch"
        self.accepted += 1
        self._deliver(hook, snap)
        return 200, "ok"

    async def answer(self, token: str, body: bytes) -> tuple[int, str]:
        """Process one callback against the shared store (what the adapters call).

        Without a shared store this is :meth:`handle`. With one, any worker accepts any
        worker's token; the first worker to accept a job's callback acts on it (confirms
        it with one fetch, by default) and shares the outcome; the others answer 200 to
        the duplicates. While the store is unreachable: 503 (the only 5xx answered).
        """
        status, text = await self._answer(token, body)
        if self._count is not None:
            self._count(status)
        return status, text

    async def _answer(self, token: str, body: bytes) -> tuple[int, str]:
        shared = self._shared
        if shared is None:
            return self.handle(token, body)
        hook = self._hooks.get(token)
        snap = self._parsed(hook, body)
        if not isinstance(snap, JobSnapshot):
            return snap
        try:
            verdict = await shared.check_callback(token_digest(token), snap)
        except TTAPIError:
            if hook is not None:  # this worker's own token: it can judge the callback alone
                return self.handle(token, body)
            return 503, "store unreachable"
        if verdict.status == 200:  # noqa: PLR2004
            self.accepted += 1
            if verdict.confirm:
                target = hook.waiter if hook is not None else self._fleet_waiter
                # A worker shutting down accepts but cannot confirm: the worker awaiting
                # the job heard "callback seen" and polls it after a grace period.
                if target is not None and target.running:
                    if hook is not None:  # this worker's token: it knows the job's route
                        target.intake.adopt_callback(snap, hook.route)
                    else:  # another worker's: confirm it on the route it was made on
                        target.intake.adopt_callback(
                            snap, await self._route_of(shared, snap.job_id)
                        )
                return 200, "ok"
            return 200, "duplicate"
        if verdict.status == 202:  # noqa: PLR2004
            return 202, "kept"
        self._refuse(hook)
        if verdict.status == 400:  # noqa: PLR2004
            log.warning("webhook: callback for job %s on another job's hook", snap.job_id)
            return 400, "job mismatch"
        return 404, "unknown hook"

    @staticmethod
    async def _route_of(shared: SharedHooks, job_id: str) -> str:
        try:
            route = await shared.job_route(job_id)
        except TTAPIError:  # Redis went away meanwhile: the 4o route, as for a bare id
            route = None
        return route or "4o-image"

    def _parsed(self, hook: _Hook | None, body: bytes) -> JobSnapshot | tuple[int, str]:
        """The job a callback carries, or the answer refusing it (too large, not a job)."""
        if len(body) > self.max_body:
            self._refuse(hook)
            return 413, "too large"
        try:
            return parse_callback(body)
        except ResponseFormatError:
            self._refuse(hook)
            return 400, "not a job callback"

    def _refuse(self, hook: _Hook | None) -> None:
        """Count a refused callback (on its token's waiter too, when the token is known)."""
        self.refused += 1
        if hook is not None and hook.waiter is not None:
            hook.waiter.stats.callbacks_refused += 1

    def _deliver(self, hook: _Hook, snap: JobSnapshot) -> None:
        """Hand a checked callback to the waiter that minted its token.

        The one place a callback leaves the receiver: routing by token to the right
        waiter happens here (a scale-out would forward to the process that owns it).
        """
        if hook.waiter is not None:
            hook.waiter.intake.accept_callback(snap)

    # ------------------------------------------------------------------ adapters

    def refuse_token(self, token: str) -> None:
        """Count a callback refused before it was read (too large, too slow)."""
        self._refuse(self._hooks.get(token))
        if self._count is not None:
            self._count(None)  # refused: 413 or 408, the adapter's to say

    async def aiohttp_handler(self, request: web.Request) -> web.Response:
        """Aiohttp handler for ``POST <path>/{token}``."""
        return await _hookhttp.aiohttp_handler(self, request)

    def add_to_app(self, app: web.Application, path: str | None = None) -> None:
        """Route ``POST <path>/{token}`` of an aiohttp app to this receiver.

        ``path`` defaults to the path of ``public_url``.
        """
        prefix = path if path is not None else _hookhttp.path_of(self.public_url)
        app.router.add_post(prefix.rstrip("/") + "/{token}", self.aiohttp_handler)

    async def asgi_app(self, scope: ASGIScope, receive: ASGIReceive, send: ASGISend) -> None:
        """An ASGI app (FastAPI/Starlette ``app.mount(path, receiver.asgi_app)``).

        The token is the last segment of the request path.
        """
        await _hookhttp.asgi_app(self, scope, receive, send)

    async def serve(
        self,
        host: str = "127.0.0.1",
        port: int = 8080,
        *,
        task_status: anyio.abc.TaskStatus[int] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        """Serve the receiver on its own until cancelled (for scripts and bots).

        With ``await task_group.start(receiver.serve, host, 0)`` the bound port is returned.
        A connection that sends nothing (or only part of its headers) is closed after
        ``read_timeout`` seconds, as is an idle kept-alive one.
        """
        await _hookhttp.serve(self, host, port, task_status=task_status)
