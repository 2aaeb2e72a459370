"""Helpers the test modules share (plain functions; fixtures live in conftest.py)."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
from collections.abc import Callable

import anyio
import anyio.abc
import pytest

import ttapi_async as tt


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
