"""Helpers the test modules share (plain functions; fixtures live in conftest.py)."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import time
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import pytest
from aiohttp import web

import ttapi_async as tt


def body(job_id: str, status: str = "SUCCESS", image: str | None = None) -> dict[str, Any]:
    """A fetch reply (and callback body) for ``job_id``, shaped as TTAPI sends it."""
    done = status == "SUCCESS"
    return {
        "status": status,
        "message": "success" if done else None,
        "jobId": job_id,
        "data": {
            "prompt": "p",
            "imageUrl": (image or f"https://img.example/{job_id}.png") if done else None,
            "quota": "2" if done else None,
        },
    }


class TinyTTAPI:
    """4o submit and fetch, with scripted fetch replies per job (then SUCCESS for good).

    ``script[job_id]`` holds ``(status, body, headers)`` replies served in order by the
    job's fetches; ``gate`` (if set) holds every fetch until it is set; ``on_submit`` runs
    inside the submit handler before the reply (to send callbacks that beat it).
    """

    def __init__(self) -> None:
        self.script: defaultdict[str, list[tuple[int, dict[str, Any], dict[str, str]]]] = (
            defaultdict(list)
        )
        self.fetches: Counter[str] = Counter()
        self.hooks: dict[str, str] = {}
        self.gate: anyio.Event | None = None
        self.on_submit: Callable[[str, str], Awaitable[None]] | None = None
        self.submits = 0
        self.app = web.Application()
        self.app.router.add_post("/openai/4o-image/generations", self._submit)
        self.app.router.add_get("/openai/4o-image/fetch", self._fetch)
        # The /openai/gpt/* route: the same jobs, fetches counted per route too.
        self.app.router.add_post("/openai/gpt/generations", self._submit)
        self.app.router.add_get("/openai/gpt/fetch", self._fetch)
        self.fetch_paths: Counter[str] = Counter()

    async def _submit(self, request: web.Request) -> web.Response:
        payload = await request.json()
        self.submits += 1
        job_id = f"job-{self.submits}"
        hook = payload.get("hookUrl")
        if hook:
            self.hooks[job_id] = hook
            if self.on_submit is not None:
                await self.on_submit(job_id, hook)
        reply = {"status": "SUCCESS", "message": "success", "data": {"jobId": job_id}}
        return web.json_response(reply)

    async def _fetch(self, request: web.Request) -> web.Response:
        job_id = request.query["jobId"]
        self.fetches[job_id] += 1
        self.fetch_paths[request.path] += 1
        if self.gate is not None:
            await self.gate.wait()
        script = self.script[job_id]
        status, reply, headers = script.pop(0) if script else (200, body(job_id), {})
        return web.json_response(reply, status=status, headers=headers)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def served(tg: anyio.abc.TaskGroup, **kwargs: object) -> tt.WebhookReceiver:
    """Start a receiver on its own free port on 127.0.0.1 (the standalone mode)."""
    port = free_port()
    rec = tt.WebhookReceiver(f"http://127.0.0.1:{port}/hook", **kwargs)  # type: ignore[arg-type]
    await tg.start(rec.serve, "127.0.0.1", port)
    return rec


async def wait_until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    """Return once ``predicate()`` holds; fail after ``timeout`` seconds."""
    with anyio.fail_after(timeout):
        # Polling: the counters and lists under test have no event to wait on.
        while not predicate():
            await anyio.sleep(0.01)


async def connect_sending(
    port: int, data: bytes
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Connect to 127.0.0.1:``port`` and send ``data`` before this event loop runs again.

    A receiver served by ``WebhookReceiver.serve`` closes a connection that has sent
    nothing for ``read_timeout`` seconds. When it runs in this same event loop, a loaded
    machine that stalls the loop between an asynchronous connect and the first write can
    trip that timer, so the request would meet a closed connection. Written here with a
    blocking send on loopback, the bytes are in the server's socket before it accepts.
    """
    sock = socket.create_connection(("127.0.0.1", port))
    try:
        sock.sendall(data)
        return await asyncio.open_connection(sock=sock)
    except BaseException:
        sock.close()
        raise


def require_binary(name: str) -> str:
    """The path of a service binary a test starts itself (``redis-server``, ``chromium``).

    Absent, the test skips with the reason stated, so a laptop without the service still
    runs the rest. ``TTAPI_REQUIRE_SERVICES=1`` (set by CI, which installs them) turns the
    skip into a failure: in CI a missing service must never hide a test.
    """
    path = shutil.which(name)
    if path is not None:
        return path
    reason = f"{name} is not installed (install it, or see .ci/run)"
    if os.environ.get("TTAPI_REQUIRE_SERVICES") == "1":
        pytest.fail(f"TTAPI_REQUIRE_SERVICES=1 but {reason}", pytrace=False)
    pytest.skip(reason)


class RedisServer:
    """A real ``redis-server`` on a free port of 127.0.0.1, in its own temporary folder.

    Started by the test (never a system service). ``appendonly`` keeps its data across
    :meth:`restart`, as the docs tell users to run it; ``stop`` then ``start`` with
    ``wipe=True`` plays a Redis that came back empty.
    """

    def __init__(self, folder: str, *, password: str | None = None) -> None:
        self.binary = require_binary("redis-server")
        self.folder = folder
        self.port = free_port()
        self.password = password
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The server's URL (with its password, when it has one)."""
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def start(self, *, wipe: bool = False) -> None:
        """Start the server and return once it answers a PING."""
        if wipe:
            shutil.rmtree(self.folder, ignore_errors=True)
        Path(self.folder).mkdir(parents=True, exist_ok=True)
        args = [
            self.binary,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            self.folder,
            "--save",
            "",
            "--appendonly",
            "yes",
            "--appendfsync",
            "always",
        ]
        if self.password:
            args += ["--requirepass", self.password]
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while not self._answers():
            if self.process.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self.process.returncode}")
            if time.monotonic() > deadline:
                raise RuntimeError("redis-server did not answer within 10 s")
            time.sleep(0.01)  # a process starting: nothing to wait on but its port

    def _answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                auth = f"AUTH {self.password}\r\n".encode() if self.password else b""
                sock.sendall(auth + b"PING\r\n")
                return b"PONG" in sock.recv(256) or b"PONG" in sock.recv(256)
        except OSError:
            return False

    def stop(self) -> None:
        """Kill the server (SIGKILL: a crash, not a clean shutdown)."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.process = None

    def restart(self, *, wipe: bool = False) -> None:
        """Kill the server and start it again on the same port."""
        self.stop()
        self.start(wipe=wipe)
