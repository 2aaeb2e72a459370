"""The EventHub: listeners, streams that drop rather than block, Unix stamps from one clock."""

from __future__ import annotations

import logging
import time

import anyio
import pytest

from ttapi_async import JobEvent, JobEventKind
from ttapi_async._events import EventHub


class FakeClock:
    def __init__(self, now: float) -> None:
        self.now = now
        self.reads = 0

    def __call__(self) -> float:
        self.reads += 1
        return self.now


def test_events_are_unix_stamps_that_move_with_the_clock() -> None:
    """One offset to Unix time, taken at the first event: gaps are the clock's own."""
    clock = FakeClock(100.0)
    hub = EventHub(clock)
    seen: list[JobEvent] = []
    hub.add_listener(seen.append)
    assert hub.emit("j1", JobEventKind.QUEUED) == 0
    clock.now = 160.0
    hub.emit("j1", JobEventKind.SUCCEEDED, "done")
    assert [(e.job_id, e.kind, e.detail) for e in seen] == [
        ("j1", JobEventKind.QUEUED, None),
        ("j1", JobEventKind.SUCCEEDED, "done"),
    ]
    assert abs(seen[0].at - time.time()) < 5
    assert seen[1].at - seen[0].at == pytest.approx(60.0, abs=1e-6)
    assert hub.wall(100.0) == seen[0].at


def test_nobody_listening_costs_nothing() -> None:
    """With no listener and no stream, no event is made and the clock is not read."""
    clock = FakeClock(1.0)
    assert EventHub(clock).emit("j1", JobEventKind.QUEUED) == 0
    assert clock.reads == 0


def test_a_listener_bug_is_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    """A listener that raises is logged; the others still hear the event."""
    hub = EventHub(FakeClock(1.0))
    seen: list[JobEventKind] = []

    def broken(event: JobEvent) -> None:
        raise RuntimeError(event.job_id)

    hub.add_listener(broken)
    hub.add_listener(lambda e: seen.append(e.kind))
    with caplog.at_level(logging.ERROR, logger="ttapi_async.waiter"):
        assert hub.emit("j1", JobEventKind.FAILED) == 0
    assert seen == [JobEventKind.FAILED]
    assert "job event listener failed" in caplog.text


@pytest.mark.anyio
async def test_a_stream_that_falls_behind_loses_the_newest_and_ends_on_close() -> None:
    """A full buffer drops (and counts) new events instead of blocking; close ends it."""
    hub = EventHub(FakeClock(1.0))
    async with hub.stream(buffer=2) as events:
        assert [hub.emit(f"j{i}", JobEventKind.QUEUED) for i in range(3)] == [0, 0, 1]
        hub.close()
        with anyio.fail_after(5):
            ids = [event.job_id async for event in events]
    assert ids == ["j0", "j1"]
    assert hub.emit("j3", JobEventKind.QUEUED) == 0  # the stream left with its block
