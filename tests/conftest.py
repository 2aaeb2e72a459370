"""Shared fixtures: the anyio backend (asyncio only: aiohttp is asyncio-only), fast waits and
the emulator."""

from __future__ import annotations

import shutil
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from ttapi_async.testing import Emulator, fast_waits, fast_waits_enabled


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "default_waits: clients keep the SDK's default poll and retry policies, not the "
        "suite's fast waits (tests of those defaults; CLI runs that never wait, which then "
        "run the installed script)",
    )


@pytest.fixture(autouse=True)
def _fast_waits(request: pytest.FixtureRequest) -> Iterator[None]:
    """Clients created without their own policies poll and retry quickly (the emulator's
    jobs take a tenth of a second); tests marked ``default_waits`` keep the defaults."""
    with fast_waits(on=request.node.get_closest_marker("default_waits") is None):
        yield


# The CLI's own entry point, run after turning fast waits on in the child process.
_FAST_CLI = (
    "from ttapi_async.testing import set_fast_waits; set_fast_waits(True); "
    "from ttapi_async._cli import main; main(prog_name='ttapi-async')"
)


@pytest.fixture
def cli() -> list[str]:
    """The command that runs ``ttapi-async`` in a child process, waits as in this test.

    A child does not inherit this process's fast waits, so with them on it runs the same
    ``main`` after turning them on; a ``default_waits`` test runs the installed script.
    """
    if fast_waits_enabled():
        return [sys.executable, "-c", _FAST_CLI]
    exe = shutil.which("ttapi-async")
    return [exe] if exe else [sys.executable, "-m", "ttapi_async._cli"]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def emulator() -> AsyncIterator[Emulator]:
    """A fresh emulator on 127.0.0.1 with short 4o jobs."""
    async with Emulator(job_duration=(0.05, 0.15), seed=1234) as emu:
        yield emu


@pytest.fixture
async def serve() -> AsyncIterator[Callable[[web.Application], Awaitable[str]]]:
    """Start tiny aiohttp apps on 127.0.0.1 for odd replies; returns each app's base URL."""
    servers: list[TestServer] = []

    async def start(app: web.Application) -> str:
        server = TestServer(app, host="127.0.0.1")
        await server.start_server()
        servers.append(server)
        return str(server.make_url("")).rstrip("/")

    yield start
    for server in servers:
        await server.close()
