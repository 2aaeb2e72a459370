"""The ttapi-async command line, run as a user runs it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from PIL import Image


def run(*args: str, key: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in {"TTAPI_API_KEY", "TTAPI_BASE_URL"}}
    if key:
        env["TTAPI_API_KEY"] = key
    exe = shutil.which("ttapi-async")
    cmd = [exe] if exe else [sys.executable, "-m", "ttapi_async._cli"]
    return subprocess.run(
        [*cmd, *args], capture_output=True, text=True, env=env, timeout=120, check=False
    )


def test_generate_without_key_uses_the_emulator(tmp_path: Path) -> None:
    """With no key the CLI says it uses the emulator and saves real images."""
    proc = run(
        "generate",
        "a lighthouse at dawn",
        "--n",
        "2",
        "--size",
        "1536x1024",
        "--out",
        str(tmp_path),
    )
    assert proc.returncode == 0, proc.stderr
    assert "embedded TTAPI emulator" in proc.stderr
    files = sorted(p for p in tmp_path.iterdir() if p.suffix != ".json")
    assert len(files) == 2
    assert [Path(line).name for line in proc.stdout.split()] == [f.name for f in files]
    with Image.open(files[0]) as img:
        assert img.size == (1536, 1024)


def test_dalle3_and_edit(tmp_path: Path) -> None:
    """dalle3 saves a downloaded URL image; edit uploads a local file."""
    proc = run("dalle3", "a cat", "--size", "1024x1792", "--out", str(tmp_path / "d3"))
    assert proc.returncode == 0, proc.stderr
    src = tmp_path / "in.png"
    Image.new("RGB", (64, 64)).save(src)
    proc = run("edit", str(src), "--prompt", "add a hat", "--out", str(tmp_path / "ed"))
    assert proc.returncode == 0, proc.stderr
    assert len(list((tmp_path / "ed").glob("*.png"))) == 1


def test_rule_violation_exits_2_and_names_the_parameter(tmp_path: Path) -> None:
    """A broken parameter rule is a usage error naming the parameter; nothing is written."""
    proc = run("generate", "x", "--model", "dall-e-3", "--n", "3", "--out", str(tmp_path))
    assert proc.returncode == 2
    assert "n=3" in proc.stderr
    assert not list(tmp_path.iterdir())


def test_api_error_exit_code(tmp_path: Path) -> None:
    """An unreachable API is exit code 3 with the error class in the message."""
    proc = run("generate", "x", "--base-url", "http://127.0.0.1:9", "--out", str(tmp_path), key="k")
    assert proc.returncode == 3
    assert "ConnectError" in proc.stderr


def test_4o_job_waits_and_saves(tmp_path: Path) -> None:
    """`ttapi-async 4o` submits a job, waits for it and saves the image."""
    proc = run("4o", "draw a lighthouse", "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert "job " in proc.stderr
    files = [p for p in tmp_path.iterdir() if p.suffix != ".json"]
    assert len(files) == 1
    with Image.open(files[0]) as img:
        assert img.format == "PNG"


def test_4o_failed_job_exit_code(tmp_path: Path) -> None:
    """A job TTAPI fails ends with exit code 5 and the reason."""
    proc = run("4o", "[fail] draw", "--out", str(tmp_path))
    assert proc.returncode == 5
    assert "failed" in proc.stderr
