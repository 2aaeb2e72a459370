"""The package as a user gets it: built, installed into a fresh venv, used from elsewhere.

Builds the sdist and the wheel (``python -m build``, the wheel from the sdist) into a temp
dir, installs the wheel with its ``testing`` and ``otel`` extras into a new venv outside
the repo, and runs everything from a directory outside the repo with ``python -I`` (no
working directory, ``PYTHONPATH`` or user site on ``sys.path``), so the installed copy is
the one tested, never the working tree. Slow (a build, a venv, downloads), hence the
``packaging`` marker, deselected from the default run: ``python -m pytest -m packaging
-p no:xdist``. One build and one venv serve the whole module.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
import zipfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from email.parser import Parser
from pathlib import Path

import pytest


pytestmark = [
    pytest.mark.packaging,
    # The first test pays for the build, the venv and the downloads (about a minute).
    pytest.mark.timeout(900),
]

REPO = Path(__file__).resolve().parents[1]
DIST_NAME = "ttapi_async"

#: Modules ``import ttapi_async`` must not load: the emulator (and with it Pillow) is for
#: tests only, rich for the command line only, and OpenTelemetry for ``telemetry=`` only.
HEAVY = ("ttapi_async.testing", "PIL", "rich", "opentelemetry")


@dataclass(frozen=True)
class Installed:
    """The build's artefacts and the fresh venv the wheel went into."""

    sdist: Path
    wheel: Path
    venv: Path
    workdir: Path  #: an empty directory outside the repo, the cwd of every run
    timings: Mapping[str, float]

    @property
    def python(self) -> Path:
        """The venv's interpreter."""
        return self.venv / "bin" / "python"

    def run(
        self, *args: str | Path, env: Mapping[str, str] | None = None, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        """Run a command of the venv from the work dir; fail with its output if it fails."""
        proc = subprocess.run(
            [str(a) for a in args],
            cwd=self.workdir,
            env={**clean_env(), **(env or {})},
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        assert proc.returncode == 0, (
            f"{args} exited {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
        )
        return proc


def clean_env() -> dict[str, str]:
    """The environment without anything that would point Python or the SDK at the repo.

    No key and no base URL: the quickstart must pick the emulator by itself.
    """
    dropped = {"PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "TTAPI_API_KEY", "TTAPI_BASE_URL"}
    # PYTEST_*: this run's own (PYTEST_ADDOPTS, PYTEST_DISABLE_PLUGIN_AUTOLOAD, ...) must not
    # reach the user's pytest run below.
    env = {k: v for k, v in os.environ.items() if k not in dropped and not k.startswith("PYTEST_")}
    env["PYTHONNOUSERSITE"] = "1"
    return env


def run_checked(args: list[str], cwd: Path, timeout: float) -> str:
    """Run a build step; fail with its output if it fails."""
    proc = subprocess.run(
        args, cwd=cwd, env=clean_env(), capture_output=True, text=True, timeout=timeout, check=False
    )
    assert proc.returncode == 0, f"{args} failed\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    return proc.stdout


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installed]:
    """Build once, install once (wheel + ``testing`` and ``otel`` extras) into a fresh venv.

    The extras bring Pillow and OpenTelemetry, so the lean-import check means something.
    """
    root = tmp_path_factory.mktemp("packaging")
    assert not root.resolve().is_relative_to(REPO), "the venv must live outside the repo"
    dist, venv, workdir = root / "dist", root / "venv", root / "work"
    workdir.mkdir()
    timings: dict[str, float] = {}

    start = time.perf_counter()
    # No flags: the sdist first, then the wheel built from the unpacked sdist, so the wheel
    # also proves the sdist is complete enough to build.
    run_checked([sys.executable, "-m", "build", "--outdir", str(dist), str(REPO)], root, 600)
    timings["build"] = time.perf_counter() - start
    (sdist,) = dist.glob(f"{DIST_NAME}-*.tar.gz")
    (wheel,) = dist.glob(f"{DIST_NAME}-*.whl")

    start = time.perf_counter()
    run_checked([sys.executable, "-m", "venv", str(venv)], root, 300)
    timings["venv"] = time.perf_counter() - start

    result = Installed(sdist, wheel, venv, workdir, timings)
    start = time.perf_counter()
    result.run(result.python, "-m", "pip", "install", "-q", f"{wheel}[testing,otel]", timeout=600)
    timings["pip install wheel[testing,otel]"] = time.perf_counter() - start
    yield result
    # Where the stage's time goes (shown with -s or -rP; --durations gives the total).
    print(  # noqa: T201
        "\npackaging timings (s):", json.dumps({k: round(v, 1) for k, v in timings.items()})
    )


def test_wheel_holds_the_package_and_its_typing_marker(installed: Installed) -> None:
    with zipfile.ZipFile(installed.wheel) as whl:
        names = set(whl.namelist())
        (metadata_name,) = [n for n in names if n.endswith(".dist-info/METADATA")]
        metadata = Parser().parsestr(whl.read(metadata_name).decode())
        (entry_points_name,) = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
        entry_points = whl.read(entry_points_name).decode()
    for needed in (
        "ttapi_async/__init__.py",
        "ttapi_async/py.typed",
        "ttapi_async/_client.py",
        "ttapi_async/pytest_plugin.py",
        "ttapi_async/testing/__init__.py",
    ):
        assert needed in names
    assert not [n for n in names if n.startswith(("tests/", "examples/", "benchmarks/"))]
    # Pillow comes with the `testing` extra only, never with a plain install.
    pillow = [r for r in metadata.get_all("Requires-Dist") or [] if r.lower().startswith("pillow")]
    assert pillow, "the testing extra should require Pillow"
    assert all("extra ==" in r for r in pillow), pillow
    assert "testing" in (metadata.get_all("Provides-Extra") or [])
    assert "ttapi-async = ttapi_async._cli:main" in entry_points
    assert "ttapi_async = ttapi_async.pytest_plugin" in entry_points


def test_installed_package_is_typed_and_is_the_venv_copy(installed: Installed) -> None:
    out = installed.run(
        installed.python, "-I", "-c", "import ttapi_async, pathlib; print(ttapi_async.__file__)"
    ).stdout.strip()
    package = Path(out).parent
    assert package.is_relative_to(installed.venv), f"imported from {package}"
    assert package.parent.name == "site-packages", f"imported from {package}"
    assert (package / "py.typed").is_file()
    assert (package / "testing" / "__init__.py").is_file()


def test_import_loads_neither_the_emulator_nor_pillow_nor_rich(installed: Installed) -> None:
    probe = (
        "import importlib.util, json, sys\n"
        "import ttapi_async as tt\n"
        "tt.Client('key', base_url='http://127.0.0.1:1')\n"  # building a client is lean too
        "print(json.dumps({'loaded': sorted(sys.modules),\n"
        "    'installed': [m for m in ('PIL', 'rich', 'opentelemetry')\n"
        "        if importlib.util.find_spec(m)]}))\n"
    )
    report = json.loads(installed.run(installed.python, "-I", "-c", probe).stdout)
    # All are installed (by the extras): their absence below means something.
    assert report["installed"] == ["PIL", "rich", "opentelemetry"]
    loaded: list[str] = report["loaded"]
    assert "ttapi_async._client" in loaded  # the probe did import the package
    heavy = [m for m in loaded if any(m == h or m.startswith(f"{h}.") for h in HEAVY)]
    assert heavy == []


def test_console_script_runs(installed: Installed) -> None:
    script = installed.venv / "bin" / "ttapi-async"
    assert script.is_file()
    out = installed.run(script, "--help").stdout
    assert "Usage:" in out
    assert "batch" in out


def test_pytest_plugin_entry_point_is_registered(installed: Installed) -> None:
    # Found, not imported: the plugin imports pytest, which this venv does not have.
    probe = (
        "import importlib.metadata as md, importlib.util, json\n"
        "eps = [(e.name, e.value) for e in md.entry_points(group='pytest11')]\n"
        "print(json.dumps({'eps': eps,\n"
        "    'found': importlib.util.find_spec('ttapi_async.pytest_plugin') is not None}))\n"
    )
    report = json.loads(installed.run(installed.python, "-I", "-c", probe).stdout)
    assert ["ttapi_async", "ttapi_async.pytest_plugin"] in report["eps"]
    assert report["found"]


USER_TEST = """
import pytest

import ttapi_async as tt


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.anyio
@pytest.mark.ttapi_emulator(seed=1)
async def test_generate(ttapi_client: tt.Client) -> None:
    r = await ttapi_client.images.generate(prompt="a red fox", model="gpt-image-1")
    assert r.data[0].decode().startswith(b"\\x89PNG")
"""


def test_pytest_loads_the_plugin_by_itself(installed: Installed, tmp_path: Path) -> None:
    # A user's project: pytest installed next to the SDK, a test asking for the fixtures,
    # no conftest and no `-p`: the entry point alone must bring them (and the marker).
    installed.run(installed.python, "-m", "pip", "install", "-q", "pytest", timeout=300)
    (tmp_path / "test_user.py").write_text(USER_TEST)
    proc = installed.run(
        installed.python,
        "-I",
        "-m",
        "pytest",
        "-q",
        "--strict-markers",
        "-p",
        "no:cacheprovider",
        "--rootdir",
        tmp_path,
        tmp_path,
    )
    assert "1 passed" in proc.stdout


def test_sdist_is_complete_and_builds_with_pip(installed: Installed, tmp_path: Path) -> None:
    with tarfile.open(installed.sdist) as sdist:
        names = {name.split("/", 1)[1] for name in sdist.getnames() if "/" in name}
    for needed in (
        "PKG-INFO",
        "pyproject.toml",
        "README.md",
        "ttapi_async/__init__.py",
        "ttapi_async/py.typed",
        "ttapi_async/testing/__init__.py",
    ):
        assert needed in names
    # pip, not build: what `pip install ttapi-async-x.tar.gz` does. Its wheel has the very
    # files of the wheel built before.
    installed.run(
        installed.python, "-m", "pip", "wheel", "-q", "--no-deps", "-w", tmp_path, installed.sdist
    )
    (rebuilt,) = tmp_path.glob(f"{DIST_NAME}-*.whl")
    with zipfile.ZipFile(rebuilt) as a, zipfile.ZipFile(installed.wheel) as b:
        assert sorted(a.namelist()) == sorted(b.namelist())


def test_quickstart_runs_against_the_emulator(installed: Installed) -> None:
    # A copy, run from elsewhere with -I: nothing of examples/ or the repo is importable.
    script = installed.workdir / "quickstart.py"
    shutil.copyfile(REPO / "examples" / "quickstart.py", script)
    out_dir = installed.workdir / "images"
    proc = installed.run(
        installed.python, "-I", script, env={"QUICKSTART_OUT": str(out_dir)}, timeout=120
    )
    out = proc.stdout
    assert "No TTAPI_API_KEY: using the emulator" in out
    for step in ("generate:", "edit:", "dalle3:", "4o-image:", "refused before sending:"):
        assert step in out, out
    assert "4o-image failed" not in out
    saved = {p.name for p in out_dir.iterdir()}
    for stem in ("fox", "fox-scarf", "lighthouse", "cat"):
        assert any(name.startswith(f"{stem}-0.") for name in saved), (stem, sorted(saved))
