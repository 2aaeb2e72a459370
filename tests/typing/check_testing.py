"""What a user's type checker sees of ``ttapi_async.testing``: the emulator and its faults.

Type-checked, never run (see ``check_client.py``).
"""

from __future__ import annotations

import collections
from typing import assert_type

import ttapi_async as tt
from ttapi_async.testing import (
    FAST_POLL_POLICY,
    CallbackFaults,
    Charge,
    Counters,
    EmulatedJob,
    Emulator,
    Fault,
    fast_waits,
    fast_waits_enabled,
    job_of_image,
    set_fast_waits,
)


async def emulator() -> None:
    """An emulator entered with ``async with``, a client pointed at it, faults added."""
    emu = Emulator(job_duration=0.1, seed=1, balance=10.0, callbacks=CallbackFaults(lose_rate=0.5))
    async with emu as entered:
        assert_type(entered, Emulator)
        assert_type(entered.url, str)
        assert_type(entered.api_key, str)
        assert_type(entered.counters, Counters)
        assert_type(entered.counters.billed, collections.Counter[str])
        assert_type(entered.counters.fetches, int)
        assert_type(entered.charges, list[Charge])
        assert_type(entered.jobs, dict[str, EmulatedJob])
        assert_type(entered.faults, tuple[Fault, ...])
        assert_type(entered.file_url("a.png"), str)
        fault = entered.add_fault(Fault(route="/openai/4o-image/generations", status=502, count=1))
        assert_type(fault, Fault)
        assert_type(fault.fired, int)
        assert_type(entered.add_fault(Fault(kind="drop", after_accept=True)), Fault)
        assert_type(entered.clear_faults(), None)
        async with tt.Client(entered.api_key, base_url=entered.url) as client:
            assert_type(client, tt.Client)
    assert_type(Emulator(job_duration=(0.05, 0.2)), Emulator)


def helpers(data: bytes) -> None:
    """Fast waits and the emulator's small helpers."""
    assert_type(FAST_POLL_POLICY, tt.PollPolicy)
    with fast_waits() as nothing:
        assert_type(nothing, None)
    assert_type(fast_waits_enabled(), bool)
    assert_type(set_fast_waits(on=True), None)
    assert_type(job_of_image(data), str | None)
