"""EventHub: a waiter's job events, handed to listeners and to async streams.

Strictly private; ``waiter.add_listener`` and ``waiter.events()`` are the public doors.
Listeners are called inline (a listener's bug is logged, never raised into the waiter);
each stream is a bounded buffer, and a consumer that falls behind loses the newest events
rather than slowing the waiter down.
"""

from __future__ import annotations

import logging
import time
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

import anyio

from ._models import JobEvent, JobEventKind


if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable

    from anyio.streams.memory import MemoryObjectSendStream


__all__ = ["EventHub"]

log = logging.getLogger("ttapi_async.waiter")


class EventHub:
    """Job events of one waiter, stamped on its clock, to listeners and streams.

    Args:
        clock: the waiter's clock (seconds, monotonic). ``JobEvent.at`` is a Unix
            timestamp derived from it by one offset, taken at the first event: events
            stay in order and their gaps are the clock's, whatever the wall clock does.
    """

    __slots__ = ("_clock", "_listeners", "_offset", "_streams")

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._offset: float | None = None  # Unix time minus clock time
        self._listeners: list[Callable[[JobEvent], object]] = []
        self._streams: list[MemoryObjectSendStream[JobEvent]] = []

    def add_listener(self, listener: Callable[[JobEvent], object]) -> None:
        """Call ``listener(event)`` for every event from now on."""
        self._listeners.append(listener)

    @asynccontextmanager
    async def stream(self, buffer: int = 1024) -> AsyncIterator[AsyncIterator[JobEvent]]:
        """An async iterator of the events while the block is open (``buffer`` of them)."""
        send, receive = anyio.create_memory_object_stream[JobEvent](buffer)
        self._streams.append(send)
        try:
            async with receive:
                yield receive
        finally:
            self._streams.remove(send)
            send.close()

    def emit(self, job_id: str, kind: JobEventKind, detail: str | None = None) -> int:
        """Hand one event to every listener and stream; returns how many streams dropped it."""
        if not self._listeners and not self._streams:
            return 0  # nobody listens: not even the event is made
        event = JobEvent(job_id=job_id, kind=kind, at=self.wall(self._clock()), detail=detail)
        for listener in self._listeners:
            try:
                listener(event)
            except Exception:  # a listener's bug must not break the waiter
                log.exception("job event listener failed")
        dropped = 0
        for stream in self._streams:
            try:
                stream.send_nowait(event)
            except (anyio.WouldBlock, anyio.BrokenResourceError, anyio.ClosedResourceError):
                dropped += 1
        return dropped

    def wall(self, now: float) -> float:
        """The Unix timestamp of ``now`` (a reading of the clock)."""
        if self._offset is None:
            self._offset = time.time() - now
        return now + self._offset

    def close(self) -> None:
        """End every open stream (the waiter closed); their consumers' loops end."""
        for stream in self._streams:
            stream.close()
