"""A bulk run's state: one enum, and the table of its transitions.

Strictly private and pure (no I/O, no event loop). The shell (:mod:`ttapi_async._bulk`)
moves the state on five events; every other part only asks :attr:`RunStatus.admitting`
(may anything new start or be sent?). As h11 writes its connection states down, the
legal moves are one table, :data:`TRANSITIONS`; an event the table does not list for the
current state is a bug in ttapi-async and raises :class:`RunStateError`.

::

    event ->   STOP       PAUSE      FAIL       LEAVE      END
    RUNNING    STOPPING   PAUSED     FAILING    LEFT       ENDED
    STOPPING   STOPPING   PAUSED     FAILING    LEFT       ENDED
    PAUSED     PAUSED     PAUSED     FAILING    LEFT       ENDED
    FAILING    FAILING    FAILING    FAILING    LEFT       ENDED
    LEFT       LEFT       LEFT       LEFT       -          LEFT
    ENDED      ENDED      -          -          -          ENDED

Precedence, read off the table: an error to raise (FAILING) outranks a pause, and a pause
outranks a plain stop; leaving the block early outranks everything but the end.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Final

from ._errors import BulkPausedError, TTAPIError


__all__ = ["TRANSITIONS", "RunEvent", "RunState", "RunStateError", "RunStatus", "next_state"]


class RunState(enum.Enum):
    """Where a bulk run stands."""

    RUNNING = "running"
    """New items start and their calls are sent as the limits allow."""
    STOPPING = "stopping"
    """:meth:`BulkRun.stop`: nothing new; what was sent finishes; the loop then ends."""
    PAUSED = "paused"
    """An account error (401/402/403): nothing new; then :class:`BulkPausedError`."""
    FAILING = "failing"
    """Fail-fast's first failure, or a broken input: nothing new; then that error."""
    LEFT = "left"
    """The caller left the block before the end: everything is cancelled."""
    ENDED = "ended"
    """The caller has seen the end of the outcomes."""


class RunEvent(enum.Enum):
    """What moves a run's state."""

    STOP = "stop"
    """The caller asked the run to stop (the CLI's first Ctrl-C)."""
    PAUSE = "pause"
    """A call met an account error."""
    FAIL = "fail"
    """An item failed under fail-fast, or the input iterable broke."""
    LEAVE = "leave"
    """The caller left the ``async with`` block before the end."""
    END = "end"
    """The caller's iteration reached the end of the outcomes (or the closed stream)."""


_R, _S, _P, _F, _L, _E = (
    RunState.RUNNING,
    RunState.STOPPING,
    RunState.PAUSED,
    RunState.FAILING,
    RunState.LEFT,
    RunState.ENDED,
)
_STOP, _PAUSE, _FAIL, _LEAVE, _END = (
    RunEvent.STOP,
    RunEvent.PAUSE,
    RunEvent.FAIL,
    RunEvent.LEAVE,
    RunEvent.END,
)

#: ``{state: {event: next state}}``; a missing event is illegal in that state.
TRANSITIONS: Final[Mapping[RunState, Mapping[RunEvent, RunState]]] = {
    _R: {_STOP: _S, _PAUSE: _P, _FAIL: _F, _LEAVE: _L, _END: _E},
    _S: {_STOP: _S, _PAUSE: _P, _FAIL: _F, _LEAVE: _L, _END: _E},
    _P: {_STOP: _P, _PAUSE: _P, _FAIL: _F, _LEAVE: _L, _END: _E},
    _F: {_STOP: _F, _PAUSE: _F, _FAIL: _F, _LEAVE: _L, _END: _E},
    # Shielded submits may still end after the caller left: their pause or failure
    # changes nothing any more. A later iteration finds the stream closed.
    _L: {_STOP: _L, _PAUSE: _L, _FAIL: _L, _END: _L},
    # Every item has ended before the stream does: only the caller can act now.
    _E: {_STOP: _E, _END: _E},
}


class RunStateError(RuntimeError):
    """An event the transition table forbids in the current state: a bug in ttapi-async."""


def next_state(state: RunState, event: RunEvent) -> RunState:
    """The state after ``event`` in ``state``; :class:`RunStateError` if it is illegal."""
    try:
        return TRANSITIONS[state][event]
    except KeyError:
        msg = (
            f"bulk run: {event.value!r} is illegal in state {state.value!r} (a bug in ttapi-async)"
        )
        raise RunStateError(msg) from None


class RunStatus:
    """A run's state, with what it keeps beside it: the pause's cause and the error to raise.

    Attributes:
        state: the :class:`RunState` now.
        paused_by: the first account error met, if any (what ``BulkProgress.paused``
            reports, and :class:`BulkPausedError`'s cause).
        error: what the caller's loop raises once the outcomes end (the first failure
            under fail-fast, a broken input, or the pause's :class:`BulkPausedError`).
    """

    __slots__ = ("error", "paused_by", "state")

    def __init__(self) -> None:
        self.state = RunState.RUNNING
        self.paused_by: TTAPIError | None = None
        self.error: BaseException | None = None

    @property
    def admitting(self) -> bool:
        """True while a new item may start and a billable call may be sent."""
        return self.state is RunState.RUNNING

    def move(self, event: RunEvent) -> RunState:
        """Apply ``event`` (see :data:`TRANSITIONS`) and return the new state."""
        self.state = next_state(self.state, event)
        return self.state

    def pause(self, exc: TTAPIError) -> bool:
        """Record an account error; True for the first one (the run pauses on it)."""
        first = self.paused_by is None
        if first:
            self.paused_by = exc
        self.move(RunEvent.PAUSE)
        return first

    def fail(self, exc: BaseException) -> bool:
        """Record an error to raise at the end; True for the first one (it wins)."""
        first = self.error is None
        if first:
            self.error = exc
        self.move(RunEvent.FAIL)
        return first

    def settle(self) -> None:
        """Every item has ended: a paused run's loop is to raise :class:`BulkPausedError`."""
        if self.state is RunState.PAUSED and self.paused_by is not None and self.error is None:
            self.error = BulkPausedError(self.paused_by)
            self.error.__cause__ = self.paused_by
