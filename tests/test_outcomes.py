"""A bulk run's outcomes (``ttapi_async._outcomes``): ordered delivery, with no holes.

In ordered mode an item that was never sent (stopped, paused) must not hold back the
items behind it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest
from bulk_helpers import (
    client_for,
    journal_states,
    prompts,
)

import ttapi_async as tt
from ttapi_async import (
    BulkOutcome,
    BulkPausedError,
    BulkProgress,
    GenerateRequest,
    GPT4oRequest,
    ItemState,
)
from ttapi_async._protocol import PATH_GENERATE
from ttapi_async.testing import Emulator, Fault


pytestmark = pytest.mark.anyio


async def test_ordered_mode_keeps_input_order_within_the_window(emulator: Emulator) -> None:
    emulator.job_duration = (0.01, 0.1)
    pulled = 0

    async def feed() -> AsyncIterator[GPT4oRequest]:
        nonlocal pulled
        for r in prompts(30):
            pulled += 1
            yield r

    consumed = 0
    ahead: list[int] = []
    async with client_for(emulator) as c:
        async with c.bulk(feed(), max_jobs=8, ordered=True, window=5) as run:
            indices = []
            async for o in run:
                consumed += 1
                ahead.append(pulled - consumed)
                indices.append(o.index)
                await anyio.sleep(0.01)
    assert indices == list(range(30))
    # Never more than the window (plus the one input being looked at) ahead of the caller.
    assert max(ahead) <= 5


async def test_ordered_stop_hands_back_what_finished_behind_an_unsent_item(
    emulator: Emulator, tmp_path: Path
) -> None:
    """Ordered: item 0 backs off after a 429 (never sent) while 1 and 2 finish; then stop().

    Item 0 never starts, so it must not hold the later items back: every item the journal
    says is done is handed back, in order, and item 0 stays pending, unbilled.
    """
    emulator.add_fault(Fault(route=PATH_GENERATE, status=429, count=1, retry_after=0.5))
    reqs: list[tt.Request] = [GenerateRequest(prompt="g 0", model="gpt-image-1"), *prompts(2)]
    journal = tmp_path / "j.sqlite"

    def stop_once_two_are_done(p: BulkProgress) -> None:
        if p.done == 2:
            run.stop()

    got: list[BulkOutcome] = []
    async with client_for(emulator, max_retries=0) as c:
        run = c.bulk(reqs, ordered=True, journal=journal, on_progress=stop_once_two_are_done)
        async with run:
            async for o in run:
                got.append(o)
    states, recovered = journal_states(journal)
    assert states == {0: ItemState.PENDING, 1: ItemState.DONE, 2: ItemState.DONE}
    assert recovered == 0
    assert [o.index for o in got] == [1, 2]
    assert all(o.ok for o in got)
    assert emulator.counters.responses[429] == 1
    assert dict(emulator.counters.submits_by_prompt) == {"p 0": 1, "p 1": 1}


async def test_ordered_pause_hands_back_what_finished_behind_an_unsent_item(
    emulator: Emulator, tmp_path: Path
) -> None:
    """Ordered: item 0 gets a (slow) 402 after items 1 and 2 were accepted.

    The run pauses; the running jobs finish and are handed back although item 0, ahead of
    them in the order, never started. Then BulkPausedError is raised.
    """
    emulator.add_fault(Fault(route=PATH_GENERATE, kind="latency", delay=0.25, count=1))
    emulator.add_fault(Fault(route=PATH_GENERATE, status=402, count=1))
    reqs: list[tt.Request] = [GenerateRequest(prompt="g 0", model="gpt-image-1"), *prompts(2)]
    journal = tmp_path / "j.sqlite"
    got: list[BulkOutcome] = []
    async with client_for(emulator, max_retries=0) as c:
        with pytest.raises(BulkPausedError):
            async with c.bulk(reqs, ordered=True, journal=journal) as run:
                async for o in run:
                    got.append(o)
    states, _ = journal_states(journal)
    assert states == {0: ItemState.PENDING, 1: ItemState.DONE, 2: ItemState.DONE}
    assert [o.index for o in got] == [1, 2]
    assert dict(emulator.counters.submits_by_prompt) == {"p 0": 1, "p 1": 1}
