"""pytest fixtures for testing code that uses ttapi-async: a running emulator and a client.

Installed with the package and loaded by pytest on its own (the ``pytest11`` entry point
``ttapi_async``), so any test may ask for:

* ``ttapi_emulator``: a running :class:`ttapi_async.testing.Emulator` on 127.0.0.1, new for
  each test and stopped after it. Inject faults with ``ttapi_emulator.add_fault(Fault(...))``
  or the ``callbacks=`` option (:class:`~ttapi_async.testing.CallbackFaults`).
* ``ttapi_client``: a :class:`ttapi_async.Client` opened on that emulator, closed after.
* ``ttapi_emulator_options`` and ``ttapi_client_options``: the keyword arguments of
  ``Emulator(...)`` and ``Client(...)`` (empty dicts); override either fixture to change them.
* ``ttapi_fast_waits``: True, so clients created while ``ttapi_emulator`` runs poll and
  retry at once (:func:`ttapi_async.testing.fast_waits`); override it to return False to keep
  the SDK's default waits.

The marker ``@pytest.mark.ttapi_emulator(job_duration=0.05, balance=10, seed=1)`` passes its
keyword arguments to ``Emulator(...)`` over ``ttapi_emulator_options`` (the closest marker
wins), whatever arguments the installed emulator takes.

The two main fixtures are async. With anyio's pytest plugin (installed with anyio), mark the
tests ``@pytest.mark.anyio`` and run them on asyncio only, as aiohttp needs: define an
``anyio_backend`` fixture returning ``"asyncio"`` when trio is installed too. With
pytest-asyncio, use ``asyncio_mode = "auto"``. Either way each fixture enters and leaves its
context in a task of its own, since the emulator and the client each hold a task group open
that must be left in the task that entered it. They need the ``testing`` extra (Pillow):
``pip install 'ttapi-async[testing]'``.

Being registered on every install, this module imports nothing but pytest and the standard
library; the emulator (with Pillow) and the client are imported by the fixtures when a test
uses them. (Python imports the ``ttapi_async`` package before this module; its
``__init__`` loads each public name on first use, so that costs little too.)
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any, TypeVar

import pytest


if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from contextlib import AbstractAsyncContextManager
    from types import ModuleType

    from ttapi_async import Client
    from ttapi_async.testing import Emulator


__all__ = [
    "ttapi_client",
    "ttapi_client_options",
    "ttapi_emulator",
    "ttapi_emulator_options",
    "ttapi_fast_waits",
]

_T = TypeVar("_T")
_MARKER = "ttapi_emulator"
_INSTALL = "pip install 'ttapi-async[testing]'"


def pytest_configure(config: pytest.Config) -> None:
    """Register the marker (so ``--strict-markers`` runs accept it)."""
    config.addinivalue_line(
        "markers",
        f"{_MARKER}(**options): keyword arguments of the Emulator that the ttapi_emulator "
        "fixture starts, over the ttapi_emulator_options fixture (ttapi-async)",
    )


@pytest.fixture
def ttapi_emulator_options() -> dict[str, Any]:
    """Keyword arguments of ``Emulator(...)`` for ``ttapi_emulator``: none by default.

    Override it (in a conftest, module or class) to set them for many tests; a
    ``@pytest.mark.ttapi_emulator(...)`` marker adds to and overrides these.
    """
    return {}


@pytest.fixture
def ttapi_client_options() -> dict[str, Any]:
    """Keyword arguments of ``Client(...)`` for ``ttapi_client`` besides the key and URL."""
    return {}


@pytest.fixture
def ttapi_fast_waits() -> bool:
    """Whether ``ttapi_emulator`` turns fast waits on while it runs (True).

    Override it to return False for tests of code that relies on the default waits.
    """
    return True


@pytest.fixture
async def ttapi_emulator(
    request: pytest.FixtureRequest,
    ttapi_emulator_options: dict[str, Any],
    ttapi_fast_waits: bool,
) -> AsyncIterator[Emulator]:
    """A running emulator on 127.0.0.1, new for this test (see the module's doc)."""
    testing = _import_testing(request)
    options = {**ttapi_emulator_options, **_marker_options(request)}
    try:
        emulator = testing.Emulator(**options)
    except TypeError as exc:
        pytest.fail(f"ttapi_emulator: Emulator() does not take {options!r}: {exc}", pytrace=False)
    with testing.fast_waits(on=ttapi_fast_waits):
        async with _in_own_task(request, emulator) as running:
            yield running


@pytest.fixture
async def ttapi_client(
    request: pytest.FixtureRequest,
    ttapi_emulator: Emulator,
    ttapi_client_options: dict[str, Any],
) -> AsyncIterator[Client]:
    """A :class:`ttapi_async.Client` opened on ``ttapi_emulator``, closed after the test."""
    from ttapi_async import Client  # noqa: PLC0415 - heavy: only when a test asks for it

    client = Client(ttapi_emulator.api_key, base_url=ttapi_emulator.url, **ttapi_client_options)
    async with _in_own_task(request, client) as opened:
        yield opened


def _import_testing(request: pytest.FixtureRequest) -> ModuleType:
    """``ttapi_async.testing``, or a failure naming the fixture if Pillow is missing."""
    try:
        import ttapi_async.testing  # noqa: PLC0415 - heavy: only when a test asks for it
    except ImportError as exc:
        if not _about_pillow(exc):
            raise
        missing = exc
    else:
        return ttapi_async.testing
    # Failed outside the except block, so the report is this one line and not the chain.
    pytest.fail(
        f"{request.fixturename} (ttapi-async's pytest plugin) needs Pillow, the 'testing' "
        f"extra: {_INSTALL}\n(importing ttapi_async.testing: {_root(missing)})",
        pytrace=False,
    )


def _about_pillow(exc: BaseException) -> bool:
    """True if this import error, or one it was raised from, is about Pillow (``PIL``)."""
    seen: BaseException | None = exc
    while seen is not None:
        name = getattr(seen, "name", None) or ""
        if name.split(".")[0] == "PIL" or "Pillow" in str(seen):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _root(exc: BaseException) -> BaseException:
    """The first error of the chain ``exc`` was raised from."""
    while exc.__cause__ is not None:
        exc = exc.__cause__
    return exc


def _marker_options(request: pytest.FixtureRequest) -> dict[str, Any]:
    """The keyword arguments of every ``ttapi_emulator`` marker, the closest one winning."""
    options: dict[str, Any] = {}
    # iter_markers yields the closest (the function's) first: apply it last.
    for marker in reversed(list(request.node.iter_markers(_MARKER))):
        if marker.args:
            pytest.fail(
                f"@pytest.mark.{_MARKER} takes keyword arguments only, got {marker.args!r}",
                pytrace=False,
            )
        options.update(marker.kwargs)
    return options


@contextlib.asynccontextmanager
async def _in_own_task(
    request: pytest.FixtureRequest, manager: AbstractAsyncContextManager[_T]
) -> AsyncIterator[_T]:
    """Enter ``manager`` in a task of its own, yield what it gave, then leave it there.

    The emulator and the client hold an anyio task group between entering and leaving,
    which must happen in one task. anyio's plugin runs a fixture's setup and teardown in
    one task, but pytest-asyncio does not, so neither is trusted: a host task does both.
    """
    import asyncio  # noqa: PLC0415 - keeps the plugin's load to what pytest needs

    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        pytest.fail(
            f"{request.fixturename} runs on asyncio only (aiohttp): with anyio's pytest "
            "plugin, define an anyio_backend fixture returning 'asyncio'",
            pytrace=False,
        )
    entered: asyncio.Future[_T] = loop.create_future()
    leave = asyncio.Event()

    async def host() -> None:
        async with manager as value:
            entered.set_result(value)
            await leave.wait()

    task = loop.create_task(host(), name=f"pytest fixture {request.fixturename}")
    try:
        either: list[asyncio.Future[Any]] = [entered, task]
        await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
    finally:
        if not entered.done():  # it failed to enter (raised below), or we are cancelled
            leave.set()
            await task
    try:
        yield entered.result()
    finally:
        leave.set()
        await task  # leaving's own errors (and any while it ran) come out in the teardown
