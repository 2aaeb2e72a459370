"""The emulator's front door: everything between the socket and a route's handler.

Strictly private. TTAPI's gateway sits in front of every product (wire §1, §2.4): it
checks the key, refuses what it cannot take, and answers its own failures in the TTAPI
envelope. Here that is :class:`Gateway`: it dispatches on the path through a dict (no
router, no middlewares, no access log: the emulator is benchmarked, so the hot path is a
few dict lookups), serves ``/files/``, caps and times bodies (413, 408), checks
``TT-API-KEY`` (and Bearer on ``/v1``), and carries out the injected :class:`Fault` s.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

import anyio
from aiohttp import web

from ttapi_async import _json
from ttapi_async._protocol import API_KEY_HEADER

from ._cdn import FILES_PREFIX
from ._faults import pick
from ._replies import (
    JSON_TYPE,
    MALFORMED_BODY,
    STATUS_MESSAGES,
    UNAUTHORIZED_BODY,
    envelope_error,
    openai_error,
    reply,
    status_reply,
)
from ._routes import SlowBody


if TYPE_CHECKING:
    import asyncio
    import random

    from aiohttp.abc import AbstractStreamWriter
    from aiohttp.http_parser import RawRequestMessage
    from aiohttp.streams import StreamReader
    from aiohttp.web_protocol import RequestHandler

    from ._cdn import Cdn
    from ._counters import Counters
    from ._faults import Fault
    from ._jobs import JobBoard
    from ._routes import Route


__all__ = ["Gateway", "GatewayKnobs"]


class GatewayKnobs(Protocol):
    """The emulator's settings the gateway reads (each may change while the server runs)."""

    api_key: str
    max_body: int
    read_timeout: float


class Gateway:
    """Dispatches every request: files, auth, body caps, injected faults, then the route."""

    def __init__(
        self,
        knobs: GatewayKnobs,
        counters: Counters,
        rng: random.Random,
        routes: dict[str, Route],
        cdn: Cdn,
        board: JobBoard,
    ) -> None:
        """Dispatch to ``routes``; serve files from ``cdn``; swap fetches among ``board``'s."""
        self._knobs = knobs
        self._counters = counters
        self._rng = rng
        self._routes = routes
        self._cdn = cdn
        self._board = board
        #: Injected faults, in the order added.
        self.faults: list[Fault] = []
        self._loop: asyncio.AbstractEventLoop | None = None

    def server(self, loop: asyncio.AbstractEventLoop) -> web.Server:
        """The low-level aiohttp server, answering through this gateway on ``loop``."""
        self._loop = loop
        # access_log=None: logging every request would dominate a benchmark.
        return web.Server(self.handle, request_factory=self._make_request, access_log=None)

    def _make_request(
        self,
        message: RawRequestMessage,
        payload: StreamReader,
        protocol: RequestHandler,
        writer: AbstractStreamWriter,
        task: asyncio.Task[None],
    ) -> web.BaseRequest:
        # aiohttp's own factory caps a body at 1 MiB (client_max_size), which refuses a
        # valid edit with a 2 MB image in plain text; the cap here is max_body, read per
        # request so it can change while the server runs. It also caps each multipart part.
        loop = self._loop
        assert loop is not None  # noqa: S101 - the server runs only while entered
        return web.BaseRequest(
            message, payload, protocol, writer, task, loop, client_max_size=self._knobs.max_body
        )

    async def handle(self, request: web.BaseRequest) -> web.StreamResponse:
        """Answer one request."""
        path = request.path
        if path.startswith(FILES_PREFIX):
            return self._cdn.serve(request, path[len(FILES_PREFIX) :])
        counters = self._counters
        counters.requests[path] += 1
        route = self._routes.get(path)
        if route is None:
            counters.responses[404] += 1
            return envelope_error(404, STATUS_MESSAGES[404])
        if not self.faults:  # the hot path
            resp = await self._process(route, request)
            counters.responses[resp.status] += 1
            return resp
        chosen, before, after = pick(self.faults, path, self._rng)
        if before > 0:
            await anyio.sleep(before)
        if chosen is not None and not chosen.processes_first:
            return self._fault_reply(request, chosen, route)
        resp = await self._process(route, request)
        if after > 0:
            await anyio.sleep(after)
        if chosen is not None and chosen.kind == "swap":
            resp = self._swap(resp)
        elif chosen is not None:
            return self._fault_reply(request, chosen, route)
        counters.responses[resp.status] += 1
        return resp

    async def _process(self, route: Route, request: web.BaseRequest) -> web.StreamResponse:
        if request.method not in route.methods:
            return envelope_error(405, STATUS_MESSAGES[405])
        length = request.content_length
        if length is not None and length > self._knobs.max_body:
            # Refused before reading (and before auth, as a gateway would): the body is
            # never buffered, only drained and dropped before the connection closes.
            return self._body_refused(route, 413)
        try:
            return await self._authorized(route, request)
        except web.HTTPRequestEntityTooLarge:
            # A body with no Content-Length (chunked) that grew past max_body while read.
            return self._body_refused(route, 413)
        except SlowBody:
            resp = self._body_refused(route, 408)
            # Write the reply now and close: aiohttp would otherwise linger after the
            # handler, waiting (10 s) for the rest of a body whose sender has stalled.
            await resp.prepare(request)
            await resp.write_eof()
            request.protocol.force_close()
            return resp

    def _body_refused(self, route: Route, status: int) -> web.Response:
        """413 (too large) or 408 (too slow) in the route's error shape, then close."""
        if status == 413:  # noqa: PLR2004
            self._counters.bodies_too_large += 1
            message = f"Request body too large: the limit is {self._knobs.max_body} bytes."
        else:
            self._counters.bodies_timed_out += 1
            message = (
                f"The request body did not arrive within {self._knobs.read_timeout:g} seconds."
            )
        resp = openai_error(status, message) if route.openai else envelope_error(status, message)
        # The rest of the body is unread, so the connection cannot carry another request.
        # For a 413 aiohttp reads and drops that rest for a while before closing: closing a
        # socket with unread data would reset it, and the client could lose this reply.
        resp.force_close()
        return resp

    async def _authorized(self, route: Route, request: web.BaseRequest) -> web.StreamResponse:
        headers = request.headers
        expected = self._knobs.api_key
        key = headers.get(API_KEY_HEADER)
        if key != expected:
            key = None
            if route.openai:
                # The official openai package sends only "Authorization: Bearer <key>".
                auth = headers.get("Authorization")
                if auth is not None and auth[:7].lower() == "bearer ":
                    bearer = auth[7:].strip()
                    key = bearer if bearer == expected else None
            if key is None:
                return reply(401, UNAUTHORIZED_BODY)
        return await route.handler(request, key)

    def _fault_reply(
        self, request: web.BaseRequest, fault: Fault, route: Route
    ) -> web.StreamResponse:
        counters = self._counters
        if fault.kind == "drop":
            counters.drops += 1
            # Close the socket with no response at all. Writing the dummy reply below then
            # fails inside aiohttp with a ConnectionError, which it handles quietly.
            transport = request.transport
            if transport is not None:
                transport.close()
            request.protocol.force_close()
            return web.Response()
        if fault.kind == "malformed":
            counters.responses[200] += 1
            body = fault.body if fault.body is not None else MALFORMED_BODY
            return web.Response(body=body, content_type=fault.content_type or JSON_TYPE)
        status = fault.status
        counters.responses[status] += 1
        headers = (
            {"Retry-After": f"{fault.retry_after:g}"} if fault.retry_after is not None else None
        )
        if fault.body is not None:
            return web.Response(
                body=fault.body,
                status=status,
                content_type=fault.content_type or JSON_TYPE,
                headers=headers,
            )
        return status_reply(status, openai=route.openai, headers=headers)

    def _swap(self, resp: web.StreamResponse) -> web.StreamResponse:
        """Answer a successful fetch with another job's body (``Fault(kind="swap")``)."""
        body = resp.body if isinstance(resp, web.Response) else None
        if resp.status != 200 or not isinstance(body, bytes):  # noqa: PLR2004
            return resp
        other = self._board.swapped(_json.loads(body).get("jobId"))
        if other is None:
            return resp
        return reply(200, _json.dumps(other.body()))
