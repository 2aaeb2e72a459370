"""The TTAPI emulator: a real aiohttp server on 127.0.0.1 that answers like api.ttapi.io.

Strictly private; the public door is :mod:`ttapi_async.testing`. Every wire detail follows
``ttapi-wire.md``: the OpenAI bodies on ``/v1/images/*``, the TTAPI envelope elsewhere
and for gateway errors, the 4o-image job lifecycle and its ``hookUrl`` callbacks. What the
server accepts is checked with :mod:`ttapi_async._rules`, the very table the client
checks with, so the two can never disagree on a parameter rule.

Design notes:

* The server is aiohttp's low-level :class:`aiohttp.web.Server` with one handler that
  dispatches on the path through a dict: no router, no middlewares, no access log. The
  emulator is benchmarked, so the hot path is a few dict lookups and one JSON encode.
* Images are drawn once per kind by :mod:`._imagegen` and then served from its cache.
* A 4o job's state is computed from the clock when it is fetched; the one
  ``loop.call_later`` timer per job only serves jobs nobody fetches (their callback and
  their place in the in-flight count). A timer callback cannot start a task in an anyio
  task group, so it posts the finished job on a memory stream; one dispatcher task in the
  emulator's task group starts a delivery per job. Everything is cancelled at exit.
* What can go wrong is described in :mod:`._faults` (:class:`Fault` per request,
  :class:`CallbackFaults` per hook URL); this module carries it out.
* Bodies are capped (``max_body``, 413) and timed (``read_timeout``, 408) as they are
  read, in the route's error shape: aiohttp's own 1 MiB cap answers in plain text.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import math
import random
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, Final, Literal, Self

import aiohttp
import anyio
import attrs
from aiohttp import web

from ttapi_async import _json
from ttapi_async._errors import ValidationError
from ttapi_async._images import sniff
from ttapi_async._protocol import (
    PATH_4O_FETCH,
    PATH_4O_SUBMIT,
    PATH_DALLE3,
    PATH_EDIT,
    PATH_GENERATE,
)
from ttapi_async._rules import (
    GENERATE_MODELS,
    check_dalle3,
    check_edit,
    check_fetch,
    check_generate,
    check_submit_4o,
    implied_model,
)

from . import _imagegen
from ._faults import CallbackFaults, Fault, chance, forged_body, pick, wrong_token_url


if TYPE_CHECKING:
    from types import TracebackType

    from aiohttp.abc import AbstractStreamWriter
    from aiohttp.http_parser import RawRequestMessage
    from aiohttp.streams import StreamReader
    from aiohttp.web_protocol import RequestHandler
    from anyio.abc import TaskGroup
    from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream


__all__ = [
    "CallbackFaults",
    "Charge",
    "Counters",
    "EmulatedJob",
    "Emulator",
    "Fault",
    "job_of_image",
]

JobStatus = Literal["ON_QUEUE", "SUCCESS", "FAILED"]

_FILES_PREFIX: Final = "/files/"

#: Prompt markers that make the emulator refuse (moderation) or fail (4o job) on purpose.
MODERATION_MARKER: Final = "[moderation]"
FAIL_MARKER: Final = "[fail]"

_JSON_TYPE: Final = "application/json"
_FORM_TYPES: Final = frozenset({"application/x-www-form-urlencoded", "multipart/form-data"})
_KEY_HEADER: Final = "TT-API-KEY"
_COST_4O: Final = 2
_MAX_SIDE: Final = 4096
# Gateway codes answer with the TTAPI envelope on every route, /v1 included (wire §11.1).
_GATEWAY_STATUSES: Final = frozenset({401, 402, 403, 429, 499})
# How long a stopping server waits for requests in progress before cancelling them.
_SHUTDOWN_TIMEOUT: Final = 0.25
#: Default cap of one request body. OpenAI's edits take up to 16 images of up to 50 MB
#: each (the shared rule table: 25 MB for gpt-image-1, 4 MB for dall-e-2) and publish no
#: cap on the whole body; the emulator holds a body in memory, so it stops at 64 MiB,
#: which fits any one allowed image with room to spare. ``max_body=`` raises it.
DEFAULT_MAX_BODY: Final = 64 * 1024 * 1024
#: Default seconds a request's whole body may take to arrive (a stalled sender gets 408).
DEFAULT_READ_TIMEOUT: Final = 60.0
# Recently ended jobs kept to play "another job" (cross-job callbacks, swapped fetches).
_RECENT_ENDED: Final = 8

_STATUS_MESSAGES: Final = {
    400: "Parameter error",
    401: "Wrong TT-API-KEY or email is not activated.",
    402: "Insufficient balance, please recharge.",
    403: "Account Block",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Timed out reading the request body.",
    413: "Request body too large.",
    429: "Too many requests, please try again later.",
    499: "Queue is full, please try again later.",
    500: "Internal server error",
    502: "Bad gateway",
    503: "Service temporarily unavailable",
    504: "Gateway timeout",
}
# The gateway's 401 has no "data" key (wire §1, CONFIRMED [S2]); keep it byte-exact.
_UNAUTHORIZED_BODY: Final = _json.dumps({"status": "FAILED", "message": _STATUS_MESSAGES[401]})
_MALFORMED_BODY: Final = b'{"status": "SUCC'
_JOB_FAIL_REASON: Final = "image generation failed, please try again"
_PROMPT_FAIL_REASON: Final = "prompt violation"

# OpenAI's token counts for gpt-image-1 output at 1024x1024, by quality.
_OUTPUT_TOKENS: Final = {"low": 272, "medium": 1056, "high": 4160}
_IMAGE_INPUT_TOKENS: Final = 323


# --------------------------------------------------------------------------- public models


@attrs.define
class Counters:
    """What the emulator saw and did, for assertions in tests and benchmarks."""

    #: API requests by path (unknown paths included; /files not counted here).
    requests: collections.Counter[str] = attrs.field(factory=collections.Counter)
    #: API responses by HTTP status (injected faults included; drops and /files not).
    responses: collections.Counter[int] = attrs.field(factory=collections.Counter)
    #: Accepted billable calls by path.
    billed: collections.Counter[str] = attrs.field(factory=collections.Counter)
    #: Accepted 4o submits and sync generations/edits by prompt: proves nothing ran twice.
    submits_by_prompt: collections.Counter[str] = attrs.field(factory=collections.Counter)
    #: Authenticated fetch requests.
    fetches: int = 0
    #: Callback POSTs attempted (each duplicate counts).
    callbacks_sent: int = 0
    #: Callback POSTs that raised or got a non-2xx answer.
    callbacks_failed: int = 0
    #: Callbacks skipped on purpose (``CallbackFaults.lose_rate``).
    callbacks_lost: int = 0
    #: Jobs called back twice on purpose (``CallbackFaults.duplicate_rate``).
    callbacks_duplicated: int = 0
    #: Jobs called back before their submit reply (``early_rate``, ``before_reply``).
    callbacks_early: int = 0
    #: Forged callback POSTs sent (``CallbackFaults.forge_rate``: two per job).
    callbacks_forged: int = 0
    #: Another job's callback sent to a job's hook URL (``CallbackFaults.cross_rate``).
    callbacks_crossed: int = 0
    #: Fetches answered with another job's body (``Fault(kind="swap")``).
    fetches_swapped: int = 0
    #: Image files served.
    files_served: int = 0
    #: Requests for image files past their ``url_ttl``.
    files_expired: int = 0
    #: Requests for image files that carried TT-API-KEY or Authorization (must stay 0).
    key_seen_on_files: int = 0
    #: Connections closed on purpose without a response.
    drops: int = 0
    #: Requests refused because their body was larger than ``max_body`` (HTTP 413).
    bodies_too_large: int = 0
    #: Requests whose body did not arrive within ``read_timeout`` (HTTP 408).
    bodies_timed_out: int = 0
    #: Highest in-flight count (running 4o jobs + sync calls) seen for one key.
    in_flight_peak: int = 0

    def snapshot(self) -> dict[str, Any]:
        """Return the counters as plain data (Counters turned into dicts)."""
        out: dict[str, Any] = {}
        for field in attrs.fields(Counters):
            value = getattr(self, field.name)
            out[field.name] = dict(value) if isinstance(value, collections.Counter) else value
        return out


@attrs.define
class EmulatedJob:
    """A 4o-image job as the emulator keeps it; ``created_at``/``ends_at`` are loop times."""

    job_id: str
    api_key: str = attrs.field(repr=False)
    prompt: str
    refer_images: list[str]
    hook_url: str | None = attrs.field(repr=False)
    created_at: float
    ends_at: float
    will_fail: bool
    status: JobStatus = "ON_QUEUE"
    message: str | None = None
    image_url: str | None = None
    quota: str = str(_COST_4O)
    #: ``"YYYY-MM-DD HH:MM:SS"`` in UTC once the job has ended.
    finish_time: str | None = None
    fetches: int = 0
    callbacks: int = 0


@attrs.frozen
class Charge:
    """One billed call, as the emulator's ledger (``Emulator.charges``) keeps it.

    The ledger is the server's own record of what it accepted and billed, independent of
    anything a client counts: a fault matrix reads from it how many times each prompt
    was accepted, and under which job ids.
    """

    #: The route billed (``"/openai/4o-image/generations"``, ``"/v1/images/edits"``, ...).
    path: str
    #: The prompt of the accepted request.
    prompt: str
    #: What was taken from the balance.
    cost: float
    #: The 4o job created (None for a synchronous call).
    job_id: str | None = None


def job_of_image(data: bytes) -> str | None:
    """The job id a 4o job's image served by the emulator carries, or None.

    ``"forged"`` marks the image of a forged callback (``CallbackFaults.forge_rate``),
    which belongs to no job. Other images (``/v1``, DALL-E) carry nothing.
    """
    return _imagegen.read_tag(data)


# --------------------------------------------------------------------------- reply helpers


def _reply(status: int, body: bytes, headers: Mapping[str, str] | None = None) -> web.Response:
    return web.Response(body=body, status=status, content_type=_JSON_TYPE, headers=headers)


def _envelope_error(status: int, message: str) -> web.Response:
    return _reply(status, _json.dumps({"status": "FAILED", "message": message, "data": None}))


def _openai_error(
    status: int, message: str, *, type_: str, param: str | None, code: str | None
) -> web.Response:
    err = {"message": message, "type": type_, "param": param, "code": code}
    return _reply(status, _json.dumps({"error": err}))


def _invalid_json_openai() -> web.Response:
    return _openai_error(
        400,
        "We could not parse the JSON body of your request. The body must be a JSON object.",
        type_="invalid_request_error",
        param=None,
        code=None,
    )


def _openai_code(err: ValidationError, params: Mapping[str, Any]) -> str:
    """OpenAI's ``error.code`` for a rule the request broke (wire §9)."""
    if err.param == "response_format":
        rules = GENERATE_MODELS.get(str(implied_model(params)))
        if rules is not None and not rules.response_format:
            return "unknown_parameter"
    if err.param == "size":
        return "invalid_size"
    if err.param == "prompt" and isinstance(err.value, str) and err.value.strip():
        return "string_above_max_length"
    return "invalid_value"


def _openai_validation(err: ValidationError, params: Mapping[str, Any]) -> web.Response:
    return _openai_error(
        400,
        str(err),
        type_="invalid_request_error",
        param=err.param,
        code=_openai_code(err, params),
    )


def _moderation_openai(model: str) -> web.Response:
    if model.startswith("dall-e"):
        return _openai_error(
            400,
            "Your request was rejected as a result of our safety system.",
            type_="invalid_request_error",
            param=None,
            code="content_policy_violation",
        )
    return _openai_error(
        400,
        "Your request was rejected by the safety system.",
        type_="image_generation_user_error",
        param=None,
        code="moderation_blocked",
    )


def _parse_size(size: object) -> tuple[int, int]:
    """Pixel size of ``WxH``; ``auto``, absent or nonsense (unknown models) give 1024x1024."""
    if isinstance(size, str) and "x" in size:
        w, _, h = size.partition("x")
        if w.isdigit() and h.isdigit() and 0 < int(w) <= _MAX_SIDE and 0 < int(h) <= _MAX_SIDE:
            return int(w), int(h)
    return 1024, 1024


def _utc(wall: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(wall))


def _retry_after_header(seconds: float) -> dict[str, str]:
    return {"Retry-After": f"{seconds:g}"}


_Handler = Callable[[web.BaseRequest, str], Awaitable[web.StreamResponse]]


class _SlowBody(Exception):  # noqa: N818 - a signal inside the emulator, never seen outside
    """A request body did not arrive within ``read_timeout``."""


@attrs.frozen
class _Route:
    handler: _Handler
    methods: frozenset[str]
    #: /v1 routes: Bearer auth accepted, OpenAI error shape for non-gateway 4xx.
    openai: bool


# --------------------------------------------------------------------------- the emulator


class Emulator:
    """A local TTAPI: start it with ``async with``, point a client at :attr:`url`.

    Every knob below may also be changed while the server runs (``emu.balance = 0``).
    Enter and exit it in the same task: it holds an anyio task group open in between
    (anyio's pytest plugin runs a fixture's setup and teardown in one task, as needed).
    Prompt markers: ``[moderation]`` makes ``/v1`` refuse the prompt, ``[fail]`` makes a
    4o job end FAILED. A ``hookUrl`` is really called, so tests should point it at a local
    receiver.

    Args:
        api_key: the key the server accepts; default ``"emu-" + uuid4 hex``.
        host: address to listen on.
        port: port to listen on; 0 picks a free one (read it back from :attr:`url`).
        job_duration: seconds a 4o job runs, or a ``(low, high)`` range drawn uniformly.
        job_fail_rate: share of 4o jobs that end FAILED.
        sync_latency: seconds (or range) before a ``/v1/*`` or DALL-E 3 success reply.
        balance: quota left; None is unlimited. A 4o submit costs 2, a sync call 1 per
            image; a call that costs more than what is left gets HTTP 402.
        max_in_flight: per key, running 4o jobs plus sync calls being handled; a call
            beyond it gets HTTP 499. None is unlimited.
        url_ttl: seconds a served image URL works before it answers 404.
        callbacks: how ``hookUrl`` deliveries misbehave.
        seed: seed of the RNG behind durations, failure rates and faults.
        max_body: largest request body, in bytes (see :data:`DEFAULT_MAX_BODY`); a larger
            one gets HTTP 413 in the route's error shape (OpenAI's on ``/v1``).
        read_timeout: seconds a request's whole body may take to arrive; a sender that
            stalls gets HTTP 408 and its connection is closed.

    Every image a 4o job serves carries its job id in a PNG text chunk (keyword
    ``ttapi-emulator-job``), so a saved file names the job it came from; see
    :func:`job_of_image`. :attr:`charges` is the ledger of every billed call.

    """

    def __init__(
        self,
        api_key: str | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        job_duration: float | tuple[float, float] = (0.05, 0.2),
        job_fail_rate: float = 0.0,
        sync_latency: float | tuple[float, float] = 0.0,
        balance: float | None = None,
        max_in_flight: int | None = None,
        url_ttl: float = 3600.0,
        callbacks: CallbackFaults | None = None,
        seed: int | None = None,
        max_body: int = DEFAULT_MAX_BODY,
        read_timeout: float = DEFAULT_READ_TIMEOUT,
    ) -> None:
        self.api_key: str = api_key if api_key is not None else f"emu-{uuid.uuid4().hex}"
        self.host = host
        self.port = port
        self.job_duration = job_duration
        self.job_fail_rate = job_fail_rate
        self.sync_latency = sync_latency
        self.balance = balance
        self.max_in_flight = max_in_flight
        self.url_ttl = url_ttl
        self.callbacks: CallbackFaults = callbacks if callbacks is not None else CallbackFaults()
        self.max_body = max_body
        self.read_timeout = read_timeout
        self.counters = Counters()
        self.jobs: dict[str, EmulatedJob] = {}
        #: Every billed call, in order: the server's own record of what it accepted.
        self.charges: list[Charge] = []
        self._rng = random.Random(seed)
        self._faults: list[Fault] = []
        self._in_flight: dict[str, int] = {}
        self._timers: dict[str, asyncio.TimerHandle] = {}
        # name -> (created, image, tag): a 4o job's image is tagged with its job id.
        self._files: dict[str, tuple[float, _imagegen.Rendered, str | None]] = {}
        self._recent: collections.deque[EmulatedJob] = collections.deque(maxlen=_RECENT_ENDED)
        self._url: str | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tg: TaskGroup | None = None
        self._runner: web.ServerRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self._ended_send: MemoryObjectSendStream[EmulatedJob] | None = None
        self._ended_recv: MemoryObjectReceiveStream[EmulatedJob] | None = None
        self._routes: dict[str, _Route] = {
            PATH_GENERATE: _Route(self._generate, frozenset({"POST"}), openai=True),
            PATH_EDIT: _Route(self._edit, frozenset({"POST"}), openai=True),
            PATH_DALLE3: _Route(self._dalle3, frozenset({"POST"}), openai=False),
            PATH_4O_SUBMIT: _Route(self._submit_4o, frozenset({"POST"}), openai=False),
            PATH_4O_FETCH: _Route(self._fetch, frozenset({"GET", "POST"}), openai=False),
        }

    def __repr__(self) -> str:
        """Show where the emulator listens (never the key)."""
        return f"<Emulator {self._url or 'not started'} jobs={len(self.jobs)}>"

    # ----------------------------------------------------------------------- lifecycle

    @property
    def url(self) -> str:
        """Base URL, ``http://127.0.0.1:PORT``, once the server runs."""
        if self._url is None:
            raise RuntimeError("the emulator is not running: use 'async with Emulator() as emu'")
        return self._url

    async def __aenter__(self) -> Self:
        """Start the server and the emulator's task group; return the emulator."""
        if self._tg is not None:
            raise RuntimeError("the emulator is already running")
        self._loop = asyncio.get_running_loop()
        # Draw the 4o job picture now, off the loop, so finishing a job never draws.
        if _imagegen.cached("png", *_imagegen.JOB_SIZE, alpha=False) is None:
            await anyio.to_thread.run_sync(_imagegen.job_image)
        tg = anyio.create_task_group()
        await tg.__aenter__()
        self._tg = tg
        try:
            send, recv = anyio.create_memory_object_stream[EmulatedJob](math.inf)
            self._ended_send, self._ended_recv = send, recv
            self._session = aiohttp.ClientSession()
            tg.start_soon(self._dispatch_callbacks, recv)
            # access_log=None: logging every request would dominate a benchmark.
            server = web.Server(self._handle, request_factory=self._make_request, access_log=None)
            runner = web.ServerRunner(server, shutdown_timeout=_SHUTDOWN_TIMEOUT)
            await runner.setup()
            self._runner = runner
            site = web.TCPSite(runner, self.host, self.port)
            await site.start()
            host = f"[{self.host}]" if ":" in self.host else self.host
            self._url = f"http://{host}:{site.port}"
        except BaseException as exc:
            await self._shutdown(exc)
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Stop the server, cancel pending job timers and callback deliveries."""
        await self._shutdown(exc)

    async def _shutdown(self, exc: BaseException | None) -> None:
        try:
            # Shielded: stopping must finish even while the caller is being cancelled.
            with anyio.CancelScope(shield=True):
                for handle in self._timers.values():
                    handle.cancel()
                self._timers.clear()
                runner, self._runner = self._runner, None
                if runner is not None:
                    # Stop taking requests first: a handler may still start a delivery.
                    await runner.cleanup()
        finally:
            tg, self._tg = self._tg, None
            try:
                if tg is not None:
                    tg.cancel_scope.cancel()
                    if isinstance(exc, anyio.get_cancelled_exc_class()):
                        # Let the group see the caller's cancellation, so it is not mistaken
                        # for the group's own and swallowed.
                        await tg.__aexit__(type(exc), exc, exc.__traceback__)
                    else:
                        # An error raised in the caller's block is the caller's: it must come
                        # out as itself, not wrapped in an ExceptionGroup by the task group.
                        await tg.__aexit__(None, None, None)
            finally:
                with anyio.CancelScope(shield=True):
                    await self._close_resources()

    async def _close_resources(self) -> None:
        if self._ended_send is not None:
            self._ended_send.close()
        if self._ended_recv is not None:
            self._ended_recv.close()
        self._ended_send = self._ended_recv = None
        if self._session is not None:
            await self._session.close()
            self._session = None
        self._url = None

    # ----------------------------------------------------------------------- public knobs

    def add_fault(self, fault: Fault) -> Fault:
        """Inject a fault; it applies from the next request on. Returns it (see ``fired``)."""
        self._faults.append(fault)
        return fault

    def clear_faults(self) -> None:
        """Remove every injected fault."""
        self._faults.clear()

    @property
    def faults(self) -> tuple[Fault, ...]:
        """The faults injected so far (each counts its firings in ``fired``)."""
        return tuple(self._faults)

    def file_url(self, name: str) -> str:
        """URL under which the emulator serves the image file ``name``."""
        return f"{self.url}{_FILES_PREFIX}{name}"

    # ----------------------------------------------------------------------- dispatch

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
            message, payload, protocol, writer, task, loop, client_max_size=self.max_body
        )

    async def _handle(self, request: web.BaseRequest) -> web.StreamResponse:
        path = request.path
        if path.startswith(_FILES_PREFIX):
            return self._serve_file(request, path[len(_FILES_PREFIX) :])
        counters = self.counters
        counters.requests[path] += 1
        route = self._routes.get(path)
        if route is None:
            counters.responses[404] += 1
            return _envelope_error(404, _STATUS_MESSAGES[404])
        if not self._faults:  # the hot path
            resp = await self._process(route, request)
            counters.responses[resp.status] += 1
            return resp
        chosen, before, after = pick(self._faults, path, self._rng)
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

    async def _process(self, route: _Route, request: web.BaseRequest) -> web.StreamResponse:
        if request.method not in route.methods:
            return _envelope_error(405, _STATUS_MESSAGES[405])
        length = request.content_length
        if length is not None and length > self.max_body:
            # Refused before reading (and before auth, as a gateway would): the body is
            # never buffered, only drained and dropped before the connection closes.
            return self._body_refused(route, 413)
        try:
            return await self._authorized(route, request)
        except web.HTTPRequestEntityTooLarge:
            # A body with no Content-Length (chunked) that grew past max_body while read.
            return self._body_refused(route, 413)
        except _SlowBody:
            resp = self._body_refused(route, 408)
            # Write the reply now and close: aiohttp would otherwise linger after the
            # handler, waiting (10 s) for the rest of a body whose sender has stalled.
            await resp.prepare(request)
            await resp.write_eof()
            request.protocol.force_close()
            return resp

    def _body_refused(self, route: _Route, status: int) -> web.Response:
        """413 (too large) or 408 (too slow) in the route's error shape, then close."""
        if status == 413:  # noqa: PLR2004
            self.counters.bodies_too_large += 1
            message = f"Request body too large: the limit is {self.max_body} bytes."
        else:
            self.counters.bodies_timed_out += 1
            message = f"The request body did not arrive within {self.read_timeout:g} seconds."
        if route.openai:
            resp = _openai_error(
                status, message, type_="invalid_request_error", param=None, code=None
            )
        else:
            resp = _envelope_error(status, message)
        # The rest of the body is unread, so the connection cannot carry another request.
        # For a 413 aiohttp reads and drops that rest for a while before closing: closing a
        # socket with unread data would reset it, and the client could lose this reply.
        resp.force_close()
        return resp

    @contextlib.contextmanager
    def _reading(self) -> Iterator[None]:
        """Bound the reading of a request body by ``read_timeout`` (a stalled sender)."""
        try:
            with anyio.fail_after(self.read_timeout):
                yield
        except TimeoutError:
            raise _SlowBody from None

    async def _body(self, request: web.BaseRequest) -> bytes:
        with self._reading():
            return await request.read()

    async def _authorized(self, route: _Route, request: web.BaseRequest) -> web.StreamResponse:
        headers = request.headers
        key = headers.get(_KEY_HEADER)
        if key != self.api_key:
            key = None
            if route.openai:
                # The official openai package sends only "Authorization: Bearer <key>".
                auth = headers.get("Authorization")
                if auth is not None and auth[:7].lower() == "bearer ":
                    bearer = auth[7:].strip()
                    key = bearer if bearer == self.api_key else None
            if key is None:
                return _reply(401, _UNAUTHORIZED_BODY)
        return await route.handler(request, key)

    def _fault_reply(
        self, request: web.BaseRequest, fault: Fault, route: _Route
    ) -> web.StreamResponse:
        if fault.kind == "drop":
            self.counters.drops += 1
            # Close the socket with no response at all. Writing the dummy reply below then
            # fails inside aiohttp with a ConnectionError, which it handles quietly.
            transport = request.transport
            if transport is not None:
                transport.close()
            request.protocol.force_close()
            return web.Response()
        if fault.kind == "malformed":
            self.counters.responses[200] += 1
            body = fault.body if fault.body is not None else _MALFORMED_BODY
            return web.Response(body=body, content_type=fault.content_type or _JSON_TYPE)
        status = fault.status
        self.counters.responses[status] += 1
        headers = _retry_after_header(fault.retry_after) if fault.retry_after is not None else None
        if fault.body is not None:
            return web.Response(
                body=fault.body,
                status=status,
                content_type=fault.content_type or _JSON_TYPE,
                headers=headers,
            )
        if status == 401:  # noqa: PLR2004
            return _reply(401, _UNAUTHORIZED_BODY, headers)
        message = _STATUS_MESSAGES.get(status, f"HTTP {status}")
        if route.openai and 400 <= status < 500 and status not in _GATEWAY_STATUSES:  # noqa: PLR2004
            err = {"message": message, "type": "invalid_request_error", "param": None, "code": None}
            return _reply(status, _json.dumps({"error": err}), headers)
        envelope = {"status": "FAILED", "message": message, "data": None}
        return _reply(status, _json.dumps(envelope), headers)

    # ----------------------------------------------------------------------- accounting

    def _admit(self, key: str, cost: float, path: str) -> web.Response | None:
        """Bill an accepted call and take an in-flight slot, or say why not."""
        balance = self.balance
        if balance is not None and balance < cost:
            return _envelope_error(402, _STATUS_MESSAGES[402])
        current = self._in_flight.get(key, 0)
        cap = self.max_in_flight
        if cap is not None and current >= cap:
            return _envelope_error(499, _STATUS_MESSAGES[499])
        current += 1
        self._in_flight[key] = current
        self.counters.in_flight_peak = max(self.counters.in_flight_peak, current)
        if balance is not None:
            self.balance = balance - cost
        self.counters.billed[path] += 1
        return None

    def _release(self, key: str) -> None:
        left = self._in_flight.get(key, 0) - 1
        if left > 0:
            self._in_flight[key] = left
        else:
            self._in_flight.pop(key, None)

    def _draw(self, value: float | tuple[float, float]) -> float:
        if isinstance(value, tuple):
            low, high = value
            return max(0.0, low if low == high else self._rng.uniform(low, high))
        return max(0.0, float(value))

    # ----------------------------------------------------------------------- images

    async def _image(self, fmt: str, width: int, height: int, *, alpha: bool) -> _imagegen.Rendered:
        found = _imagegen.cached(fmt, width, height, alpha=alpha)
        if found is not None:
            return found
        # First request of this kind: draw it in a worker thread, not on the loop.
        return await anyio.to_thread.run_sync(
            functools.partial(_imagegen.image, fmt, width, height, alpha=alpha)
        )

    def _new_file(
        self, image: _imagegen.Rendered, created: float | None = None, tag: str | None = None
    ) -> str:
        """Serve ``image`` under a new name; a ``tag`` (PNG only) is written into its bytes."""
        ext = "jpg" if image.mime == "image/jpeg" else image.mime.removeprefix("image/")
        name = f"{uuid.uuid4().hex}.{ext}"
        loop = self._loop
        assert loop is not None  # noqa: S101 - only called while running
        self._files[name] = (loop.time() if created is None else created, image, tag)
        return f"{self._url}{_FILES_PREFIX}{name}"

    def _serve_file(self, request: web.BaseRequest, name: str) -> web.StreamResponse:
        counters = self.counters
        headers = request.headers
        if _KEY_HEADER in headers or "Authorization" in headers:
            counters.key_seen_on_files += 1
        if request.method not in {"GET", "HEAD"}:
            return web.Response(status=405, text="Method Not Allowed")
        entry = self._files.get(name)
        if entry is None:
            return web.Response(status=404, text="Not Found")
        created, image, tag = entry
        loop = self._loop
        assert loop is not None  # noqa: S101 - the server runs only while entered
        if loop.time() - created > self.url_ttl:
            counters.files_expired += 1
            return web.Response(status=404, text="The link has expired")
        counters.files_served += 1
        # A job's image names its job in a text chunk, added as it is served: one copy of
        # the picture in memory for all jobs, and each saved file says where it came from.
        data = image.data if tag is None else _imagegen.tag_png(image.data, tag)
        return web.Response(body=data, content_type=image.mime)

    async def _images_body(
        self, p: Mapping[str, Any], model: str, input_images: int
    ) -> dict[str, Any]:
        """Build the OpenAI ImagesResponse for accepted parameters."""
        n = p.get("n") or 1
        created = int(time.time())
        if model in {"dall-e-2", "dall-e-3"}:
            width, height = _parse_size(p.get("size"))
            image = await self._image("png", width, height, alpha=False)
            b64 = p.get("response_format") == "b64_json"
            items: list[dict[str, Any]] = []
            for _ in range(n):
                item: dict[str, Any] = (
                    {"b64_json": image.b64} if b64 else {"url": self._new_file(image)}
                )
                if model == "dall-e-3":
                    item["revised_prompt"] = f"A detailed rendering of: {p['prompt']}"
                items.append(item)
            return {"created": created, "data": items}
        # gpt-image-1, and any model the rules do not know, answer the gpt-image way.
        fmt = p.get("output_format")
        fmt = fmt if fmt in _imagegen.MIME_TYPES else "png"
        alpha = p.get("background") == "transparent" and fmt != "jpeg"
        width, height = _parse_size(p.get("size"))
        image = await self._image(fmt, width, height, alpha=alpha)
        quality = p.get("quality")
        quality = quality if quality in _OUTPUT_TOKENS else "high"
        text_tokens = max(1, len(p["prompt"]) // 4)
        image_tokens = _IMAGE_INPUT_TOKENS * input_images
        output_tokens = n * _OUTPUT_TOKENS[quality] * width * height // (1024 * 1024)
        return {
            "created": created,
            "data": [{"b64_json": image.b64}] * n,
            "usage": {
                "input_tokens": text_tokens + image_tokens,
                "input_tokens_details": {"image_tokens": image_tokens, "text_tokens": text_tokens},
                "output_tokens": output_tokens,
                "total_tokens": text_tokens + image_tokens + output_tokens,
            },
            "background": "transparent" if alpha else "opaque",
            "output_format": fmt,
            "quality": quality,
            "size": f"{width}x{height}",
        }

    async def _sync_images(
        self, key: str, path: str, p: Mapping[str, Any], input_images: int
    ) -> web.Response:
        """Moderation, billing, latency and the body of an accepted /v1 images call."""
        model = str(implied_model(p))  # the rules passed: a model name string
        prompt: str = p["prompt"]
        if MODERATION_MARKER in prompt:
            return _moderation_openai(model)
        cost = p.get("n") or 1
        denied = self._admit(key, cost, path)
        if denied is not None:
            return denied
        self.counters.submits_by_prompt[prompt] += 1
        self.charges.append(Charge(path, prompt, cost))
        try:
            latency = self._draw(self.sync_latency)
            if latency > 0:
                await anyio.sleep(latency)
            body = await self._images_body(p, model, input_images)
        finally:
            self._release(key)
        return _reply(200, _json.dumps(body))

    # ----------------------------------------------------------------------- /v1 routes

    async def _generate(self, request: web.BaseRequest, key: str) -> web.StreamResponse:
        body = await self._body(request)
        try:
            p = _json.loads(body)
        except ValueError:
            return _invalid_json_openai()
        if not isinstance(p, dict):
            return _invalid_json_openai()
        try:
            check_generate(p)
        except ValidationError as err:
            return _openai_validation(err, p)
        return await self._sync_images(key, PATH_GENERATE, p, 0)

    async def _edit(self, request: web.BaseRequest, key: str) -> web.StreamResponse:
        if request.content_type != "multipart/form-data":
            return _openai_error(
                400,
                f"Invalid Content-Type header ({request.content_type}), "
                "expected multipart/form-data.",
                type_="invalid_request_error",
                param=None,
                code=None,
            )
        p: dict[str, Any] = {}
        images: list[bytes] = []
        mask: bytes | None = None
        total = 0
        try:
            with self._reading():
                reader = await request.multipart()
                async for part in reader:
                    if not isinstance(part, aiohttp.BodyPartReader):
                        continue  # a nested multipart: nothing OpenAI sends
                    name = part.name or ""
                    data = bytes(await part.read())  # each part is capped at max_body ...
                    total += len(data)
                    if total > self.max_body:  # ... and so are all of them together
                        raise web.HTTPRequestEntityTooLarge(
                            max_size=self.max_body, actual_size=total
                        )
                    if name == "image" or name.startswith("image["):
                        images.append(data)
                    elif name == "mask":
                        mask = data
                    else:
                        p[name] = data.decode("utf-8", "replace")
        except ValueError:
            return _openai_error(
                400,
                "The multipart body could not be parsed.",
                type_="invalid_request_error",
                param=None,
                code=None,
            )
        try:
            # Multipart fields arrive as text; the rules want integers for these two.
            for name in ("n", "output_compression"):
                value = p.get(name)
                if value is not None:
                    try:
                        p[name] = int(value)
                    except ValueError:
                        raise ValidationError(name, value, "an integer is required") from None
            check_edit(p, [sniff(b) for b in images], sniff(mask) if mask is not None else None)
        except ValidationError as err:
            return _openai_validation(err, p)
        return await self._sync_images(key, PATH_EDIT, p, len(images))

    # ----------------------------------------------------------------------- TTAPI routes

    async def _json_object(self, request: web.BaseRequest) -> dict[str, Any] | None:
        body = await self._body(request)
        try:
            obj = _json.loads(body)
        except ValueError:
            return None
        return obj if isinstance(obj, dict) else None

    async def _dalle3(self, request: web.BaseRequest, key: str) -> web.StreamResponse:
        p = await self._json_object(request)
        if p is None:
            return _envelope_error(400, "Parameter error: the body must be a JSON object")
        try:
            check_dalle3(p)
        except ValidationError as err:
            return _envelope_error(400, str(err))
        prompt: str = p["prompt"]
        if MODERATION_MARKER in prompt:
            return _envelope_error(
                400, "Your request was rejected as a result of our safety system."
            )
        cost = p.get("n") or 1
        denied = self._admit(key, cost, PATH_DALLE3)
        if denied is not None:
            return denied
        self.charges.append(Charge(PATH_DALLE3, prompt, cost))
        try:
            latency = self._draw(self.sync_latency)
            if latency > 0:
                await anyio.sleep(latency)
            inner = await self._images_body(p, "dall-e-3", 0)
        finally:
            self._release(key)
        return _reply(200, _json.dumps({"status": "SUCCESS", "message": "success", "data": inner}))

    async def _submit_4o(self, request: web.BaseRequest, key: str) -> web.StreamResponse:
        p = await self._json_object(request)
        if p is None:
            return _envelope_error(400, "Parameter error: the body must be a JSON object")
        try:
            check_submit_4o(p)
        except ValidationError as err:
            return _envelope_error(400, str(err))
        denied = self._admit(key, _COST_4O, PATH_4O_SUBMIT)
        if denied is not None:
            return denied
        prompt: str = p["prompt"]
        self.counters.submits_by_prompt[prompt] += 1
        loop = self._loop
        assert loop is not None  # noqa: S101 - the server runs only while entered
        duration = self._draw(self.job_duration)
        now = loop.time()
        rate = self.job_fail_rate
        job = EmulatedJob(
            job_id=str(uuid.uuid4()),
            api_key=key,
            prompt=prompt,
            refer_images=list(p.get("referImages") or ()),
            hook_url=p.get("hookUrl"),
            created_at=now,
            ends_at=now + duration,
            will_fail=FAIL_MARKER in prompt or (rate > 0 and self._rng.random() < rate),
        )
        self.jobs[job.job_id] = job
        self.charges.append(Charge(PATH_4O_SUBMIT, prompt, _COST_4O, job.job_id))
        faults = self.callbacks
        if job.hook_url is not None and (
            faults.before_reply or chance(faults.early_rate, self._rng)
        ):
            # An early callback: the job ends now and the receiver hears of it (and
            # answers) before the submit reply carries the job id.
            job.ends_at = now
            self.counters.callbacks_early += 1
            self._finish(job, notify=False)
            await self._deliver(job)
        elif duration > 0:
            self._timers[job.job_id] = loop.call_later(duration, self._on_timer, job.job_id)
        else:
            self._finish(job)
        if job.hook_url is not None and chance(faults.forge_rate, self._rng):
            tg = self._tg
            assert tg is not None  # noqa: S101 - the server runs only while entered
            tg.start_soon(self._forge, job)
        return _reply(
            200,
            _json.dumps({"status": "SUCCESS", "message": "success", "data": {"jobId": job.job_id}}),
        )

    async def _fetch(self, request: web.BaseRequest, key: str) -> web.StreamResponse:
        job_id: object = request.query.get("jobId")
        if job_id is None and request.method == "POST":
            if request.content_type in _FORM_TYPES:
                with self._reading():
                    form = await request.post()
                job_id = form.get("jobId")
            else:
                # JSON, whatever the Content-Type says: some clients send none at all.
                obj = await self._json_object(request)
                job_id = obj.get("jobId") if obj is not None else None
        try:
            check_fetch(job_id)
        except ValidationError as err:
            return _envelope_error(400, str(err))
        self.counters.fetches += 1
        job = self.jobs.get(str(job_id))  # check_fetch proved it a non-empty str
        if job is None or job.api_key != key:
            return _envelope_error(404, "job not found")
        loop = self._loop
        assert loop is not None  # noqa: S101 - the server runs only while entered
        if job.status == "ON_QUEUE" and loop.time() >= job.ends_at:
            self._finish(job)
        job.fetches += 1
        return _reply(200, _json.dumps(self._job_body(job)))

    # ----------------------------------------------------------------------- jobs

    def _job_body(self, job: EmulatedJob) -> dict[str, Any]:
        """Build the fetch reply, which is also the callback body (wire §7.2)."""
        return {
            "status": job.status,
            "message": job.message,
            "jobId": job.job_id,
            "data": {
                "prompt": job.prompt,
                "referImages": job.refer_images,
                "imageUrl": job.image_url,
                "quota": job.quota,
                "finishTime": job.finish_time,
                "hookUrl": job.hook_url,
            },
        }

    def _on_timer(self, job_id: str) -> None:
        self._timers.pop(job_id, None)
        job = self.jobs.get(job_id)
        if job is not None:
            self._finish(job)

    def _finish(self, job: EmulatedJob, *, notify: bool = True) -> None:
        """End a job (idempotent): set its final state, free its slot, queue its callback."""
        if job.status != "ON_QUEUE":
            return
        loop = self._loop
        assert loop is not None  # noqa: S101 - the server runs only while entered
        handle = self._timers.pop(job.job_id, None)
        if handle is not None:
            handle.cancel()
        if job.will_fail:
            job.status = "FAILED"
            job.message = _PROMPT_FAIL_REASON if FAIL_MARKER in job.prompt else _JOB_FAIL_REASON
        else:
            job.status = "SUCCESS"
            job.message = "success"
            image = _imagegen.job_image()  # drawn at startup
            job.image_url = self._new_file(image, created=job.ends_at, tag=job.job_id)
            self._recent.append(job)
        # The wall-clock moment the job ended, even when it is noticed later by a fetch.
        job.finish_time = _utc(time.time() - (loop.time() - job.ends_at))
        self._release(job.api_key)
        if notify and job.hook_url is not None and self._ended_send is not None:
            # Closed only while shutting down, when deliveries are being cancelled anyway.
            with contextlib.suppress(anyio.ClosedResourceError, anyio.BrokenResourceError):
                self._ended_send.send_nowait(job)

    async def _dispatch_callbacks(self, ended: MemoryObjectReceiveStream[EmulatedJob]) -> None:
        """Start one delivery per ended job, inside the emulator's task group."""
        tg = self._tg
        assert tg is not None  # noqa: S101 - started by __aenter__ after the group
        async with ended:
            async for job in ended:
                tg.start_soon(self._deliver, job)

    async def _deliver(self, job: EmulatedJob) -> None:
        """Deliver a job's callback, honouring :class:`CallbackFaults`."""
        hook = job.hook_url
        if hook is None:
            return
        faults = self.callbacks
        rng = self._rng
        if chance(faults.lose_rate, rng):
            self.counters.callbacks_lost += 1
            return
        times = 2 if chance(faults.duplicate_rate, rng) else 1
        self.counters.callbacks_duplicated += times - 1
        if faults.delay > 0:
            await anyio.sleep(faults.delay)
        if chance(faults.cross_rate, rng):
            other = self._other_job(job)
            if other is not None:
                # Another job's body on this job's hook URL (a misrouting gateway).
                self.counters.callbacks_crossed += 1
                await self._post_callback(hook, _json.dumps(self._job_body(other)), faults.timeout)
        body = _json.dumps(self._job_body(job))
        for _ in range(times):
            job.callbacks += 1
            await self._post_callback(hook, body, faults.timeout)

    async def _forge(self, job: EmulatedJob) -> None:
        """Forged SUCCESS callbacks for a running job: a made-up token, then its own hook.

        The forged image is a real file the emulator serves, tagged ``forged`` and
        belonging to no job, so a client that trusts either callback saves a wrong image.
        """
        hook = job.hook_url
        if hook is None:
            return
        forged_url = self._new_file(_imagegen.job_image(), tag="forged")
        body = _json.dumps(forged_body(self._job_body(job), forged_url))
        for url in (wrong_token_url(hook), hook):
            self.counters.callbacks_forged += 1
            await self._post_callback(url, body, self.callbacks.timeout)

    def _other_job(self, job: EmulatedJob | None) -> EmulatedJob | None:
        """Another job of the same key, to misroute: a recently ended one if there is one."""
        if job is None:
            return None
        for other in reversed(self._recent):
            if other is not job and other.api_key == job.api_key:
                return other
        for other in reversed(self.jobs.values()):
            if other is not job and other.api_key == job.api_key:
                return other
        return None

    def _swap(self, resp: web.StreamResponse) -> web.StreamResponse:
        """Answer a successful fetch with another job's body (``Fault(kind="swap")``)."""
        body = resp.body if isinstance(resp, web.Response) else None
        if resp.status != 200 or not isinstance(body, bytes):  # noqa: PLR2004
            return resp
        asked = _json.loads(body).get("jobId")
        other = self._other_job(self.jobs.get(asked) if isinstance(asked, str) else None)
        if other is None:
            return resp
        loop = self._loop
        assert loop is not None  # noqa: S101 - the server runs only while entered
        if other.status == "ON_QUEUE" and loop.time() >= other.ends_at:
            self._finish(other)
        self.counters.fetches_swapped += 1
        return _reply(200, _json.dumps(self._job_body(other)))

    async def _post_callback(self, url: str, body: bytes, seconds: float) -> None:
        session = self._session
        if session is None:
            return
        ok = False
        try:
            async with session.post(
                url,
                data=body,
                headers={"Content-Type": _JSON_TYPE},
                timeout=aiohttp.ClientTimeout(total=seconds),
            ) as resp:
                await resp.read()
                ok = 200 <= resp.status < 300  # noqa: PLR2004
        except Exception:  # noqa: BLE001
            # Whatever the receiver does (refuse, reset, hang, bad URL) is a failed
            # delivery to count, never an error that would tear down the task group.
            ok = False
        self.counters.callbacks_sent += 1
        if not ok:
            self.counters.callbacks_failed += 1
