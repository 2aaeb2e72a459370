"""Resuming a bulk run from its journal (``ttapi_async._resume``).

Kill -9 a real batch run mid-way and resume it: nothing lost or doubled. Then what a
resumed run does with each journal state (retry failed items, resubmit unknown ones only
on request), with the files an earlier run left (whole saves, cut-off images, temporary
files), and with a journal that is not its own or is damaged.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import sqlite3
from pathlib import Path

import anyio
import pytest
from anyio.streams.text import TextReceiveStream
from bulk_helpers import Serve, a_png, billed, client_for, gated_images, prompts
from PIL import Image

import ttapi_async as tt
from ttapi_async import GenerateRequest, GPT4oRequest, ItemState, ValidationError
from ttapi_async._journal import Journal
from ttapi_async._resume import saved_before
from ttapi_async.testing import Emulator, Fault


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
    async with Emulator(job_duration=(0.1, 0.3), seed=5) as emu:
        env = {**os.environ, "TTAPI_API_KEY": emu.api_key, "TTAPI_BASE_URL": emu.url}
        cmd = batch_cmd(cli, prompts, out)
        code, _ = await run_batch(cmd, env, kill_after=10)
        assert code == -signal.SIGKILL
        code, _ = await run_batch(cmd, env, kill_after=15)  # killed again, mid-resume
        assert code == -signal.SIGKILL
        code, lines = await run_batch(cmd, env, kill_after=None)
        counters = emu.counters
    journal = out / "ttapi-journal-prompts.txt-4o.sqlite"
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


async def test_unknown_outcomes_are_reported_and_resubmitted_only_on_request(
    emulator: Emulator, tmp_path: Path
) -> None:
    emulator.add_fault(
        Fault(route="/v1/images/generations", kind="drop", after_accept=True, count=1)
    )
    reqs = [GenerateRequest(prompt=f"g{i}", model="gpt-image-1", quality="low") for i in range(3)]
    journal = tmp_path / "j.sqlite"
    async with client_for(emulator) as c, c.bulk(reqs, max_jobs=1, journal=journal) as run:
        first = {o.index: o async for o in run}
    unknown = [o for o in first.values() if o.state is ItemState.OUTCOME_UNKNOWN]
    assert len(unknown) == 1
    assert isinstance(unknown[0].error, tt.OutcomeUnknownError)
    async with client_for(emulator) as c, c.bulk(reqs, journal=journal) as run:
        second = [o async for o in run]
    assert [o.state for o in second if not o.ok] == [ItemState.OUTCOME_UNKNOWN]
    assert all(o.resumed for o in second)
    async with client_for(emulator) as c:
        async with c.bulk(reqs, journal=journal, resubmit_unknown=True) as run:
            third = [o async for o in run]
    assert all(o.ok for o in third)
    assert emulator.counters.submits_by_prompt[unknown[0].request.prompt] == 2


async def test_failed_items_are_retried_only_on_request(emulator: Emulator, tmp_path: Path) -> None:
    reqs = [GPT4oRequest(prompt="[fail] x"), GPT4oRequest(prompt="fine")]
    journal = tmp_path / "j.sqlite"
    for retry in (False, False, True):
        async with client_for(emulator) as c:
            async with c.bulk(reqs, journal=journal, retry_failed=retry) as run:
                [o async for o in run]
    assert emulator.counters.submits_by_prompt == {"[fail] x": 2, "fine": 1}


async def test_journal_refuses_other_inputs(emulator: Emulator, tmp_path: Path) -> None:
    journal = tmp_path / "j.sqlite"
    async with client_for(emulator) as c:
        async with c.bulk(prompts(2), journal=journal) as run:
            [o async for o in run]
        with pytest.raises(ValidationError, match="journal"):
            async with c.bulk(prompts(2, "other"), journal=journal) as run:
                [o async for o in run]


def test_a_resume_keeps_whole_saves_and_drops_images_cut_off_before_their_sidecar(
    tmp_path: Path,
) -> None:
    """kill -9 between placing an image and writing its sidecar: no twin, and no loss."""
    stem = "00007-a-fox-12345678"
    kept = tmp_path / f"{stem}-0.png"
    kept.write_bytes(b"png")
    (tmp_path / f"{stem}-0.png.json").write_text(json.dumps({"job_id": "job-1"}))
    orphan = tmp_path / f"{stem}-0-2.png"  # placed, then the process died
    orphan.write_bytes(b"png")
    other = tmp_path / f"{stem}-0-3.png"  # an earlier job of the same item
    other.write_bytes(b"png")
    (tmp_path / f"{stem}-0-3.png.json").write_text(json.dumps({"job_id": "job-0"}))
    neighbour = tmp_path / "00008-a-fox-12345678-0.png"
    neighbour.write_bytes(b"png")
    # The whole save is kept; the one cut off is reported (removed once saved again).
    assert saved_before(tmp_path, stem, "job-1", sidecar=True) == ((kept,), (orphan,))
    assert orphan.exists()  # never deleted before a new copy exists
    assert other.exists()
    assert neighbour.exists()
    found, unfinished = saved_before(tmp_path, stem, "job-1", sidecar=False)
    assert set(found) == {kept, other, orphan}
    assert unfinished == ()


async def test_a_journaled_run_sweeps_only_what_its_own_journal_left(
    emulator: Emulator, serve: Serve, tmp_path: Path
) -> None:
    """A run starts while a ``client.save()`` streams into its folder.

    The run removes the temporary files an earlier run of its own journal left (tagged
    with the journal's run id), and nothing else: not the streaming save's file, not an
    untagged leftover, not another journal's. The save then completes, intact.
    """
    out = tmp_path / "out"
    out.mkdir()
    journal = tmp_path / "j.sqlite"
    with Journal.open(journal) as j:
        run_id = j.run_id
    assert run_id is not None
    own = [out / f".part-{run_id}-k2j3h4g5", out / f".part-{run_id}-zz9_yy8x"]
    foreign = [out / ".part-q1w2e3r4", out / ".part-0000000000000000-a1b2c3d4"]
    for leftover in (*own, *foreign):
        leftover.write_bytes(b"half an image")
    started, release = anyio.Event(), anyio.Event()
    body = a_png()
    base = await serve(gated_images(body, started, release))
    reqs = prompts(2)
    async with client_for(emulator) as c, anyio.create_task_group() as tg:
        saved: list[tt.SavedImage] = []

        async def save_in_flight() -> None:
            result = tt.ImagesResponse(created=1, data=(tt.ImageData(url=base + "/gated.png"),))
            saved.extend(await c.save(result, out, stem="mine"))

        tg.start_soon(save_in_flight)
        await started.wait()  # its .part- file is in the folder, half written
        streaming = [p for p in out.iterdir() if p not in (*own, *foreign)]
        assert len(streaming) == 1
        async with c.bulk(reqs, save_to=out, journal=journal) as run:
            got = [o async for o in run]
        assert all(o.ok for o in got), [o.error for o in got]
        assert streaming[0].exists()
        release.set()
    (mine,) = saved
    assert mine.path.read_bytes() == body
    assert all(not p.exists() for p in own)
    assert all(p.read_bytes() == b"half an image" for p in foreign)
    assert sorted(p.name for p in out.glob(".part-*")) == sorted(p.name for p in foreign)


async def test_a_damaged_journal_refuses_to_start_and_deletes_nothing(
    emulator: Emulator, tmp_path: Path
) -> None:
    """A row no run writes (``files`` not JSON, an unknown state): JournalCorruptError
    naming the file and rows, before anything is sent, swept, reset or removed."""
    out = tmp_path / "out"
    journal = tmp_path / "j.sqlite"
    reqs = prompts(4)
    async with client_for(emulator) as c:
        async with c.bulk(reqs, save_to=out, journal=journal) as run:
            assert all([o.ok async for o in run])
            run_id = run.journal.run_id if run.journal is not None else None
    leftover = out / f".part-{run_id}-k2j3h4g5"  # what a crash would have left
    leftover.write_bytes(b"half an image")
    conn = sqlite3.connect(journal, isolation_level=None)
    conn.execute("PRAGMA ignore_check_constraints = ON")
    conn.execute("UPDATE items SET files = 'nope' WHERE idx = 1")
    conn.execute("UPDATE items SET state = 'exploded' WHERE idx = 3")
    conn.close()
    before = journal.read_bytes()
    files = {p.name: p.read_bytes() for p in out.iterdir()}
    submits = billed(emulator)
    async with client_for(emulator) as c:
        with pytest.raises(tt.JournalCorruptError) as info:
            async with c.bulk(reqs, save_to=out, journal=journal, retry_failed=True) as run:
                async for _ in run:
                    pass
        # Refused again, not "another process is running": the failed open let go.
        with pytest.raises(tt.JournalCorruptError):
            async with c.bulk(reqs, save_to=out, journal=journal):
                pass
    err = info.value
    assert err.path == str(journal)
    assert err.rows == (1, 3)
    assert str(journal) in str(err)
    assert billed(emulator) == submits
    assert journal.read_bytes() == before
    assert {p.name: p.read_bytes() for p in out.iterdir()} == files
