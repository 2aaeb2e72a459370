"""The Emulator itself: construction, clean start and stop, counters, and the standalone
``python -m ttapi_async.testing`` (``ttapi_async/testing/_emulator.py``). Each part of the
emulator has its own module of tests: test_emulator_gateway, _routes, _jobs, _billing,
_cdn, _faults and _rules."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import sys
import time
from pathlib import Path

import aiohttp
import anyio
import attrs
import pytest
from anyio.streams.text import TextReceiveStream
from emulator_helpers import GEN, SUBMIT, post_json, receiver, submit

from ttapi_async.testing import CallbackFaults, Counters, EmulatedJob, Emulator


pytestmark = pytest.mark.anyio


# --------------------------------------------------------------------------- helpers


# --------------------------------------------------------------------------- construction


def test_url_before_start_raises() -> None:
    """The URL is not known before the server starts."""
    with pytest.raises(RuntimeError, match="not running"):
        _ = Emulator().url


def test_generated_api_key_and_repr() -> None:
    """Without a key the emulator makes one up, and its repr never shows it."""
    emu = Emulator()
    assert emu.api_key.startswith("emu-")
    assert len(emu.api_key) == 4 + 32
    assert emu.api_key not in repr(emu)
    assert Emulator("k").api_key == "k"


# --------------------------------------------------------------------------- lifecycle


async def test_clean_exit_leaves_no_tasks(http: aiohttp.ClientSession) -> None:
    """Exit cancels pending timers, slow replies and callback deliveries: no task is left."""
    before = asyncio.all_tasks()
    async with receiver() as rec:
        emu = Emulator(job_duration=0.02, sync_latency=5, callbacks=CallbackFaults(delay=10))
        async with emu:
            await submit(http, emu, hookUrl=rec.url)
            emu.job_duration = 10
            await submit(http, emu, hookUrl=rec.url)
            slow = asyncio.ensure_future(post_json(http, emu, GEN, {"prompt": "slow"}))
            await anyio.sleep(0.1)
            assert len(emu._board.timers) == 1
            assert len(asyncio.all_tasks()) > len(before)
            start = time.perf_counter()
        assert time.perf_counter() - start < 2
        with pytest.raises(aiohttp.ClientError):
            await slow
        assert rec.bodies == []
    assert asyncio.all_tasks() == before
    assert emu._board.timers == {}


async def test_failed_start_cleans_up(emulator: Emulator) -> None:
    """A port already in use fails the start, and the half-started emulator leaves nothing."""
    port = int(emulator.url.rsplit(":", 1)[1])
    before = asyncio.all_tasks()
    second = Emulator(port=port)
    with pytest.raises(OSError, match="address already in use"):
        async with second:
            pytest.fail("the second emulator should not start")
    assert asyncio.all_tasks() == before
    assert second._board.courier.session is None
    assert second._tg is None


async def test_errors_in_the_block_come_out_unwrapped() -> None:
    """An error raised inside ``async with Emulator()`` propagates as itself."""
    with pytest.raises(KeyError):
        async with Emulator():
            raise KeyError("boom")


async def test_cancelled_block_stops_cleanly(http: aiohttp.ClientSession) -> None:
    """Cancelling the block (a timeout around it) still stops the emulator and leaves no task."""
    before = asyncio.all_tasks()
    with anyio.move_on_after(0.3) as scope:
        async with Emulator(job_duration=5) as emu:
            await submit(http, emu)
            await anyio.sleep(10)
    assert scope.cancelled_caught
    assert asyncio.all_tasks() == before
    assert emu._board.timers == {}
    with pytest.raises(RuntimeError):
        _ = emu.url


async def test_counters_snapshot_is_plain(emulator: Emulator, http: aiohttp.ClientSession) -> None:
    """snapshot() gives plain dicts and numbers."""
    await post_json(http, emulator, GEN, {"prompt": "p"})
    snap = emulator.counters.snapshot()
    assert snap["requests"] == {GEN: 1}
    assert type(snap["requests"]) is dict
    assert snap["responses"] == {200: 1}
    assert snap["billed"] == {GEN: 1}
    assert set(snap) == {f.name for f in attrs.fields(Counters)}
    job = EmulatedJob("j", "secret", "p", [], "https://h/tok", 0.0, 1.0, will_fail=False)
    assert "secret" not in repr(job)
    assert "tok" not in repr(job)


@pytest.fixture
def cli_env() -> dict[str, str]:
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    return env


async def test_standalone_main(http: aiohttp.ClientSession, cli_env: dict[str, str]) -> None:
    """``python -m ttapi_async.testing --port 0`` prints its URL, serves, and stops on SIGTERM."""
    command = [
        sys.executable, "-m", "ttapi_async.testing", "--port", "0", "--api-key", "k1",
        "--job-duration", "0.01", "0.02", "--sync-latency", "0", "--read-timeout", "0.3",
        "--max-body", "4096",
    ]  # fmt: skip
    async with await anyio.open_process(command, env=cli_env) as proc:
        try:
            assert proc.stdout is not None
            assert proc.stderr is not None
            line = ""
            with anyio.fail_after(20):
                async for chunk in TextReceiveStream(proc.stdout):
                    line += chunk
                    if "\n" in line:
                        break
            match = re.fullmatch(
                r"TTAPI emulator on (http://127\.0\.0\.1:(\d+)) \(api key: k1\)\n", line
            )
            assert match, line
            assert match.group(2) != "0"
            # And for a person, on stderr: the line to paste into another shell.
            told = ""
            with anyio.fail_after(20):
                async for chunk in TextReceiveStream(proc.stderr):
                    told += chunk
                    if "TTAPI_API_KEY=k1" in told:
                        break
            assert f"export TTAPI_BASE_URL={match.group(1)} TTAPI_API_KEY=k1" in told
            headers = {"TT-API-KEY": "k1"}
            url = match.group(1) + SUBMIT
            async with http.post(url, json={"prompt": "p"}, headers=headers) as resp:
                assert resp.status == 200
            async with http.post(url, json={"prompt": "p" * 5000}, headers=headers) as resp:
                assert resp.status == 413
            port = int(match.group(2))
            async with await anyio.connect_tcp("127.0.0.1", port) as sock:
                await sock.send(
                    f"POST {SUBMIT} HTTP/1.1\r\nHost: h\r\nTT-API-KEY: k1\r\n"
                    "Content-Length: 9\r\n\r\n{".encode()
                )
                with anyio.fail_after(5):
                    reply = b""
                    with contextlib.suppress(anyio.EndOfStream):
                        while True:  # until the server closes the stalled connection
                            reply += await sock.receive()
                assert reply.startswith(b"HTTP/1.1 408 ")
            proc.send_signal(signal.SIGTERM)
            with anyio.fail_after(10):
                assert await proc.wait() == 0
        finally:
            if proc.returncode is None:
                proc.kill()
