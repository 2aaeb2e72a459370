"""A bulk run's state table (``ttapi_async._runstate``): pure, no event loop."""

from __future__ import annotations

import pytest

from ttapi_async import BulkPausedError, InsufficientBalanceError, ValidationError
from ttapi_async._runstate import (
    TRANSITIONS,
    RunEvent,
    RunState,
    RunStateError,
    RunStatus,
    next_state,
)


def account_error() -> InsufficientBalanceError:
    return InsufficientBalanceError("no balance", status=402, headers={}, body="")


def test_the_table_covers_every_state_and_only_running_admits() -> None:
    assert set(TRANSITIONS) == set(RunState)
    for state in RunState:
        status = RunStatus()
        status.state = state
        assert status.admitting is (state is RunState.RUNNING)


def test_stop_can_come_at_any_time_and_never_undoes_a_pause_or_an_error() -> None:
    """The CLI's Ctrl-C may arrive in any state, even after the end."""
    for state in RunState:
        after = next_state(state, RunEvent.STOP)
        assert after is (RunState.STOPPING if state is RunState.RUNNING else state)


def test_an_error_outranks_a_pause_which_outranks_a_stop() -> None:
    assert next_state(RunState.STOPPING, RunEvent.PAUSE) is RunState.PAUSED
    assert next_state(RunState.PAUSED, RunEvent.FAIL) is RunState.FAILING
    assert next_state(RunState.FAILING, RunEvent.PAUSE) is RunState.FAILING
    for state in (RunState.STOPPING, RunState.PAUSED, RunState.FAILING):
        assert next_state(state, RunEvent.LEAVE) is RunState.LEFT
        assert next_state(state, RunEvent.END) is RunState.ENDED


@pytest.mark.parametrize(
    ("state", "event"),
    [
        (RunState.ENDED, RunEvent.PAUSE),
        (RunState.ENDED, RunEvent.FAIL),
        (RunState.ENDED, RunEvent.LEAVE),
        (RunState.LEFT, RunEvent.LEAVE),
    ],
)
def test_an_illegal_event_is_an_internal_error(state: RunState, event: RunEvent) -> None:
    """After the end no item can pause or fail the run, and it cannot be left twice."""
    assert event not in TRANSITIONS[state]
    with pytest.raises(RunStateError, match=f"{event.value!r} is illegal in state"):
        next_state(state, event)


def test_the_first_pause_is_kept_and_becomes_the_loops_error() -> None:
    status = RunStatus()
    first, second = account_error(), account_error()
    assert status.pause(first)
    assert not status.pause(second)
    assert (status.state, status.paused_by, status.error) == (RunState.PAUSED, first, None)
    status.settle()
    assert isinstance(status.error, BulkPausedError)
    assert status.error.cause is first
    assert status.error.__cause__ is first


def test_a_failure_after_a_pause_is_raised_instead_and_the_pause_is_still_reported() -> None:
    status = RunStatus()
    pause, failure = account_error(), ValidationError("requests[3]", "dict", "a request")
    status.pause(pause)
    assert status.fail(failure)
    assert not status.fail(ValueError("later"))
    status.settle()
    assert (status.state, status.error, status.paused_by) == (RunState.FAILING, failure, pause)


def test_a_stopped_run_ends_without_an_error() -> None:
    status = RunStatus()
    status.move(RunEvent.STOP)
    status.settle()
    assert status.move(RunEvent.END) is RunState.ENDED
    assert status.error is None
    assert status.move(RunEvent.END) is RunState.ENDED  # iterating again after the end
