"""Shared fixtures: the anyio backend (asyncio only: aiohttp is asyncio-only), fast waits and
the emulator."""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import TYPE_CHECKING

import pytest


# The SDK, its emulator and aiohttp are imported where the fixtures use them, not here:
# pytest-xdist's main process loads this file too, and only starts the workers after it.
if TYPE_CHECKING:
    from pathlib import Path

    import aiohttp
    from aiohttp import web
    from helpers import RedisServer

    from ttapi_async.testing import Emulator


def pytest_addoption(parser: pytest.Parser, pluginmanager: pytest.PytestPluginManager) -> None:
    """Without pytest-xdist (``-p no:xdist``: a serial run), accept pyproject's
    ``--numprocesses`` and ``--dist`` and ignore them, rather than stop at unknown options."""
    if not pluginmanager.has_plugin("xdist"):
        group = parser.getgroup("xdist", "pytest-xdist is off: these are ignored")
        group.addoption("--numprocesses", dest="numprocesses", default=None)
        group.addoption("--dist", dest="dist", default="no")
        group.addoption("--no-loadscope-reorder", action="store_true")


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_auto_num_workers(config: pytest.Config) -> int | None:
    """``-n auto`` (pyproject): two workers more than the CPUs this process may use.

    Much of the suite's time is spent waiting (on emulated jobs, timeouts, child processes,
    a headless browser), so extra workers fill the CPUs. On 2 CPUs: 3 workers took 53 s,
    4 took 47 s and 5 took 45 s, each worker adding a collection (about 6 s of CPU) and
    contention for the tests that time things. ``PYTEST_XDIST_AUTO_NUM_WORKERS`` overrides.
    """
    if os.environ.get("PYTEST_XDIST_AUTO_NUM_WORKERS") or config.option.numprocesses != "auto":
        return None  # pytest-xdist's own rule
    return len(os.sched_getaffinity(0)) + 2 if hasattr(os, "sched_getaffinity") else None


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "default_waits: clients keep the SDK's default poll and retry policies, not the "
        "suite's fast waits (tests of those defaults; CLI runs that never wait, which then "
        "run the installed script)",
    )


# pytest-xdist hands each worker whole modules (--dist loadfile), in the order collected
# (--no-loadscope-reorder). The slowest (serial seconds: 5 to 8 each) go first, so that
# no worker is left running one of them while the others stand idle at the end.
# (The first two wait more than they work: they overlap well with the rest.)
_SLOWEST_MODULES = (
    "test_example_multiworker",  # 15 s: six uvicorn workers, and 8 s of an outage
    "test_cli_shared",  # 10 s: CLI processes sharing a run, leases lapsing
    "test_gallery",  # 9 s: the gallery app's process and headless chromium (mostly waiting)
    "test_docs",  # 13 s: every snippet of the README and docs/ against the emulator
    "test_waiter",
    "test_properties_protocol",
    "test_examples",
    "test_properties_files",
    "test_resume",
    "test_faults",
    "test_cli",
    "test_admission",
    "test_properties_webhook",
    "test_emulator_rules",
    "test_secrets",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The slowest modules first (a stable sort: each module keeps its own order)."""
    rank = {name: i for i, name in enumerate(_SLOWEST_MODULES)}
    items.sort(key=lambda item: rank.get(item.path.stem, len(rank)))


def _utf8_safe(text: str) -> str:
    """``text`` with any lone surrogate written as a backslash escape."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Make a test's report sendable as UTF-8, before pytest-xdist sends it on.

    The property suites feed lone surrogates to the SDK, which logs some of what it
    refuses; a captured log holding one would crash the xdist worker that tries to send
    the report to the main process (execnet sends strings as UTF-8).
    """
    report.sections = [(title, _utf8_safe(content)) for title, content in report.sections]
    if report.longrepr is not None:
        text = str(report.longrepr)
        if _utf8_safe(text) != text:
            report.longrepr = _utf8_safe(text)


@pytest.fixture(autouse=True)
def _fast_waits(request: pytest.FixtureRequest) -> Iterator[None]:
    """Clients created without their own policies poll and retry quickly (the emulator's
    jobs take a tenth of a second); tests marked ``default_waits`` keep the defaults."""
    from ttapi_async.testing import fast_waits  # noqa: PLC0415 - see the imports

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
    from ttapi_async.testing import fast_waits_enabled  # noqa: PLC0415 - see the imports

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
    from ttapi_async.testing import Emulator  # noqa: PLC0415 - see the imports

    async with Emulator(job_duration=(0.05, 0.15), seed=1234) as emu:
        yield emu


@pytest.fixture
async def serve() -> AsyncIterator[Callable[[web.Application], Awaitable[str]]]:
    """Start tiny aiohttp apps on 127.0.0.1 for odd replies; returns each app's base URL."""
    from aiohttp.test_utils import TestServer  # noqa: PLC0415 - see the imports

    servers: list[TestServer] = []

    async def start(app: web.Application) -> str:
        server = TestServer(app, host="127.0.0.1")
        await server.start_server()
        servers.append(server)
        return str(server.make_url("")).rstrip("/")

    yield start
    for server in servers:
        await server.close()


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A real redis-server of this test's own, on a free port, in a temporary folder."""
    from helpers import RedisServer  # noqa: PLC0415 - see the imports

    server = RedisServer(str(tmp_path / "redis"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def emu() -> Iterator[Emulator]:
    """An emulator with short 4o jobs, served by an event loop of its own in a thread
    (for tests that are not async: child processes talk to it while the test blocks)."""
    from anyio.from_thread import start_blocking_portal  # noqa: PLC0415 - see the imports

    from ttapi_async.testing import Emulator  # noqa: PLC0415

    emulator = Emulator(job_duration=(0.05, 0.15), seed=1234)
    with (
        start_blocking_portal("asyncio") as portal,
        portal.wrap_async_context_manager(emulator) as served,
    ):
        yield served


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    """A plain aiohttp session, for tests that talk HTTP to a server themselves."""
    import aiohttp  # noqa: PLC0415 - see the imports

    async with aiohttp.ClientSession() as session:
        yield session
