"""Kill -9 a real batch run mid-way, resume it, and check nothing was lost or doubled."""

from __future__ import annotations

import hashlib
import json
import os
import signal
from pathlib import Path

import anyio
import pytest
from anyio.streams.text import TextReceiveStream
from PIL import Image

from ttapi_async import ItemState
from ttapi_async._journal import Journal
from ttapi_async.testing import Emulator


pytestmark = pytest.mark.anyio

N = 60


def batch_cmd(cli: list[str], prompts: Path, out: Path) -> list[str]:
    return [
        *cli,
        "batch",
        str(prompts),
        "--out",
        str(out),
        "--concurrency",
        "8",
        "--no-progress",
    ]


async def run_batch(
    cmd: list[str], env: dict[str, str], *, kill_after: int | None
) -> tuple[int, list[str]]:
    """Run the CLI; with ``kill_after``, SIGKILL it once that many items are reported done."""
    lines: list[str] = []
    async with await anyio.open_process(cmd, env=env) as proc:
        assert proc.stdout is not None
        done = 0
        async for chunk in TextReceiveStream(proc.stdout):
            for line in chunk.splitlines():
                lines.append(line)
                done += line.startswith("done\t")
            if kill_after is not None and done >= kill_after:
                os.kill(proc.pid, signal.SIGKILL)
                break
        code = await proc.wait()
    return code, lines


async def test_kill_9_and_resume(cli: list[str], tmp_path: Path) -> None:
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("\n".join(f"a lighthouse, take {i}" for i in range(N)) + "\n")
    out = tmp_path / "out"
    async with Emulator(job_duration=(0.2, 0.6), seed=5) as emu:
        env = {**os.environ, "TTAPI_API_KEY": emu.api_key, "TTAPI_BASE_URL": emu.url}
        cmd = batch_cmd(cli, prompts, out)
        code, _ = await run_batch(cmd, env, kill_after=10)
        assert code == -signal.SIGKILL
        code, _ = await run_batch(cmd, env, kill_after=15)  # killed again, mid-resume
        assert code == -signal.SIGKILL
        code, lines = await run_batch(cmd, env, kill_after=None)
        counters = emu.counters
    journal = out / "ttapi-journal.sqlite"
    assert journal.stat().st_mode & 0o777 == 0o600
    with Journal.open(journal) as j:
        entries = j.entries()
    # Every input ended: done, or reported as outcome-unknown (never silently lost).
    assert sorted(entries) == list(range(N))
    states = {i: e.state for i, e in entries.items()}
    assert set(states.values()) <= {ItemState.DONE, ItemState.OUTCOME_UNKNOWN}
    unknown = [i for i, s in states.items() if s is ItemState.OUTCOME_UNKNOWN]
    assert code == (4 if unknown else 0)
    reported = [line for line in lines if line.startswith("outcome_unknown\t")]
    assert len(reported) == len(unknown)
    # Nothing was submitted twice, and every done item was submitted exactly once.
    assert max(counters.submits_by_prompt.values()) == 1
    for i, e in entries.items():
        if e.state is ItemState.DONE:
            assert counters.submits_by_prompt[f"a lighthouse, take {i}"] == 1
    # No half-written files: no temp files, and every image is whole and matches its sidecar.
    assert not [p for p in out.iterdir() if p.name.startswith(".part-")]
    images = [p for p in out.iterdir() if p.suffix == ".png"]
    assert len(images) == sum(s is ItemState.DONE for s in states.values())
    for image in images:
        with Image.open(image) as img:
            img.verify()
        meta = json.loads(image.with_name(image.name + ".json").read_text())
        assert meta["sha256"] == hashlib.sha256(image.read_bytes()).hexdigest()
