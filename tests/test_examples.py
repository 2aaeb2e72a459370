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
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["cat-0.png", "fox-0.png", "fox-scarf-0.png", "lighthouse-0.png"]
    with Image.open(tmp_path / "lighthouse-0.png") as img:
        assert img.size == (1792, 1024)
