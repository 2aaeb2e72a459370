"""The receiver over HTTP: the aiohttp handler, the ASGI app, a server of its own.

Strictly private; :class:`~ttapi_async.WebhookReceiver` exposes these as its methods. Each
adapter reads a callback's body within the receiver's bounds (``max_body`` bytes, within
``read_timeout`` seconds), answers 413 or 408 past them, and hands the rest to
:meth:`WebhookReceiver.answer`.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, Protocol

import anyio
from aiohttp import web


__all__ = [
    "ASGIReceive",
    "ASGIScope",
    "ASGISend",
    "CallbackSink",
    "aiohttp_handler",
    "asgi_app",
    "path_of",
    "serve",
]

ASGIScope = MutableMapping[str, Any]
ASGIReceive = Callable[[], Awaitable[MutableMapping[str, Any]]]
ASGISend = Callable[[MutableMapping[str, Any]], Awaitable[None]]


class CallbackSink(Protocol):
    """What the adapters need of a receiver."""

    max_body: int
    read_timeout: float

    @property
    def public_url(self) -> str:
        """Where TTAPI reaches the receiver (its path is the route's)."""

    async def answer(self, token: str, body: bytes) -> tuple[int, str]:
        """The status and text answering one callback."""

    def refuse_token(self, token: str) -> None:
        """Count a callback refused before its body was read."""


async def aiohttp_handler(sink: CallbackSink, request: web.Request) -> web.Response:
    """Answer ``POST <path>/{token}`` in an aiohttp app: read the body within bounds."""
    token = request.match_info.get("token") or request.path.rstrip("/").rsplit("/", 1)[-1]
    if request.content_length is not None and request.content_length > sink.max_body:
        sink.refuse_token(token)
        return web.Response(status=413, text="too large")
    # read(n) returns what has arrived so far; a body may come in several segments.
    body = bytearray()
    with anyio.move_on_after(sink.read_timeout) as reading:
        while len(body) <= sink.max_body:
            chunk = await request.content.read(sink.max_body + 1 - len(body))
            if not chunk:
                break
            body += chunk
    if reading.cancelled_caught:
        # A stalled or trickling sender; close the connection rather than drain it.
        sink.refuse_token(token)
        response = web.Response(status=408, text="body too slow")
        response.force_close()
        return response
    status, text = await sink.answer(token, bytes(body))
    return web.Response(status=status, text=text)


async def asgi_app(
    sink: CallbackSink, scope: ASGIScope, receive: ASGIReceive, send: ASGISend
) -> None:
    """Answer one ASGI request: the token is the last segment of the path."""
    if scope["type"] != "http":
        return
    if scope.get("method") != "POST":
        await _reply(send, 405, "POST only")
        return
    token = str(scope.get("path", "")).rstrip("/").rsplit("/", 1)[-1]
    chunks: list[bytes] = []
    size = 0
    more = True
    with anyio.move_on_after(sink.read_timeout) as reading:
        while more and size <= sink.max_body:
            message = await receive()
            if message.get("type") == "http.disconnect":
                return  # the sender went away: nothing to answer, nothing accepted
            chunk = message.get("body", b"")
            size += len(chunk)
            chunks.append(chunk)
            more = bool(message.get("more_body"))
    if reading.cancelled_caught or size > sink.max_body:  # stalled, trickling or huge
        sink.refuse_token(token)
        status, text = (408, "body too slow") if reading.cancelled_caught else (413, "too large")
    else:
        status, text = await sink.answer(token, b"".join(chunks))
    await _reply(send, status, text)


async def serve(
    sink: CallbackSink,
    host: str,
    port: int,
    *,
    task_status: anyio.abc.TaskStatus[int] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``sink`` on its own aiohttp server until cancelled; reports the bound port."""
    app = web.Application(client_max_size=sink.max_body + 1024)
    app.router.add_post(
        path_of(sink.public_url).rstrip("/") + "/{token}",
        functools.partial(aiohttp_handler, sink),
    )
    # aiohttp closes a connection still waiting for a request (none yet, or headers
    # cut short) after keepalive_timeout: over an hour by default. The body's own
    # bound is aiohttp_handler's.
    runner = web.AppRunner(app, access_log=None, keepalive_timeout=sink.read_timeout)
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


def path_of(url: str) -> str:
    """The path of ``url`` (``/`` when it has none)."""
    rest = url.split("://", 1)[1]
    return "/" + rest.split("/", 1)[1] if "/" in rest else "/"


async def _reply(send: ASGISend, status: int, text: str) -> None:
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
