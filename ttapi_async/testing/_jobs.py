"""4o-image jobs: their records, their lifecycle, and their ``hookUrl`` callbacks.

Strictly private; :class:`EmulatedJob` is public through :mod:`ttapi_async.testing`.

A job is ``ON_QUEUE`` until it ends ``SUCCESS`` (a served, tagged PNG) or ``FAILED`` (wire
§7.2, §11.2). Its state is computed from the clock when it is fetched; the one
``loop.call_later`` timer per job only serves jobs nobody fetches (their callback and
their place in the in-flight count). A timer callback cannot start a task in an anyio
task group, so it posts the finished job on a memory stream; one dispatcher task in the
emulator's task group starts a delivery per job (:class:`Courier`), honouring the
:class:`~._faults.CallbackFaults` in force. Everything is cancelled at exit.
"""

from __future__ import annotations

import collections
import contextlib
import math
import random
import time
import uuid
from typing import TYPE_CHECKING, Any, Final, Protocol

import aiohttp
import anyio
import attrs

from ttapi_async import _json
from ttapi_async._models import JobStatus as WireStatus
from ttapi_async._protocol import PATH_4O_SUBMIT, ROUTE_4O

from . import _imagegen
from ._billing import COST_4O
from ._faults import chance, forged_body, wrong_token_url
from ._replies import JSON_TYPE


if TYPE_CHECKING:
    import asyncio

    from anyio.abc import TaskGroup
    from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

    from ._billing import Billing
    from ._cdn import Cdn
    from ._counters import Counters
    from ._faults import CallbackFaults


__all__ = [
    "FAIL_MARKER",
    "Courier",
    "EmulatedJob",
    "JobBoard",
    "JobKnobs",
    "draw_seconds",
    "job_of_image",
]

#: Prompt marker that makes a 4o job end FAILED on purpose.
FAIL_MARKER: Final = "[fail]"
_JOB_FAIL_REASON: Final = "image generation failed, please try again"
_PROMPT_FAIL_REASON: Final = "prompt violation"
# Recently ended jobs kept to play "another job" (cross-job callbacks, swapped fetches).
_RECENT_ENDED: Final = 8
# The wire names of the states the emulator reports (never PENDING_QUEUE: wire §2.2).
_ON_QUEUE: Final = WireStatus.ON_QUEUE.value
_SUCCESS: Final = WireStatus.SUCCESS.value
_FAILED: Final = WireStatus.FAILED.value


def draw_seconds(value: float | tuple[float, float], rng: random.Random) -> float:
    """Seconds from a number, or drawn uniformly from a ``(low, high)`` range; never < 0."""
    if isinstance(value, tuple):
        low, high = value
        return max(0.0, low if low == high else rng.uniform(low, high))
    return max(0.0, float(value))


def job_of_image(data: bytes) -> str | None:
    """The job id a 4o job's image served by the emulator carries, or None.

    ``"forged"`` marks the image of a forged callback (``CallbackFaults.forge_rate``),
    which belongs to no job. Other images (``/v1``, DALL-E) carry nothing.
    """
    return _imagegen.read_tag(data)


def _utc(wall: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(wall))


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
    #: The wire status: ``ON_QUEUE``, then ``SUCCESS`` or ``FAILED``.
    status: str = _ON_QUEUE
    message: str | None = None
    image_url: str | None = None
    quota: str = str(COST_4O)
    #: ``"YYYY-MM-DD HH:MM:SS"`` in UTC once the job has ended.
    finish_time: str | None = None
    fetches: int = 0
    callbacks: int = 0
    #: Event-loop time (``time.monotonic()``: one clock for every process of the machine)
    #: when its first callback was posted; None before.
    callback_at: float | None = None
    #: The job route that made it: ``"4o-image"`` or ``"gpt"``.
    route: str = ROUTE_4O
    #: The picture it ends with (drawn at submit, showing the prompt); None: the shared one.
    picture: _imagegen.Rendered | None = attrs.field(default=None, repr=False)

    def body(self) -> dict[str, Any]:
        """The fetch reply, which is also the callback body (wire §7.2)."""
        return {
            "status": self.status,
            "message": self.message,
            "jobId": self.job_id,
            "data": {
                "prompt": self.prompt,
                "referImages": self.refer_images,
                "imageUrl": self.image_url,
                "quota": self.quota,
                "finishTime": self.finish_time,
                "hookUrl": self.hook_url,
            },
        }


class JobKnobs(Protocol):
    """The emulator's settings the jobs read (each may change while the server runs)."""

    job_duration: float | tuple[float, float]
    job_fail_rate: float
    callbacks: CallbackFaults


class JobBoard:
    """Every 4o job of the emulator: created, ended (on time or when fetched), called back."""

    def __init__(
        self,
        knobs: JobKnobs,
        counters: Counters,
        rng: random.Random,
        billing: Billing,
        cdn: Cdn,
    ) -> None:
        """Keep jobs; their durations, failures and callback faults come from ``knobs``."""
        self._knobs = knobs
        self._counters = counters
        self._rng = rng
        self._billing = billing
        self._cdn = cdn
        self.jobs: dict[str, EmulatedJob] = {}
        #: The end timer of each running job, by job id.
        self.timers: dict[str, asyncio.TimerHandle] = {}
        self._recent: collections.deque[EmulatedJob] = collections.deque(maxlen=_RECENT_ENDED)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tg: TaskGroup | None = None
        self._ended_send: MemoryObjectSendStream[EmulatedJob] | None = None
        self._ended_recv: MemoryObjectReceiveStream[EmulatedJob] | None = None
        self.courier = Courier(knobs, counters, rng, self, cdn)

    # ----------------------------------------------------------------------- lifecycle

    def start(self, loop: asyncio.AbstractEventLoop, tg: TaskGroup) -> None:
        """Start ending jobs on ``loop`` and delivering callbacks in ``tg``."""
        self._loop, self._tg = loop, tg
        send, recv = anyio.create_memory_object_stream[EmulatedJob](math.inf)
        self._ended_send, self._ended_recv = send, recv
        self.courier.open()
        tg.start_soon(self._dispatch, recv)

    def stop_timers(self) -> None:
        """Cancel every pending end timer (the server is stopping)."""
        for handle in self.timers.values():
            handle.cancel()
        self.timers.clear()

    async def close(self) -> None:
        """Close the stream of ended jobs and the courier's HTTP session."""
        if self._ended_send is not None:
            self._ended_send.close()
        if self._ended_recv is not None:
            self._ended_recv.close()
        self._ended_send = self._ended_recv = None
        await self.courier.close()

    # ----------------------------------------------------------------------- jobs

    async def submit(
        self,
        key: str,
        prompt: str,
        refer_images: list[str],
        hook_url: str | None,
        *,
        route: str = ROUTE_4O,
        path: str = PATH_4O_SUBMIT,
    ) -> EmulatedJob:
        """Create an admitted job, bill it in the ledger, and set it running.

        With an early callback (``CallbackFaults.early_rate`` / ``before_reply``) the job
        ends at once and its callback is delivered, and answered, before this returns.
        """
        loop, tg = self._loop, self._tg
        assert loop is not None  # noqa: S101 - the server runs only while entered
        assert tg is not None  # noqa: S101
        knobs, rng = self._knobs, self._rng
        # Drawn now, off the loop, so finishing the job (on a timer) never draws.
        picture = await self._cdn.image("png", *_imagegen.JOB_SIZE, alpha=False, prompt=prompt)
        duration = draw_seconds(knobs.job_duration, rng)
        now = loop.time()
        rate = knobs.job_fail_rate
        job = EmulatedJob(
            job_id=str(uuid.uuid4()),
            api_key=key,
            prompt=prompt,
            refer_images=refer_images,
            hook_url=hook_url,
            created_at=now,
            ends_at=now + duration,
            will_fail=FAIL_MARKER in prompt or (rate > 0 and rng.random() < rate),
            route=route,
            picture=picture,
        )
        self.jobs[job.job_id] = job
        self._billing.record(path, prompt, COST_4O, job.job_id)
        faults = knobs.callbacks
        if job.hook_url is not None and (faults.before_reply or chance(faults.early_rate, rng)):
            # An early callback: the job ends now and the receiver hears of it (and
            # answers) before the submit reply carries the job id.
            job.ends_at = now
            self._counters.callbacks_early += 1
            self.finish(job, notify=False)
            await self.courier.deliver(job)
        elif duration > 0:
            self.timers[job.job_id] = loop.call_later(duration, self._on_timer, job.job_id)
        else:
            self.finish(job)
        if job.hook_url is not None and chance(faults.forge_rate, rng):
            tg.start_soon(self.courier.forge, job)
        return job

    def fetch(self, job_id: str, key: str, route: str = ROUTE_4O) -> EmulatedJob | None:
        """The job ``key`` asks for on ``route``, brought up to date.

        None when unknown, another key's, or another route's (a job is fetched where it
        was made).
        """
        job = self.jobs.get(job_id)
        if job is None or job.api_key != key or job.route != route:
            return None
        self.refresh(job)
        job.fetches += 1
        return job

    def refresh(self, job: EmulatedJob) -> None:
        """End a running job whose time has come (a fetch notices it before its timer)."""
        loop = self._loop
        assert loop is not None  # noqa: S101 - the server runs only while entered
        if job.status == _ON_QUEUE and loop.time() >= job.ends_at:
            self.finish(job)

    def finish(self, job: EmulatedJob, *, notify: bool = True) -> None:
        """End a job (idempotent): set its final state, free its place, queue its callback."""
        if job.status != _ON_QUEUE:
            return
        loop = self._loop
        assert loop is not None  # noqa: S101 - the server runs only while entered
        handle = self.timers.pop(job.job_id, None)
        if handle is not None:
            handle.cancel()
        if job.will_fail:
            job.status = _FAILED
            job.message = _PROMPT_FAIL_REASON if FAIL_MARKER in job.prompt else _JOB_FAIL_REASON
        else:
            job.status = _SUCCESS
            job.message = "success"
            image = job.picture or _imagegen.job_image()  # drawn at submit, or at startup
            job.image_url = self._cdn.add(image, created=job.ends_at, tag=job.job_id)
            self._recent.append(job)
        # The wall-clock moment the job ended, even when it is noticed later by a fetch.
        job.finish_time = _utc(time.time() - (loop.time() - job.ends_at))
        self._billing.release(job.api_key)
        if notify and job.hook_url is not None and self._ended_send is not None:
            # Closed only while shutting down, when deliveries are being cancelled anyway.
            with contextlib.suppress(anyio.ClosedResourceError, anyio.BrokenResourceError):
                self._ended_send.send_nowait(job)

    def other_job(self, job: EmulatedJob | None) -> EmulatedJob | None:
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

    def swapped(self, asked: object) -> EmulatedJob | None:
        """The job whose body answers a fetch of ``asked`` under ``Fault(kind="swap")``."""
        other = self.other_job(self.jobs.get(asked) if isinstance(asked, str) else None)
        if other is not None:
            self.refresh(other)
            self._counters.fetches_swapped += 1
        return other

    def _on_timer(self, job_id: str) -> None:
        self.timers.pop(job_id, None)
        job = self.jobs.get(job_id)
        if job is not None:
            self.finish(job)

    async def _dispatch(self, ended: MemoryObjectReceiveStream[EmulatedJob]) -> None:
        """Start one delivery per ended job, inside the emulator's task group."""
        tg = self._tg
        assert tg is not None  # noqa: S101 - started by start() after the group
        async with ended:
            async for job in ended:
                tg.start_soon(self.courier.deliver, job)


class Courier:
    """Delivers jobs' ``hookUrl`` callbacks, misbehaving as the ``CallbackFaults`` say."""

    def __init__(
        self, knobs: JobKnobs, counters: Counters, rng: random.Random, board: JobBoard, cdn: Cdn
    ) -> None:
        """Deliver for ``board``'s jobs with the faults in ``knobs.callbacks``."""
        self._knobs = knobs
        self._counters = counters
        self._rng = rng
        self._board = board
        self._cdn = cdn
        self.session: aiohttp.ClientSession | None = None

    def open(self) -> None:
        """Open the HTTP session callbacks are posted with.

        A new connection per callback, as webhook senders commonly do: behind a balancer
        (or a socket several worker processes share) each callback lands on any worker.
        """
        self.session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True))

    async def close(self) -> None:
        """Close the HTTP session."""
        if self.session is not None:
            await self.session.close()
            self.session = None

    async def deliver(self, job: EmulatedJob) -> None:
        """Deliver a job's callback, honouring :class:`~._faults.CallbackFaults`."""
        hook = job.hook_url
        if hook is None:
            return
        faults = self._knobs.callbacks
        rng, counters = self._rng, self._counters
        if chance(faults.lose_rate, rng):
            counters.callbacks_lost += 1
            return
        times = 2 if chance(faults.duplicate_rate, rng) else 1
        counters.callbacks_duplicated += times - 1
        if faults.delay > 0:
            await anyio.sleep(faults.delay)
        if chance(faults.cross_rate, rng):
            other = self._board.other_job(job)
            if other is not None:
                # Another job's body on this job's hook URL (a misrouting gateway).
                counters.callbacks_crossed += 1
                await self._post(hook, _json.dumps(other.body()), faults.timeout)
        body = _json.dumps(job.body())
        for _ in range(times):
            job.callbacks += 1
            if job.callback_at is None:
                job.callback_at = anyio.current_time()
            await self._post(hook, body, faults.timeout)

    async def forge(self, job: EmulatedJob) -> None:
        """Forged SUCCESS callbacks for a running job: a made-up token, then its own hook.

        The forged image is a real file the emulator serves, tagged ``forged`` and
        belonging to no job, so a client that trusts either callback saves a wrong image.
        """
        hook = job.hook_url
        if hook is None:
            return
        forged_url = self._cdn.add(_imagegen.job_image(), tag="forged")
        body = _json.dumps(forged_body(job.body(), forged_url))
        for url in (wrong_token_url(hook), hook):
            self._counters.callbacks_forged += 1
            await self._post(url, body, self._knobs.callbacks.timeout)

    async def _post(self, url: str, body: bytes, seconds: float) -> None:
        session = self.session
        if session is None:
            return
        ok = False
        try:
            async with session.post(
                url,
                data=body,
                headers={"Content-Type": JSON_TYPE},
                timeout=aiohttp.ClientTimeout(total=seconds),
            ) as resp:
                await resp.read()
                ok = 200 <= resp.status < 300  # noqa: PLR2004
        except Exception:  # noqa: BLE001
            # Whatever the receiver does (refuse, reset, hang, bad URL) is a failed
            # delivery to count, never an error that would tear down the task group.
            ok = False
        self._counters.callbacks_sent += 1
        if not ok:
            self._counters.callbacks_failed += 1
