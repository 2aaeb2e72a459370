"""The examples run end to end against the embedded emulator.

The quickstart runs as a user runs it, ``python examples/quickstart.py`` in a child
process. The others run their scripts as ``__main__`` in this process (``runpy``, with
their folder on ``sys.path``, their arguments, environment and working directory), which
saves a child interpreter and its imports, about a second of CPU each; they keep the SDK's
default waits, as in a user's run.
"""

from __future__ import annotations

import os
import runpy
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from PIL import Image


ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"


def test_quickstart_runs_against_the_emulator(tmp_path: Path) -> None:
    """examples/quickstart.py generates, edits, runs a 4o job and refuses a bad call."""
    env = {k: v for k, v in os.environ.items() if k != "TTAPI_API_KEY"}
    env["QUICKSTART_OUT"] = str(tmp_path)
    proc = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "quickstart.py")],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "using the emulator" in proc.stdout
    assert "refused before sending: n=4" in proc.stdout
    names = sorted(p.name for p in tmp_path.iterdir() if p.suffix != ".json")
    assert names == ["cat-0.png", "fox-0.png", "fox-scarf-0.png", "lighthouse-0.png"]
    # Each image has its JSON sidecar.
    assert (tmp_path / "cat-0.png.json").is_file()
    with Image.open(tmp_path / "lighthouse-0.png") as img:
        assert img.size == (1792, 1024)


@pytest.fixture
def run_example(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> Callable[..., str]:
    """Run ``examples/NAME.py ARGS`` as ``__main__`` in this process, in ``tmp_path`` and
    without a TTAPI key; returns what it printed. An exception it raises fails the test."""
    monkeypatch.delenv("TTAPI_API_KEY", raising=False)
    monkeypatch.setenv("BOT_OUT", str(tmp_path / "bot"))
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(EXAMPLES))  # the script's folder, as ``python script``

    def run(name: str, *args: str) -> str:
        script = str(EXAMPLES / f"{name}.py")
        monkeypatch.setattr(sys, "argv", [script, *args])
        capsys.readouterr()
        runpy.run_path(script, run_name="__main__")
        return capsys.readouterr().out

    return run


@pytest.mark.default_waits
def test_backends_answer_from_webhooks(run_example: Callable[..., str]) -> None:
    """The aiohttp and FastAPI backends submit with hook URLs and return results via callbacks."""
    for name in ("aiohttp_backend", "fastapi_backend"):
        out = run_example(name, "--demo")
        results = [line for line in out.splitlines() if line.startswith("result:")]
        assert len(results) == 2, out
        assert all("'status': 'done'" in r and "'via': 'webhook'" in r for r in results), results


@pytest.mark.default_waits
def test_bot_answers_commands(run_example: Callable[..., str], tmp_path: Path) -> None:
    """The bot answers /draw commands with saved images and refuses others politely."""
    out = run_example("bot", "--demo")
    replies = [line for line in out.splitlines() if line.startswith("bot:")]
    assert len(replies) == 3
    assert sum("here is" in r for r in replies) == 2
    assert any("only know /draw" in r for r in replies)
    images = [p for p in (tmp_path / "bot").iterdir() if p.suffix != ".json"]
    assert len(images) == 2


@pytest.mark.default_waits
def test_bulk_example_runs_and_resumes(run_example: Callable[..., str], tmp_path: Path) -> None:
    """examples/bulk.py saves every job through webhooks; run again, it skips them all."""
    out = tmp_path / "bulk"
    first = run_example("bulk", "--out", str(out), "--jobs", "12")
    assert sum(line.startswith("done #") for line in first.splitlines()) == 12
    assert "callbacks accepted: 12" in first
    assert len(list(out.glob("*.png"))) == 12
    second = run_example("bulk", "--out", str(out), "--jobs", "12")
    assert "progress: 12/12 done=0 skipped=12" in second
    assert len(list(out.glob("*.png"))) == 12


@pytest.mark.parametrize("name", ["fastapi_backend", "aiohttp_backend"])
def test_a_backend_imports_as_a_module_from_the_root(name: str) -> None:
    """``uvicorn examples.fastapi_backend:app`` (the example's own docstring) imports it
    as ``examples.NAME`` from the repository's root, where ``_common`` is no top module."""
    code = f"import examples.{name} as m; print(callable(m.make_app))"
    proc = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "True"
