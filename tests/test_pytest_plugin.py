"""The pytest plugin (ttapi_async.pytest_plugin): users' test files run by a pytest of their own.

Each inner run has pytester's folder as its root (no pyproject there: no addopts, no xdist)
and loads its plugins from their entry points, as in a user's project, so ttapi-async's
plugin and anyio's are found as they would be there. Most run in this process (about a
second each, against two to four in a child process); the one that hides Pillow runs in a
child.
"""

from __future__ import annotations

import ast
import gc
import importlib.metadata
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import ttapi_async.pytest_plugin


pytest_plugins = ["pytester"]

# What every child run gets: the marker must be registered (--strict-markers), and a
# warning is an error, as in this repo.
STRICT = ("-p", "no:xdist", "-p", "no:cacheprovider", "--strict-markers", "-W", "error")

# A user's test module starts like this: anyio's plugin, asyncio only.
HEADER = """\
import pytest

import ttapi_async as tt
from ttapi_async.testing import Fault, FAST_POLL_POLICY, fast_waits_enabled

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend():
    return "asyncio"
"""


def run_user_tests(pytester: pytest.Pytester, body: str, *args: str) -> pytest.RunResult:
    """Write ``body`` (after the header) as a user's test module and run pytest on it."""
    pytester.makepyfile(test_user=HEADER + textwrap.dedent(body))
    # Objects earlier tests of this worker left for the garbage collector are finalized
    # now, under this run's warning filters: else the inner run, which turns unraisable
    # warnings into errors, would blame the user's test for them.
    gc.collect()
    return pytester.runpytest_inprocess(*STRICT, *args)


def test_a_users_client_makes_an_image_and_a_4o_job_on_the_emulator(
    pytester: pytest.Pytester,
) -> None:
    result = run_user_tests(
        pytester,
        """
        async def test_image(ttapi_client, ttapi_emulator):
            response = await ttapi_client.images.generate(prompt="a fox", model="gpt-image-1")
            assert response.data[0].decode().startswith(b"\\x89PNG")
            assert ttapi_emulator.counters.requests["/v1/images/generations"] == 1

        async def test_4o_job(ttapi_client, ttapi_emulator):
            result = await ttapi_client.gpt4o.generate(prompt="a lighthouse", timeout=10)
            assert ttapi_emulator.jobs[result.job_id].status == "SUCCESS"
        """,
    )
    result.assert_outcomes(passed=2)


def test_each_test_gets_a_new_emulator_that_is_stopped_after_it(
    pytester: pytest.Pytester,
) -> None:
    result = run_user_tests(
        pytester,
        """
        seen = []

        async def test_first(ttapi_emulator):
            assert ttapi_emulator.url.startswith("http://127.0.0.1:")
            seen.append(ttapi_emulator)

        async def test_second(ttapi_emulator):
            assert ttapi_emulator is not seen[0]
            with pytest.raises(RuntimeError, match="not running"):
                seen[0].url
        """,
    )
    result.assert_outcomes(passed=2)


def test_a_fault_injected_in_the_emulator_is_seen_by_the_client(
    pytester: pytest.Pytester,
) -> None:
    """A 429 then a success: the client retried once, and the server counted both."""
    result = run_user_tests(
        pytester,
        """
        async def test_retried(ttapi_client, ttapi_emulator):
            fault = ttapi_emulator.add_fault(
                Fault(route="/v1/images/generations", status=429, count=1, retry_after=0.01)
            )
            await ttapi_client.images.generate(prompt="a fox", model="gpt-image-1")
            assert fault.fired == 1
            assert ttapi_emulator.counters.requests["/v1/images/generations"] == 2

        async def test_not_retried(ttapi_client, ttapi_emulator):
            ttapi_emulator.add_fault(Fault(route="/v1/images/generations", status=400))
            with pytest.raises(tt.BadRequestError):
                await ttapi_client.images.generate(prompt="a fox", model="gpt-image-1")
        """,
    )
    result.assert_outcomes(passed=2)


def test_the_marker_and_the_options_fixtures_configure_what_is_started(
    pytester: pytest.Pytester,
) -> None:
    """Options fixture < class marker < function marker; client options reach the client."""
    result = run_user_tests(
        pytester,
        """
        @pytest.fixture
        def ttapi_emulator_options():
            return {"balance": 100, "sync_latency": 0.01, "seed": 1}

        @pytest.fixture
        def ttapi_client_options():
            return {"max_retries": 0}

        @pytest.mark.ttapi_emulator(balance=5, job_duration=0.05)
        class TestMarked:
            async def test_class_marker(self, ttapi_emulator):
                assert ttapi_emulator.balance == 5
                assert ttapi_emulator.job_duration == 0.05
                assert ttapi_emulator.sync_latency == 0.01

            @pytest.mark.ttapi_emulator(balance=1, api_key="my-key")
            async def test_function_marker_wins(self, ttapi_client, ttapi_emulator):
                assert ttapi_emulator.api_key == "my-key"
                assert ttapi_emulator.job_duration == 0.05
                await ttapi_client.images.generate(prompt="a fox", model="gpt-image-1")
                with pytest.raises(tt.InsufficientBalanceError):
                    await ttapi_client.images.generate(prompt="a fox", model="gpt-image-1")

        async def test_client_options(ttapi_client, ttapi_emulator):
            assert ttapi_client.retry.max_retries == 0
            assert ttapi_emulator.balance == 100
        """,
    )
    result.assert_outcomes(passed=3)


def test_bad_marker_arguments_fail_the_test_with_a_message(pytester: pytest.Pytester) -> None:
    result = run_user_tests(
        pytester,
        """
        @pytest.mark.ttapi_emulator(no_such_option=1)
        async def test_unknown_option(ttapi_emulator):
            pass

        @pytest.mark.ttapi_emulator(0.05)
        async def test_positional(ttapi_emulator):
            pass
        """,
    )
    result.assert_outcomes(errors=2)
    result.stdout.fnmatch_lines(
        [
            "*ttapi_emulator: Emulator() does not take {'no_such_option': 1}*",
            "*@pytest.mark.ttapi_emulator takes keyword arguments only, got (0.05,)*",
        ]
    )


def test_an_emulator_that_cannot_start_fails_the_set_up_with_its_error(
    pytester: pytest.Pytester,
) -> None:
    """The emulator is started in a task of its own: its error still reaches the test."""
    result = run_user_tests(
        pytester,
        """
        import socket

        taken = socket.socket()
        taken.bind(("127.0.0.1", 0))
        taken.listen()

        @pytest.mark.ttapi_emulator(port=taken.getsockname()[1])
        async def test_port_taken(ttapi_client):
            pass
        """,
    )
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*OSError*address already in use*"])


def test_the_marker_is_registered(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest_subprocess("-p", "no:xdist", "--markers")
    result.stdout.fnmatch_lines(["@pytest.mark.ttapi_emulator(**options): *"])


# The child runs in this process: keep this suite's own fast waits off around it.
@pytest.mark.default_waits
def test_fast_waits_are_on_while_the_emulator_runs_unless_turned_off(
    pytester: pytest.Pytester,
) -> None:
    result = run_user_tests(
        pytester,
        """
        async def test_on(ttapi_client):
            assert fast_waits_enabled()
            assert ttapi_client.waiter.policy == FAST_POLL_POLICY

        def test_off_without_the_fixtures():
            assert not fast_waits_enabled()

        class TestDefaultWaits:
            @pytest.fixture
            def ttapi_fast_waits(self):
                return False

            async def test_off(self, ttapi_client):
                assert not fast_waits_enabled()
                assert ttapi_client.waiter.policy != FAST_POLL_POLICY
        """,
    )
    result.assert_outcomes(passed=3)


def test_loading_the_plugin_adds_only_pytest_and_the_standard_library() -> None:
    """What the module itself imports, beyond the package (whose own imports are below)."""
    loaded = _modules_loaded_by(
        "import pytest, ttapi_async; before = set(sys.modules)",
        "import ttapi_async.pytest_plugin",
    )
    outside = {
        name
        for name in loaded
        if name.split(".")[0] not in sys.stdlib_module_names and name != "ttapi_async.pytest_plugin"
    }
    assert outside == set()
    assert "ttapi_async.pytest_plugin" in loaded


def test_the_plugin_imports_only_pytest_and_the_standard_library_at_module_level() -> None:
    """Its own top-level imports (the test above cannot see those the package made first)."""
    tree = ast.parse(Path(ttapi_async.pytest_plugin.__file__).read_text())
    imported = set()
    for node in tree.body:  # module level; the fixtures import inside their bodies
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            imported.add((node.module or "").split(".")[0])
    assert "pytest" in imported
    assert imported - {"pytest", "__future__"} <= sys.stdlib_module_names


def test_loading_the_plugin_imports_neither_pillow_nor_rich_nor_the_emulator() -> None:
    loaded = _modules_loaded_by("before = set()", "import ttapi_async.pytest_plugin")
    assert {"PIL", "rich", "ttapi_async.testing", "ttapi_async._cli"} & loaded == set()


def test_loading_the_plugin_imports_neither_aiohttp_nor_the_client() -> None:
    """Python imports the package before its plugin module: the package's names are lazy."""
    loaded = _modules_loaded_by("before = set()", "import ttapi_async.pytest_plugin")
    assert {"aiohttp", "ttapi_async._client"} & loaded == set()


def _modules_loaded_by(setup: str, statement: str) -> set[str]:
    """The modules a fresh interpreter has after ``statement`` that it lacked after ``setup``."""
    show = "print(json.dumps(sorted(set(sys.modules) - before)))"
    code = f"import json, sys; {setup}; {statement}; {show}"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    return set(json.loads(out))


def test_without_pillow_a_fixture_fails_with_the_install_command(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Pillow made unimportable (a ``PIL`` package first on the path that refuses to load):
    the test errors with one line naming the fixture and the extra, no import traceback."""
    fake = tmp_path / "no_pillow" / "PIL"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text(
        "raise ImportError('Pillow is not installed (simulated)', name='PIL')\n"
    )
    monkeypatch.setenv("PYTHONPATH", str(fake.parent))
    pytester.makepyfile(
        test_user="""
        import pytest

        @pytest.fixture
        def anyio_backend():
            return "asyncio"

        @pytest.mark.anyio
        async def test_needs_the_emulator(ttapi_client):
            pass

        def test_pillow_is_really_missing():
            with pytest.raises(ImportError, match="simulated"):
                import PIL
        """
    )
    result = pytester.runpytest_subprocess(*STRICT)
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(
        [
            (
                "ttapi_emulator (ttapi-async's pytest plugin) needs Pillow, the 'testing' extra: "
                "pip install 'ttapi-async[testing]'"
            ),
            "(importing ttapi_async.testing: Pillow is not installed (simulated))",
        ]
    )
    assert "Traceback" not in result.stdout.str()
    assert "_imagegen.py" not in result.stdout.str()


def test_the_plugin_is_registered_as_a_pytest11_entry_point() -> None:
    (entry,) = [
        ep for ep in importlib.metadata.entry_points(group="pytest11") if ep.name == "ttapi_async"
    ]
    assert entry.value == "ttapi_async.pytest_plugin"
    assert entry.load() is ttapi_async.pytest_plugin


def test_the_plugins_fixtures_do_not_clash_with_this_suites() -> None:
    """No fixture of tests/conftest.py shadows (or is shadowed by) one of the plugin's."""
    tree = ast.parse((Path(__file__).parent / "conftest.py").read_text())
    conftest = {
        node.name
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and any("fixture" in ast.unparse(d) for d in node.decorator_list)
    }
    assert "emulator" in conftest  # the walk finds them
    assert conftest & set(ttapi_async.pytest_plugin.__all__) == set()
