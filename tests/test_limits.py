"""The request budget (submits before polls) and the job-slot controller."""

from __future__ import annotations

import random

import anyio
import pytest

from ttapi_async import ValidationError
from ttapi_async._limits import RequestBudget, SlotController, busy_backoff
from ttapi_async._retry import backoff


def test_slots_drop_to_what_was_running_on_499_and_creep_back() -> None:
    slots = SlotController(maximum=10, increase_every=3)
    assert slots.current == 10
    assert slots.on_queue_full(running=6) == 6
    # A second 499 with more running never raises the cap.
    assert slots.on_queue_full(running=8) == 6
    assert [slots.on_job_done() for _ in range(7)] == [6, 6, 7, 7, 7, 8, 8]
    for _ in range(100):
        slots.on_job_done()
    assert slots.current == 10  # never above the maximum


def test_slots_floor_and_arguments() -> None:
    slots = SlotController(maximum=4, minimum=2)
    assert slots.on_queue_full(running=0) == 2
    with pytest.raises(ValidationError, match="max_jobs"):
        SlotController(maximum=0)
    with pytest.raises(ValidationError, match="min_jobs"):
        SlotController(maximum=3, minimum=5)


def test_busy_backoff_prefers_retry_after_and_grows_with_jitter() -> None:
    assert busy_backoff(1, 2.5) == 2.5
    assert busy_backoff(1, 500.0, maximum=30.0) == 30.0
    rng = random.Random(1)
    waits = [busy_backoff(n, None, initial=0.5, rng=rng) for n in (1, 2, 3, 4, 10)]
    for wait, ceiling in zip(waits, (0.5, 1.0, 2.0, 4.0, 30.0), strict=True):
        assert ceiling / 2 <= wait <= ceiling
    # The shared formula with half jitter; thousands of refusals in a row do not overflow.
    expected = backoff(3, 0.5, 30.0, jitter=0.5, rng=random.Random(2))
    assert busy_backoff(3, None, initial=0.5, rng=random.Random(2)) == expected
    assert 15.0 <= busy_backoff(5000, None, initial=0.5) <= 30.0


def test_budget_rejects_bad_rates() -> None:
    with pytest.raises(ValidationError, match="requests_per_second"):
        RequestBudget(0)


@pytest.mark.anyio
async def test_submits_come_first_and_polls_still_get_their_share() -> None:
    """On a contended budget, polls get a token only after 3 submits in a row, never 0."""
    budget = RequestBudget(50.0, burst=1, submit_streak=3)
    order: list[str] = []

    async def take(kind: str, i: int) -> None:
        await (budget.acquire_submit() if kind == "s" else budget.acquire_poll())
        order.append(kind)

    await budget.acquire_poll()  # drain the bucket; the streak starts at 0
    async with anyio.create_task_group() as tg:
        for i in range(6):
            tg.start_soon(take, "p", i)
        await anyio.sleep(0.01)  # the polls are waiting before any submit arrives
        for i in range(12):
            tg.start_soon(take, "s", i)
    submits_left = 12
    streak = 0
    for kind in order:
        if kind == "s":
            submits_left -= 1
            streak += 1
        else:
            # While submits still waited, a poll only ever followed 3 submits in a row.
            assert submits_left == 0 or streak >= 3, order
            streak = 0
    first_poll = order.index("p")
    assert first_poll == 3, order  # not starved until every submit is through
    assert order.count("p") == 6


@pytest.mark.anyio
async def test_budget_holds_the_rate() -> None:
    budget = RequestBudget(50.0, burst=1)
    start = anyio.current_time()
    for _ in range(11):
        await budget.acquire_submit()
    # 10 tokens after the first at 50/s: at least ~0.2 s (a rate check, not a benchmark).
    assert anyio.current_time() - start >= 0.15


@pytest.mark.anyio
async def test_a_gift_to_a_poll_cancelled_meanwhile_is_not_banked() -> None:
    """A token handed to a poll that is cancelled in the same step is not kept for later.

    Kept, a later poll would spend it on top of a refilled bucket: over the rate.
    """
    budget = RequestBudget(10.0, burst=1, submit_streak=1)
    await budget.acquire_submit()  # drain the one token; the submits' streak is 1
    scope = anyio.CancelScope()

    class CancelOnGift:  # the poll's scope is cancelled as its gift is handed over
        def __init__(self, event: anyio.Event) -> None:
            self.event = event

        def set(self) -> None:
            scope.cancel()
            self.event.set()

        async def wait(self) -> None:
            await self.event.wait()

    async def poll() -> None:
        with scope:
            await budget.acquire_poll()

    async with anyio.create_task_group() as tg:
        tg.start_soon(poll)
        await anyio.sleep(0.01)  # the poll waits: no token
        budget._gift = CancelOnGift(budget._gift)  # type: ignore[assignment]
        tg.start_soon(budget.acquire_submit)
    assert budget._gifts == 0
    assert budget._polls_waiting == 0
