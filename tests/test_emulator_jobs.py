"""The emulator's 4o jobs over real HTTP: their lifecycle, their images, and their
``hookUrl`` callbacks with the callback faults (``ttapi_async/testing/_jobs.py``)."""

from __future__ import annotations

import asyncio
import io
from collections.abc import Callable

import aiohttp
import anyio
import pytest
from emulator_helpers import (
    FINISH_TIME,
    GEN,
    SUBMIT,
    fetch,
    png,
    post_json,
    receiver,
    submit,
)
from helpers import wait_until
from PIL import Image

from ttapi_async.testing import (
    CallbackFaults,
    Charge,
    EmulatedJob,
    Emulator,
    job_of_image,
)


pytestmark = pytest.mark.anyio


# --------------------------------------------------------------------------- lifecycle


async def test_4o_job_lifecycle_to_success(emulator: Emulator, http: aiohttp.ClientSession) -> None:
    """A job is ON_QUEUE, then SUCCESS with a served 1024x1024 PNG, quota and finishTime."""
    refs = ["https://example.com/a.png"]
    job_id = await submit(http, emulator, referImages=refs)
    status, body = await fetch(http, emulator, job_id)
    assert status == 200
    assert body == {
        "status": "ON_QUEUE",
        "message": None,
        "jobId": job_id,
        "data": {
            "prompt": "draw a cat",
            "referImages": refs,
            "imageUrl": None,
            "quota": "2",
            "finishTime": None,
            "hookUrl": None,
        },
    }
    await anyio.sleep(0.2)
    status, body = await fetch(http, emulator, job_id)
    assert body["status"] == "SUCCESS"
    assert body["message"] == "success"
    assert body["data"]["quota"] == "2"
    assert FINISH_TIME.match(body["data"]["finishTime"])
    async with http.get(body["data"]["imageUrl"]) as resp:
        assert resp.status == 200
        img = Image.open(io.BytesIO(await resp.read()))
    assert (img.format, img.size) == ("PNG", (1024, 1024))
    job = emulator.jobs[job_id]
    assert (job.status, job.fetches) == ("SUCCESS", 2)
    assert emulator.counters.fetches == 2
    assert emulator.counters.billed[SUBMIT] == 1


@pytest.mark.parametrize(
    ("prompt", "rate", "reason"),
    [("draw [fail] it", 0.0, "prompt violation"), ("draw it", 1.0, "image generation failed")],
)
async def test_4o_job_can_fail(
    http: aiohttp.ClientSession, prompt: str, rate: float, reason: str
) -> None:
    """The [fail] marker, or job_fail_rate, ends a job FAILED with a reason."""
    async with Emulator(job_duration=0.05, job_fail_rate=rate) as emu:
        job_id = await submit(http, emu, prompt=prompt)
        await anyio.sleep(0.1)
        status, body = await fetch(http, emu, job_id)
    assert status == 200
    assert body["status"] == "FAILED"
    assert body["message"].startswith(reason)
    assert body["data"]["imageUrl"] is None
    assert FINISH_TIME.match(body["data"]["finishTime"])


async def test_job_images_name_their_job_and_charges_are_kept(
    emulator: Emulator, http: aiohttp.ClientSession
) -> None:
    """Each 4o image carries its job id (and still decodes); the ledger lists each charge."""
    ids = [await submit(http, emulator, prompt=f"p{i}") for i in range(2)]
    await post_json(http, emulator, GEN, {"prompt": "sync", "n": 2})
    await anyio.sleep(0.2)
    for job_id in ids:
        _, body = await fetch(http, emulator, job_id)
        async with http.get(body["data"]["imageUrl"]) as resp:
            data = await resp.read()
            assert resp.content_length == len(data)
        assert job_of_image(data) == job_id
        with Image.open(io.BytesIO(data)) as img:
            img.load()
            assert (img.format, img.size) == ("PNG", (1024, 1024))
    assert emulator.charges == [
        Charge(SUBMIT, "p0", 2, ids[0]),
        Charge(SUBMIT, "p1", 2, ids[1]),
        Charge(GEN, "sync", 2),
    ]
    assert job_of_image(png(8, 8)) is None
    assert job_of_image(b"not an image") is None


def succeeded(job: EmulatedJob) -> Callable[[], bool]:
    return lambda: job.status == "SUCCESS"


async def test_job_pictures_show_their_prompt(
    emulator: Emulator, http: aiohttp.ClientSession
) -> None:
    """Two jobs with two prompts end with two pictures, each still naming its job."""
    ids = [await submit(http, emulator, prompt=p) for p in ("a lighthouse", "a fox")]
    pixels = []
    for job_id in ids:
        await wait_until(succeeded(emulator.jobs[job_id]))
        _, body = await fetch(http, emulator, job_id)
        async with http.get(body["data"]["imageUrl"]) as resp:
            data = await resp.read()
        assert job_of_image(data) == job_id
        with Image.open(io.BytesIO(data)) as img:
            pixels.append(img.convert("RGB").tobytes())
    assert pixels[0] != pixels[1]


# --------------------------------------------------------------------------- callbacks


async def test_callback_is_the_fetch_body(http: aiohttp.ClientSession) -> None:
    """When a job ends, its hookUrl gets one JSON POST identical to the fetch reply."""
    async with receiver() as rec, Emulator(job_duration=0.05) as emu:
        job_id = await submit(http, emu, hookUrl=rec.url)
        await wait_until(lambda: len(rec.bodies) == 1)
        _, fetched = await fetch(http, emu, job_id)
        assert rec.bodies == [fetched]
        assert fetched["status"] == "SUCCESS"
        assert fetched["data"]["hookUrl"] == rec.url
        assert rec.content_types == ["application/json"]
        await anyio.sleep(0.1)
        assert len(rec.bodies) == 1
        assert emu.counters.callbacks_sent == 1
        assert emu.counters.callbacks_failed == 0
        assert emu.jobs[job_id].callbacks == 1


async def test_callback_for_failed_job(http: aiohttp.ClientSession) -> None:
    """A FAILED job is called back too, with its reason."""
    async with receiver() as rec, Emulator(job_duration=0.02) as emu:
        await submit(http, emu, prompt="[fail]", hookUrl=rec.url)
        await wait_until(lambda: len(rec.bodies) == 1)
        assert rec.bodies[0]["status"] == "FAILED"
        assert rec.bodies[0]["message"] == "prompt violation"


async def test_callbacks_lost_and_duplicated(http: aiohttp.ClientSession) -> None:
    """lose_rate skips deliveries; duplicate_rate delivers twice."""
    async with receiver() as rec, Emulator(job_duration=0.02) as emu:
        emu.callbacks = CallbackFaults(lose_rate=1.0)
        await submit(http, emu, hookUrl=rec.url)
        await wait_until(lambda: emu.counters.callbacks_lost == 1)
        emu.callbacks = CallbackFaults(duplicate_rate=1.0)
        job_id = await submit(http, emu, hookUrl=rec.url)
        await wait_until(lambda: len(rec.bodies) == 2)
        assert [b["jobId"] for b in rec.bodies] == [job_id, job_id]
        assert emu.counters.callbacks_sent == 2
        assert emu.jobs[job_id].callbacks == 2


async def test_callback_failures_are_counted(http: aiohttp.ClientSession) -> None:
    """A non-2xx answer or an unreachable receiver counts as a failed delivery."""
    async with receiver() as rec, Emulator(job_duration=0.02) as emu:
        rec.status = 500
        await submit(http, emu, hookUrl=rec.url)
        await wait_until(lambda: emu.counters.callbacks_failed == 1)
        await submit(http, emu, hookUrl="http://127.0.0.1:9/closed")
        await wait_until(lambda: emu.counters.callbacks_failed == 2)
        assert emu.counters.callbacks_sent == 2


async def test_callback_delay(http: aiohttp.ClientSession) -> None:
    """CallbackFaults.delay holds the delivery after the job ended."""
    async with receiver() as rec, Emulator(job_duration=0.0) as emu:
        emu.callbacks.delay = 0.3
        job_id = await submit(http, emu, hookUrl=rec.url)
        assert emu.jobs[job_id].status == "SUCCESS"
        await anyio.sleep(0.15)
        assert rec.bodies == []
        await wait_until(lambda: len(rec.bodies) == 1)


async def test_callback_before_reply(http: aiohttp.ClientSession) -> None:
    """With before_reply and an instant job, the callback lands before the submit reply."""
    async with (
        receiver() as rec,
        Emulator(job_duration=0, callbacks=CallbackFaults(before_reply=True)) as emu,
    ):
        job_id = await submit(http, emu, hookUrl=rec.url)
        assert [b["jobId"] for b in rec.bodies] == [job_id]
        assert rec.bodies[0]["status"] == "SUCCESS"


async def test_many_jobs_all_called_back(http: aiohttp.ClientSession) -> None:
    """Hundreds of concurrent jobs each get exactly one callback."""
    async with receiver() as rec, Emulator(job_duration=(0.05, 0.2), seed=7) as emu:
        ids = await asyncio.gather(*(submit(http, emu, hookUrl=rec.url) for _ in range(300)))
        await wait_until(lambda: len(rec.bodies) == 300, timeout=15)
        assert sorted(b["jobId"] for b in rec.bodies) == sorted(ids)
        assert emu.counters.callbacks_failed == 0
        assert emu._board.timers == {}
        assert emu._billing.in_flight == {}


async def test_early_callback_with_a_running_job(http: aiohttp.ClientSession) -> None:
    """early_rate: the job ends at once and its callback lands before the submit reply."""
    async with (
        receiver() as rec,
        Emulator(job_duration=10, callbacks=CallbackFaults(early_rate=1.0)) as emu,
    ):
        job_id = await submit(http, emu, hookUrl=rec.url)
        assert [b["jobId"] for b in rec.bodies] == [job_id]
        assert rec.bodies[0]["status"] == "SUCCESS"
        assert emu._board.timers == {}


async def test_forged_callbacks(http: aiohttp.ClientSession) -> None:
    """forge_rate: a SUCCESS on a made-up token and one on the job's own hook, while it runs."""
    async with (
        receiver() as rec,
        aiohttp.ClientSession() as files,
        Emulator(job_duration=0.6, callbacks=CallbackFaults(forge_rate=1.0)) as emu,
    ):
        hook = rec.url + "/the-token"
        job_id = await submit(http, emu, hookUrl=hook)
        # The counter moves as the emulator sends; the receiver records on arrival: under
        # load the second POST may still be on its way when the counter says 2.
        await wait_until(lambda: emu.counters.callbacks_forged == 2 and len(rec.paths) >= 2)
        assert emu.jobs[job_id].status == "ON_QUEUE"
        assert len(rec.paths) == 2
        assert rec.paths[0] != "/hook/the-token"
        assert rec.paths[0].startswith("/hook/")
        assert rec.paths[1] == "/hook/the-token"
        for body in rec.bodies:
            assert (body["jobId"], body["status"]) == (job_id, "SUCCESS")
        async with files.get(rec.bodies[1]["data"]["imageUrl"]) as resp:
            assert job_of_image(await resp.read()) == "forged"
        await wait_until(lambda: len(rec.bodies) == 3)  # then the genuine callback
        assert rec.bodies[2]["data"]["imageUrl"] == emu.jobs[job_id].image_url


async def test_cross_job_callback(http: aiohttp.ClientSession) -> None:
    """cross_rate: a job's hook first gets another (ended) job's body, then its own."""
    async with receiver() as rec, Emulator(job_duration=0.05) as emu:
        first = await submit(http, emu)
        await anyio.sleep(0.1)
        assert (await fetch(http, emu, first))[1]["status"] == "SUCCESS"
        emu.callbacks.cross_rate = 1.0
        second = await submit(http, emu, hookUrl=rec.url)
        await wait_until(lambda: len(rec.bodies) == 2)
        assert [b["jobId"] for b in rec.bodies] == [first, second]
        assert rec.bodies[0]["data"]["imageUrl"] == emu.jobs[first].image_url
        assert emu.counters.callbacks_crossed == 1
