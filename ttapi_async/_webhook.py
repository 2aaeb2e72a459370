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
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, Final, Protocol

import anyio
import attrs
from aiohttp import web

from ._errors import TOKEN_LENGTH, ResponseFormatError, ValidationError
from ._models import JobSnapshot
from ._protocol import parse_callback


__all__ = ["CallbackTarget", "WebhookReceiver"]

log = logging.getLogger("ttapi_async.webhook")

_TOKEN_BYTES: Final = 24
_MAX_EARLY: Final = 8  # callbacks kept per token until the submit returns; the oldest go first

ASGIScope = MutableMapping[str, Any]
ASGIReceive = Callable[[], Awaitable[MutableMapping[str, Any]]]
ASGISend = Callable[[MutableMapping[str, Any]], Awaitable[None]]


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

    def accept_callback(self, snapshot: JobSnapshot) -> None:
        """Take a checked callback for one of the waiter's jobs."""


@attrs.define
class _Hook:
    waiter: CallbackTarget | None  # the waiter that minted the token: its callbacks go there
    job_id: str | None
    expires: float
    early: list[JobSnapshot] = attrs.Factory(list)  # callbacks that beat the submit reply


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

    def __repr__(self) -> str:
        return f"<WebhookReceiver {self.public_url!r} tokens={len(self._hooks)}>"

    # ------------------------------------------------------------------ registry

    def _attach(self, waiter: CallbackTarget) -> None:
        """Hear from ``waiter`` (a client's) when its jobs end, to expire their tokens.

        Several waiters may attach; each token routes to the one that registered it.
        """
        waiter._on_end = lambda job_id: self._job_ended(waiter, job_id)  # noqa: SLF001

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

    def register(self, waiter: CallbackTarget | None = None) -> tuple[str, str]:
        """Mint a token before a submit; returns ``(token, hook_url)``.

        Callbacks on the token go to ``waiter`` (the submitting client's); with None they
        are checked and answered, and delivered nowhere.
        """
        self._purge()
        token = secrets.token_urlsafe(_TOKEN_BYTES)
        assert len(token) == TOKEN_LENGTH  # noqa: S101 - the redactor looks for this length
        expires = time.monotonic() + self.token_ttl
        self._hooks[token] = _Hook(waiter=waiter, job_id=None, expires=expires)
        heapq.heappush(self._expiry, (expires, token))
        return token, f"{self.public_url}/{token}"

    def bind(self, token: str, job_id: str) -> None:
        """Link a token to the job id the submit returned; deliver early callbacks.

        Of the callbacks kept before, those naming the job are delivered (in the order
        they came) and the others refused: forged or misrouted, they change nothing.
        """
        hook = self._hooks.get(token)
        if hook is None:
            return
        hook.job_id = job_id
        self._by_job[hook.waiter, job_id] = token
        early, hook.early = hook.early, []
        for snap in early:
            if snap.job_id == job_id:
                self.accepted += 1
                self._deliver(hook, snap)
            else:
                self._refuse(hook)
                log.warning("webhook: early callback for job %s on another job's hook", snap.job_id)

    def release(self, token: str) -> None:
        """Forget a token whose submit failed."""
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
        if len(body) > self.max_body:
            self._refuse(hook)
            return 413, "too large"
        try:
            snap = parse_callback(body)
        except ResponseFormatError:
            self._refuse(hook)
            return 400, "not a job callback"
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
            hook.waiter.accept_callback(snap)

    # ------------------------------------------------------------------ adapters

    async def aiohttp_handler(self, request: web.Request) -> web.Response:
        """Aiohttp handler for ``POST <path>/{token}``."""
        token = request.match_info.get("token") or request.path.rstrip("/").rsplit("/", 1)[-1]
        if request.content_length is not None and request.content_length > self.max_body:
            self._refuse(self._hooks.get(token))
            return web.Response(status=413, text="too large")
        # read(n) returns what has arrived so far; a body may come in several segments.
        body = bytearray()
        with anyio.move_on_after(self.read_timeout) as reading:
            while len(body) <= self.max_body:
                chunk = await request.content.read(self.max_body + 1 - len(body))
                if not chunk:
                    break
                body += chunk
        if reading.cancelled_caught:
            # A stalled or trickling sender; close the connection rather than drain it.
            self._refuse(self._hooks.get(token))
            response = web.Response(status=408, text="body too slow")
            response.force_close()
            return response
        status, text = self.handle(token, bytes(body))
        return web.Response(status=status, text=text)

    def add_to_app(self, app: web.Application, path: str | None = None) -> None:
        """Route ``POST <path>/{token}`` of an aiohttp app to this receiver.

        ``path`` defaults to the path of ``public_url``.
        """
        prefix = path if path is not None else _path_of(self.public_url)
        app.router.add_post(prefix.rstrip("/") + "/{token}", self.aiohttp_handler)

    async def asgi_app(self, scope: ASGIScope, receive: ASGIReceive, send: ASGISend) -> None:
        """An ASGI app (FastAPI/Starlette ``app.mount(path, receiver.asgi_app)``).

        The token is the last segment of the request path.
        """
        if scope["type"] != "http":
            return
        if scope.get("method") != "POST":
            await _asgi_reply(send, 405, "POST only")
            return
        token = str(scope.get("path", "")).rstrip("/").rsplit("/", 1)[-1]
        chunks: list[bytes] = []
        size = 0
        more = True
        with anyio.move_on_after(self.read_timeout) as reading:
            while more and size <= self.max_body:
                message = await receive()
                if message.get("type") == "http.disconnect":
                    return  # the sender went away: nothing to answer, nothing accepted
                chunk = message.get("body", b"")
                size += len(chunk)
                chunks.append(chunk)
                more = bool(message.get("more_body"))
        if reading.cancelled_caught or size > self.max_body:  # stalled, trickling or huge
            self._refuse(self._hooks.get(token))
            status, text = (
                (408, "body too slow") if reading.cancelled_caught else (413, "too large")
            )
        else:
            status, text = self.handle(token, b"".join(chunks))
        await _asgi_reply(send, status, text)

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
        app = web.Application(client_max_size=self.max_body + 1024)
        self.add_to_app(app)
        # aiohttp closes a connection still waiting for a request (none yet, or headers
        # cut short) after keepalive_timeout: over an hour by default. The body's own
        # bound is aiohttp_handler's.
        runner = web.AppRunner(app, access_log=None, keepalive_timeout=self.read_timeout)
        await runner.setup()
        try:
            site = web.TCPSite(runner, host, port)
            await site.start()
            # aiohttp exposes the bound port (for port=0) only through the site's server.
            sockets = getattr(site._server, "sockets", None) or []  # noqa: SLF001
            bound = sockets[0].getsockname()[1] if sockets else port
            task_status.started(bound)
            await anyio.sleep_forever()
        finally:
            with anyio.CancelScope(shield=True):
                await runner.cleanup()


def _path_of(url: str) -> str:
    rest = url.split("://", 1)[1]
    return "/" + rest.split("/", 1)[1] if "/" in rest else "/"


async def _asgi_reply(send: ASGISend, status: int, text: str) -> None:
    body = text.encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"text/plain"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
