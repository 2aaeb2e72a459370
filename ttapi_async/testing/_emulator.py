"""The TTAPI emulator: a real aiohttp server on 127.0.0.1 that answers like api.ttapi.io.

Strictly private; the public door is :mod:`ttapi_async.testing`. Every wire detail follows
``ttapi-wire.md``: the OpenAI bodies on ``/v1/images/*``, the TTAPI envelope elsewhere
and for gateway errors, the 4o-image job lifecycle and its ``hookUrl`` callbacks.

:class:`Emulator` holds the settings and composes the parts, bottom-up:

* :mod:`._counters`: what was seen and done; :mod:`._replies`: the two reply shapes.
* :mod:`._rules`: the emulator's own parameter rules, written from the wire references
  and never taken from the SDK, so the SDK's rules are checked against them rather than
  against themselves.
* :mod:`._billing`: balance (402), in-flight places (499) and the ledger of charges.
* :mod:`._cdn`: the image files replies point at, served until ``url_ttl``.
* :mod:`._jobs`: 4o jobs, their lifecycle and their callbacks (with
  :class:`~._faults.CallbackFaults`).
* :mod:`._routes`: one handler per endpoint; :mod:`._gateway`: dispatch, auth, body
  caps and injected :class:`~._faults.Fault` s.

Each part reads the settings it needs from the emulator through a small Protocol (its
``*Knobs``), so a setting changed while the server runs (``emu.balance = 0``) applies to
the next request, and no part imports this module.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from typing import TYPE_CHECKING, Final, Self

import anyio
from aiohttp import web

from . import _imagegen
from ._billing import Billing
from ._cdn import FILES_PREFIX, Cdn
from ._counters import Counters
from ._faults import CallbackFaults
from ._gateway import Gateway
from ._jobs import JobBoard
from ._routes import Routes


if TYPE_CHECKING:
    from collections.abc import Iterable
    from types import TracebackType

    from anyio.abc import TaskGroup

    from ._billing import Charge
    from ._faults import Fault
    from ._jobs import EmulatedJob


__all__ = ["DEFAULT_MAX_BODY", "DEFAULT_READ_TIMEOUT", "Emulator"]

# How long a stopping server waits for requests in progress before cancelling them.
_SHUTDOWN_TIMEOUT: Final = 0.25
#: Default cap of one request body. OpenAI's edits take up to 16 images of up to 50 MB
#: each (the emulator's rule table) and publish no cap on the whole body; the emulator
#: holds a body in memory, so it stops at 64 MiB, which fits any one image under that
#: cap with room to spare. ``max_body=`` raises it.
DEFAULT_MAX_BODY: Final = 64 * 1024 * 1024
#: Default seconds a request's whole body may take to arrive (a stalled sender gets 408).
DEFAULT_READ_TIMEOUT: Final = 60.0


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
        extra_models: model names accepted besides the ones the emulator knows
            (gpt-image-1, gpt-image-1.5, gpt-image-2, dall-e-2, dall-e-3 on ``/v1``; the
            ``/openai/gpt`` models). Any other name gets OpenAI's 400 with
            ``param: "model"``, as a typo would at TTAPI; an extra name passes with the
            checks every model shares (a prompt, a positive ``n``).
        draw_prompts: pictures show their prompt (default), so outputs can be told apart;
            off, every request of a kind gets one shared picture and no request encodes
            an image (benchmarks turn it off).

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
        extra_models: Iterable[str] = (),
        draw_prompts: bool = True,
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
        # One name given as a string is one name, not its characters.
        names = [extra_models] if isinstance(extra_models, str) else extra_models
        self.extra_models: frozenset[str] = frozenset(names)
        self.draw_prompts = draw_prompts
        self.counters = Counters()
        # One RNG for every draw (durations, failures, faults), so a seed replays a run.
        rng = random.Random(seed)
        self._billing = Billing(self, self.counters)
        self._cdn = Cdn(self, self.counters)
        self._board = JobBoard(self, self.counters, rng, self._billing, self._cdn)
        routes = Routes(self, self.counters, rng, self._billing, self._board, self._cdn)
        self._gateway = Gateway(self, self.counters, rng, routes.table(), self._cdn, self._board)
        self._url: str | None = None
        self._tg: TaskGroup | None = None
        self._runner: web.ServerRunner | None = None

    def __repr__(self) -> str:
        """Show where the emulator listens (never the key)."""
        return f"<Emulator {self._url or 'not started'} jobs={len(self.jobs)}>"

    # ----------------------------------------------------------------------- state

    @property
    def url(self) -> str:
        """Base URL, ``http://127.0.0.1:PORT``, once the server runs."""
        if self._url is None:
            raise RuntimeError("the emulator is not running: use 'async with Emulator() as emu'")
        return self._url

    @property
    def jobs(self) -> dict[str, EmulatedJob]:
        """Every 4o job created so far, by job id."""
        return self._board.jobs

    @property
    def charges(self) -> list[Charge]:
        """Every billed call, in order: the server's own record of what it accepted."""
        return self._billing.charges

    # ----------------------------------------------------------------------- lifecycle

    async def __aenter__(self) -> Self:
        """Start the server and the emulator's task group; return the emulator."""
        if self._tg is not None:
            raise RuntimeError("the emulator is already running")
        loop = asyncio.get_running_loop()
        # Draw the 4o job picture now, off the loop, so finishing a job never draws.
        if _imagegen.cached("png", *_imagegen.JOB_SIZE, alpha=False) is None:
            await anyio.to_thread.run_sync(_imagegen.job_image)
        tg = anyio.create_task_group()
        await tg.__aenter__()
        self._tg = tg
        try:
            self._board.start(loop, tg)
            runner = web.ServerRunner(
                self._gateway.server(loop), shutdown_timeout=_SHUTDOWN_TIMEOUT
            )
            await runner.setup()
            self._runner = runner
            site = web.TCPSite(runner, self.host, self.port)
            await site.start()
            host = f"[{self.host}]" if ":" in self.host else self.host
            self._url = f"http://{host}:{site.port}"
            self._cdn.open(loop, self._url)
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
                self._board.stop_timers()
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
                    await self._board.close()
                    self._url = None

    # ----------------------------------------------------------------------- public knobs

    def add_fault(self, fault: Fault) -> Fault:
        """Inject a fault; it applies from the next request on. Returns it (see ``fired``)."""
        self._gateway.faults.append(fault)
        return fault

    def clear_faults(self) -> None:
        """Remove every injected fault."""
        self._gateway.faults.clear()

    @property
    def faults(self) -> tuple[Fault, ...]:
        """The faults injected so far (each counts its firings in ``fired``)."""
        return tuple(self._gateway.faults)

    def file_url(self, name: str) -> str:
        """URL under which the emulator serves the image file ``name``."""
        return f"{self.url}{FILES_PREFIX}{name}"
