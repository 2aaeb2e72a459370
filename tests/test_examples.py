"""The examples run end to end against the embedded emulator."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from PIL import Image


ROOT = Path(__file__).resolve().parent.parent


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


def run_example(name: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "TTAPI_API_KEY"}
    env["BOT_OUT"] = str(tmp_path / "bot")
    return subprocess.run(
        [sys.executable, str(ROOT / "examples" / f"{name}.py"), "--demo"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
        check=False,
    )


def test_backends_answer_from_webhooks(tmp_path: Path) -> None:
    """The aiohttp and FastAPI backends submit with hook URLs and return results via callbacks."""
    for name in ("aiohttp_backend", "fastapi_backend"):
        proc = run_example(name, tmp_path)
        assert proc.returncode == 0, proc.stderr
        results = [line for line in proc.stdout.splitlines() if line.startswith("result:")]
        assert len(results) == 2, proc.stdout
        assert all("'status': 'done'" in r and "'via': 'webhook'" in r for r in results), results


def test_bot_answers_commands(tmp_path: Path) -> None:
    """The bot answers /draw commands with saved images and refuses others politely."""
    proc = run_example("bot", tmp_path)
    assert proc.returncode == 0, proc.stderr
    replies = [line for line in proc.stdout.splitlines() if line.startswith("bot:")]
    assert len(replies) == 3
    assert sum("here is" in r for r in replies) == 2
    assert any("only know /draw" in r for r in replies)
    images = [p for p in (tmp_path / "bot").iterdir() if p.suffix != ".json"]
    assert len(images) == 2


def test_bulk_example_runs_and_resumes(tmp_path: Path) -> None:
    """examples/bulk.py saves every job through webhooks; run again, it skips them all."""
    env = {k: v for k, v in os.environ.items() if k != "TTAPI_API_KEY"}
    cmd = [
        sys.executable,
        str(ROOT / "examples" / "bulk.py"),
        "--out",
        str(tmp_path),
        "--jobs",
        "12",
    ]
    first = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120, check=False)
    assert first.returncode == 0, first.stderr
    assert sum(line.startswith("done #") for line in first.stdout.splitlines()) == 12
    assert "callbacks accepted: 12" in first.stdout
    assert len(list(tmp_path.glob("*.png"))) == 12
    second = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120, check=False)
    assert second.returncode == 0, second.stderr
    assert "progress: 12/12 done=0 skipped=12" in second.stdout
    assert len(list(tmp_path.glob("*.png"))) == 12
