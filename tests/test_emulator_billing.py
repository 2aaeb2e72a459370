"""The emulator's billing over real HTTP: the balance (402), the in-flight cap (499) and
what each call costs (``ttapi_async/testing/_billing.py``)."""

from __future__ import annotations

import asyncio

import aiohttp
import anyio
import pytest
from emulator_helpers import (
    GEN,
    SUBMIT,
    post_json,
    submit,
)

from ttapi_async.testing import (
    Emulator,
)


pytestmark = pytest.mark.anyio


# --------------------------------------------------------------------------- balance and queue


async def test_n_images_bill_per_image(http: aiohttp.ClientSession) -> None:
    """n items come back and each image costs one unit of balance."""
    async with Emulator(balance=10) as emu:
        status, body = await post_json(
            http, emu, GEN, {"model": "gpt-image-1", "prompt": "p", "n": 3}
        )
        assert status == 200
        assert len(body["data"]) == 3
        assert emu.balance == 7
        assert emu.counters.billed[GEN] == 1
        assert emu.counters.submits_by_prompt["p"] == 1


async def test_balance_402_bills_nothing(http: aiohttp.ClientSession) -> None:
    """A call that costs more than the balance is a 402 envelope and bills nothing."""
    async with Emulator(balance=3) as emu:
        assert (await post_json(http, emu, GEN, {"prompt": "p", "n": 2}))[0] == 200
        assert emu.balance == 1
        status, body = await post_json(http, emu, SUBMIT, {"prompt": "p"})
        assert status == 402
        assert body == {
            "status": "FAILED",
            "message": "Insufficient balance, please recharge.",
            "data": None,
        }
        assert emu.balance == 1
        assert emu.counters.billed[SUBMIT] == 0
        assert emu.jobs == {}
        emu.balance = None
        assert (await post_json(http, emu, SUBMIT, {"prompt": "p"}))[0] == 200


async def test_max_in_flight_counts_running_jobs(http: aiohttp.ClientSession) -> None:
    """Running 4o jobs fill the per-key queue; one more is a 499 until a job ends."""
    async with Emulator(job_duration=0.2, max_in_flight=2) as emu:
        await submit(http, emu)
        await submit(http, emu)
        status, body = await post_json(http, emu, SUBMIT, {"prompt": "p"})
        assert status == 499
        assert body == {
            "status": "FAILED",
            "message": "Queue is full, please try again later.",
            "data": None,
        }
        assert emu.counters.billed[SUBMIT] == 2
        assert emu.counters.in_flight_peak == 2
        await anyio.sleep(0.25)  # the jobs end 0.2 s after their submits
        await submit(http, emu)


async def test_max_in_flight_counts_sync_calls(http: aiohttp.ClientSession) -> None:
    """A sync call in progress holds a slot: a concurrent one beyond the cap gets 499."""
    async with Emulator(sync_latency=0.15, max_in_flight=1) as emu:
        results = await asyncio.gather(
            post_json(http, emu, GEN, {"prompt": "a"}),
            post_json(http, emu, GEN, {"prompt": "b"}),
        )
        assert sorted(status for status, _ in results) == [200, 499]
        assert (await post_json(http, emu, GEN, {"prompt": "c"}))[0] == 200
