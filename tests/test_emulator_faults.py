"""Injected request faults over real HTTP: statuses, drops, malformed bodies, latency and
swapped fetches, before and after the request is processed (``ttapi_async/testing/_faults.py``,
carried out by the gateway). The fault matrix over whole client runs is ``test_faults.py``."""

from __future__ import annotations

import json
import time

import aiohttp
import anyio
import pytest
from emulator_helpers import (
    EDIT,
    FETCH,
    GEN,
    SUBMIT,
    UNAUTHORIZED,
    fetch,
    key,
    post_json,
    submit,
)
from helpers import wait_until

from ttapi_async.testing import (
    Emulator,
    Fault,
)


pytestmark = pytest.mark.anyio


# --------------------------------------------------------------------------- request faults


async def test_status_fault_before_accept(emulator: Emulator, http: aiohttp.ClientSession) -> None:
    """A status fault replaces the reply before processing: nothing billed, no job."""
    fault = emulator.add_fault(Fault(route=SUBMIT, status=500, count=1))
    status, body = await post_json(http, emulator, SUBMIT, {"prompt": "p"})
    assert status == 500
    assert body == {"status": "FAILED", "message": "Internal server error", "data": None}
    assert fault.fired == 1
    assert emulator.jobs == {}
    assert emulator.counters.billed.total() == 0
    assert (await post_json(http, emulator, SUBMIT, {"prompt": "p"}))[0] == 200
    assert fault.fired == 1
    assert emulator.counters.responses[500] == 1


async def test_status_fault_after_accept_bills(
    emulator: Emulator, http: aiohttp.ClientSession
) -> None:
    """An after_accept fault processes the request (billed, counted) and then fails the reply."""
    emulator.add_fault(Fault(route=GEN, status=502, after_accept=True))
    emulator.add_fault(Fault(route=SUBMIT, status=504, after_accept=True))
    status, body = await post_json(http, emulator, GEN, {"prompt": "once"})
    assert status == 502
    assert body["status"] == "FAILED"
    status, _ = await post_json(http, emulator, SUBMIT, {"prompt": "job"})
    assert status == 504
    assert emulator.counters.billed == {GEN: 1, SUBMIT: 1}
    assert emulator.counters.submits_by_prompt == {"once": 1, "job": 1}
    assert len(emulator.jobs) == 1


@pytest.mark.parametrize(
    ("route", "status", "shape"),
    [
        (GEN, 400, "openai"),
        (EDIT, 404, "openai"),
        (GEN, 429, "envelope"),
        (GEN, 499, "envelope"),
        (GEN, 503, "envelope"),
        (SUBMIT, 400, "envelope"),
        (FETCH, 403, "envelope"),
    ],
)
async def test_status_fault_body_shape(
    emulator: Emulator, http: aiohttp.ClientSession, route: str, status: int, shape: str
) -> None:
    """Status faults use OpenAI's shape for /v1 4xx and the envelope for gateway codes and 5xx."""
    emulator.add_fault(Fault(route=route, status=status, retry_after=1.5))
    async with http.post(emulator.url + route, json={}, headers=key(emulator)) as resp:
        assert resp.status == status
        assert resp.headers["Retry-After"] == "1.5"
        body = await resp.json()
    if shape == "openai":
        assert set(body["error"]) == {"message", "type", "param", "code"}
    else:
        assert (body["status"], body["data"]) == ("FAILED", None)


async def test_status_fault_401_and_custom_body(
    emulator: Emulator, http: aiohttp.ClientSession
) -> None:
    """A 401 fault sends the gateway's exact body; ``body`` overrides any fault body."""
    emulator.add_fault(Fault(route=GEN, status=401, count=1))
    emulator.add_fault(Fault(route=GEN, status=500, body=b"<html>oops</html>", count=1))
    async with http.post(emulator.url + GEN, json={}, headers=key(emulator)) as resp:
        assert (resp.status, await resp.read()) == (401, UNAUTHORIZED)
    async with http.post(emulator.url + GEN, json={}, headers=key(emulator)) as resp:
        assert (resp.status, await resp.read()) == (500, b"<html>oops</html>")


@pytest.mark.parametrize("after_accept", [False, True])
async def test_drop_fault_disconnects(
    emulator: Emulator, http: aiohttp.ClientSession, after_accept: bool
) -> None:
    """A drop closes the connection with no response; after_accept still creates the job."""
    emulator.add_fault(Fault(route=SUBMIT, kind="drop", count=1, after_accept=after_accept))
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await post_json(http, emulator, SUBMIT, {"prompt": "p"})
    assert emulator.counters.drops == 1
    assert emulator.counters.billed[SUBMIT] == (1 if after_accept else 0)
    assert len(emulator.jobs) == (1 if after_accept else 0)
    assert (await post_json(http, emulator, SUBMIT, {"prompt": "p"}))[0] == 200


async def test_malformed_fault(emulator: Emulator, http: aiohttp.ClientSession) -> None:
    """A malformed fault answers 200 application/json with a body that is not JSON."""
    emulator.add_fault(Fault(route=FETCH, kind="malformed"))
    async with http.get(emulator.url + FETCH, params={"jobId": "x"}, headers=key(emulator)) as resp:
        assert resp.status == 200
        assert resp.content_type == "application/json"
        raw = await resp.read()
    with pytest.raises(ValueError, match=r"Unterminated|Expecting"):
        json.loads(raw)
    assert emulator.counters.fetches == 0


async def test_latency_fault_combines_with_status(
    emulator: Emulator, http: aiohttp.ClientSession
) -> None:
    """A latency fault delays the request, and another fault still applies to it."""
    emulator.add_fault(Fault(kind="latency", delay=0.25, count=1))
    emulator.add_fault(Fault(status=503, count=1))
    start = time.perf_counter()
    status, _ = await post_json(http, emulator, GEN, {"prompt": "p"})
    assert time.perf_counter() - start >= 0.25
    assert status == 503
    start = time.perf_counter()
    assert (await post_json(http, emulator, GEN, {"prompt": "p"}))[0] == 200
    assert time.perf_counter() - start < 0.25


async def test_fault_rate_is_seeded(http: aiohttp.ClientSession) -> None:
    """A fault with rate fires on about that share of requests, the same way for one seed."""

    async def run() -> list[int]:
        async with Emulator(seed=42) as emu:
            emu.add_fault(Fault(route=FETCH, status=429, rate=0.3))
            statuses = []
            for _ in range(100):
                statuses.append((await fetch(http, emu, "x"))[0])
            return statuses

    first, second = await run(), await run()
    assert first == second
    assert 15 <= first.count(429) <= 45
    assert set(first) == {404, 429}


async def test_fault_route_matching(emulator: Emulator, http: aiohttp.ClientSession) -> None:
    """A route fault hits only its path, ``*`` hits every API path but never /files."""
    _, body = await post_json(http, emulator, GEN, {"prompt": "p"})
    url = body["data"][0]["url"]
    emulator.add_fault(Fault(route=FETCH, status=500))
    assert (await post_json(http, emulator, GEN, {"prompt": "p"}))[0] == 200
    emulator.clear_faults()
    emulator.add_fault(Fault(status=500))
    assert (await post_json(http, emulator, GEN, {"prompt": "p"}))[0] == 500
    assert (await fetch(http, emulator, "x"))[0] == 500
    async with http.get(url) as resp:
        assert resp.status == 200


def test_fault_kind_is_checked() -> None:
    """An unknown fault kind is refused at construction."""
    with pytest.raises(ValueError, match="kind"):
        Fault(kind="explode")  # type: ignore[arg-type]


async def test_status_fault_with_an_html_page(
    emulator: Emulator, http: aiohttp.ClientSession
) -> None:
    """content_type sends a fault body as it is, e.g. a gateway's HTML error page."""
    page = b"<html><body><h1>502 Bad Gateway</h1></body></html>"
    emulator.add_fault(Fault(route=SUBMIT, status=502, body=page, content_type="text/html"))
    async with http.post(emulator.url + SUBMIT, json={"prompt": "p"}, headers=key(emulator)) as r:
        assert (r.status, r.content_type, await r.read()) == (502, "text/html", page)
    assert emulator.jobs == {}


async def test_hanging_reply_after_accept(emulator: Emulator, http: aiohttp.ClientSession) -> None:
    """An after_accept latency fault holds the reply of a job that already exists."""
    emulator.add_fault(Fault(route=SUBMIT, kind="latency", delay=0.25, after_accept=True))
    async with anyio.create_task_group() as tg:
        replies: list[str] = []

        async def send() -> None:
            replies.append(await submit(http, emulator))

        tg.start_soon(send)
        await wait_until(lambda: len(emulator.jobs) == 1)
        assert replies == []
    assert replies == list(emulator.jobs)


async def test_swap_fault_answers_another_jobs_body(
    emulator: Emulator, http: aiohttp.ClientSession
) -> None:
    """A swap fault answers a fetch with another (ended) job's body; its jobId is not asked."""
    other = await submit(http, emulator, prompt="other")
    await anyio.sleep(0.2)
    mine = await submit(http, emulator, prompt="mine")
    emulator.add_fault(Fault(route=FETCH, kind="swap", count=1))
    status, body = await fetch(http, emulator, mine)
    assert (status, body["jobId"], body["status"]) == (200, other, "SUCCESS")
    assert body["data"]["prompt"] == "other"
    assert emulator.counters.fetches_swapped == 1
    assert (await fetch(http, emulator, mine))[1]["jobId"] == mine
    # No other job, or not a 200: the reply is the real one.
    async with Emulator() as lone:
        lone.add_fault(Fault(route=FETCH, kind="swap"))
        only = await submit(http, lone)
        assert (await fetch(http, lone, only))[1]["jobId"] == only
        assert (await fetch(http, lone, "nope"))[0] == 404
        assert lone.counters.fetches_swapped == 0
