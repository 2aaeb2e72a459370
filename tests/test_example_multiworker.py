"""examples/multiworker_backend.py as real uvicorn worker processes, Redis and the emulator.

The backend runs as its README says (``uvicorn examples.multiworker_backend:app
--workers N`` from the repository's root), against the emulator (in a thread of this
process) and a real redis-server of the test's own. Two deployments share one Redis, as
two groups of machines would: ``front`` (4 workers) takes the requests and their
callbacks (the emulator opens a new connection per callback, so the kernel hands each to
any of the four), and ``other`` (2 workers) is asked about jobs it never saw. Counted in
each test: every job answered, none submitted twice, and (where no fault forces polling)
one fetch per job in the whole fleet: the confirmation of its callback.

One fleet serves the module's tests, in order: starting 6 worker processes costs seconds
of CPU, and the last two tests (a worker killed, Redis restarted) must leave it working.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import anyio
import attrs
import pytest
from anyio.from_thread import start_blocking_portal
from helpers import RedisServer, free_port

from ttapi_async.testing import Emulator


pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parent.parent


class Backend:
    """The example under uvicorn with ``workers`` processes, on a free port."""

    def __init__(
        self, emulator: Emulator, redis_url: str, workers: int, hook_url: str | None = None
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.workers = workers
        env = {
            **os.environ,
            "TTAPI_API_KEY": emulator.api_key,
            "TTAPI_BASE_URL": emulator.url,
            "TTAPI_REDIS_URL": redis_url,
            "TTAPI_HOOK_URL": hook_url or f"{self.url}/ttapi/hook",
            "TTAPI_WAIT_TIMEOUT": "30",
        }
        command = [sys.executable, "-m", "uvicorn", "examples.multiworker_backend:app"]
        command += ["--workers", str(workers), "--host", "127.0.0.1", "--port", str(self.port)]
        self.process = subprocess.Popen(
            [*command, "--log-level", "warning"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        self.pids: set[int] = set()

    async def ready(self) -> None:
        """Wait until every worker has answered once (their pids in ``pids``)."""
        connector = aiohttp.TCPConnector(force_close=True)
        async with aiohttp.ClientSession(connector=connector) as http:
            with anyio.fail_after(60):
                while len(self.pids) < self.workers:
                    if self.process.poll() is not None:
                        out = self.process.stdout.read().decode() if self.process.stdout else ""
                        pytest.fail(f"uvicorn exited with {self.process.returncode}:\n{out}")
                    try:
                        # A new connection each time: the kernel picks the worker.
                        async with http.get(f"{self.url}/jobs/nothing") as resp:
                            self.pids.add(int(resp.headers["X-Worker-PID"]))
                    except aiohttp.ClientError:
                        await anyio.sleep(0.05)  # starting: nothing to wait on but the port

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@attrs.define
class Fleet:
    emu: Emulator
    redis: RedisServer
    front: Backend
    other: Backend


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    redis = RedisServer(str(tmp_path_factory.mktemp("redis")))
    redis.start()
    emulator = Emulator(job_duration=(0.3, 0.6), seed=7)
    with (
        start_blocking_portal("asyncio") as portal,
        portal.wrap_async_context_manager(emulator) as emu,
    ):
        other = Backend(emu, redis.url, 2)
        front = Backend(emu, redis.url, 4)
        try:
            anyio.run(other.ready)
            anyio.run(front.ready)
            yield Fleet(emu, redis, front, other)
        finally:
            front.stop()
            other.stop()
            redis.stop()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    # No connection reuse: every request may land on another worker.
    connector = aiohttp.TCPConnector(force_close=True, limit=100)
    async with aiohttp.ClientSession(connector=connector) as session:
        yield session


async def request(
    http: aiohttp.ClientSession, method: str, url: str, **kwargs: Any
) -> tuple[int, dict[str, Any], int]:
    async with http.request(method, url, **kwargs) as resp:
        return resp.status, await resp.json(), int(resp.headers.get("X-Worker-PID", 0))


async def submit_all(
    http: aiohttp.ClientSession, server: Backend, n: int, tag: str
) -> dict[str, int]:
    """Submit ``n`` jobs through ``POST /submit``; each job id and the pid that took it."""
    ids = {}
    for i in range(n):
        status, body, pid = await request(
            http, "POST", f"{server.url}/submit", json={"prompt": f"{tag}{i}"}
        )
        assert status == 202
        ids[body["job_id"]] = pid
    return ids


async def ask_all(
    http: aiohttp.ClientSession, server: Backend, ids: Iterable[str], wait: float
) -> dict[str, tuple[int, dict[str, Any], int]]:
    """``GET /jobs/{id}?wait=`` for every id at once (each on a new connection)."""
    answers = {}

    async def ask(job_id: str) -> None:
        answers[job_id] = await request(http, "GET", f"{server.url}/jobs/{job_id}?wait={wait}")

    async with anyio.create_task_group() as tg:
        for job_id in ids:
            tg.start_soon(ask, job_id)
    return answers


async def test_generate_on_four_workers_callbacks_on_any(
    fleet: Fleet, http: aiohttp.ClientSession
) -> None:
    emu = fleet.emu
    emu.job_duration = (0.3, 0.6)
    fetches = emu.counters.fetches
    answers: list[tuple[int, dict[str, Any], int]] = []

    async def generate(i: int) -> None:
        url = f"{fleet.front.url}/generate"
        answers.append(await request(http, "POST", url, json={"prompt": f"p{i}"}))

    async with anyio.create_task_group() as tg:
        for i in range(40):
            tg.start_soon(generate, i)
    assert [a[0] for a in answers] == [200] * 40
    assert {a[1]["status"] for a in answers} == {"SUCCESS"}
    assert len({a[1]["job_id"] for a in answers}) == 40
    assert all(a[1]["image_url"] for a in answers)
    assert {a[2] for a in answers} <= fleet.front.pids
    assert set(emu.counters.submits_by_prompt.values()) == {1}
    # Each callback landed on any `front` worker, which confirmed it (one fetch per job in
    # the fleet) and woke the worker awaiting it; none waited for the 30 s backstop
    # (TTAPI_WAIT_TIMEOUT is 30 s: that would be a 504).
    assert emu.counters.fetches - fetches == 40
    assert emu.counters.callbacks_failed == 0


async def test_submit_on_one_worker_and_ask_another(
    fleet: Fleet, http: aiohttp.ClientSession
) -> None:
    emu = fleet.emu
    fetches = emu.counters.fetches
    ids = list(await submit_all(http, fleet.front, 12, "s"))
    answers = await ask_all(http, fleet.other, ids, 20)
    assert {a[0] for a in answers.values()} == {200}
    assert {a[2] for a in answers.values()} <= fleet.other.pids  # not the submitters
    # Late, after the end: answered from the stored result, by any worker, no new fetch.
    for job_id in ids:
        status, body, _ = await request(http, "GET", f"{fleet.front.url}/jobs/{job_id}")
        assert (status, body["image_url"]) == (200, answers[job_id][1]["image_url"])
    assert emu.counters.fetches - fetches == len(ids)
    status, body, _ = await request(http, "GET", f"{fleet.other.url}/jobs/never-submitted")
    assert (status, body["job_id"]) == (404, "never-submitted")
    status, _, _ = await request(http, "GET", f"{fleet.front.url}/jobs/{ids[0]}?wait=121")
    assert status == 422
    status, _, _ = await request(http, "POST", f"{fleet.front.url}/generate", json={"no": 1})
    assert status == 422


async def test_a_worker_killed_mid_run_leaves_no_job_behind(
    fleet: Fleet, http: aiohttp.ClientSession
) -> None:
    emu = fleet.emu
    emu.job_duration = (1.0, 1.5)  # the kill lands before any job ends
    fetches = emu.counters.fetches
    ids = await submit_all(http, fleet.front, 16, "k")
    victim = max(set(ids.values()), key=list(ids.values()).count)
    os.kill(victim, signal.SIGKILL)
    answers = await ask_all(http, fleet.other, ids, 20)
    assert {a[0] for a in answers.values()} == {200}
    assert set(emu.counters.submits_by_prompt.values()) == {1}
    # The dead worker's jobs were finished by the others, one confirmation each.
    assert emu.counters.fetches - fetches == len(ids)


async def test_redis_restarted_mid_run(fleet: Fleet, http: aiohttp.ClientSession) -> None:
    emu = fleet.emu
    emu.job_duration = (0.2, 0.4)
    ids = list(await submit_all(http, fleet.front, 8, "r"))
    fleet.redis.stop()
    # Every job ends while Redis is away: a worker refuses a callback for a token it did
    # not make (503), judges its own alone, and the submitters fall back to polling.
    with anyio.fail_after(10):
        while sum(1 for i in ids if emu.jobs[i].callbacks) < len(ids):
            await anyio.sleep(0.05)  # the emulator's thread: no event to wait on
    fleet.redis.start()
    started = time.monotonic()
    answers = await ask_all(http, fleet.other, ids, 30)
    assert {a[0] for a in answers.values()} == {200}
    # Answered by the submitters' polls (every 8 s at most once degraded, then shared
    # again through Redis), not at the 30 s backstop.
    assert time.monotonic() - started < 12
    assert set(emu.counters.submits_by_prompt.values()) == {1}
