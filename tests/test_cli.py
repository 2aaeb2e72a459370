"""The ttapi-async command line, run as a user runs it."""

from __future__ import annotations

import os
import re
import signal
import subprocess
from pathlib import Path

import pytest
from PIL import Image


# Runs that never poll nor retry use the installed ``ttapi-async`` script itself, as shipped
# (the waiting ones run the same ``main`` with fast waits turned on: see the ``cli`` fixture).
NEVER_WAITS = pytest.mark.default_waits


def run(cli: list[str], *args: str, key: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run the ``cli`` fixture's command (fast waits as in the test) with ``args``."""
    env = {k: v for k, v in os.environ.items() if k not in {"TTAPI_API_KEY", "TTAPI_BASE_URL"}}
    if key:
        env["TTAPI_API_KEY"] = key
    return subprocess.run(
        [*cli, *args], capture_output=True, text=True, env=env, timeout=120, check=False
    )


@NEVER_WAITS
def test_generate_without_key_uses_the_emulator(cli: list[str], tmp_path: Path) -> None:
    """With no key the CLI says it uses the emulator and saves real images."""
    proc = run(
        cli,
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


@NEVER_WAITS
def test_dalle3_and_edit(cli: list[str], tmp_path: Path) -> None:
    """dalle3 saves a downloaded URL image; edit uploads a local file."""
    proc = run(cli, "dalle3", "a cat", "--size", "1024x1792", "--out", str(tmp_path / "d3"))
    assert proc.returncode == 0, proc.stderr
    src = tmp_path / "in.png"
    Image.new("RGB", (64, 64)).save(src)
    proc = run(cli, "edit", str(src), "--prompt", "add a hat", "--out", str(tmp_path / "ed"))
    assert proc.returncode == 0, proc.stderr
    assert len(list((tmp_path / "ed").glob("*.png"))) == 1


@NEVER_WAITS
def test_rule_violation_exits_2_and_names_the_parameter(cli: list[str], tmp_path: Path) -> None:
    """A broken parameter rule is a usage error naming the parameter; nothing is written."""
    proc = run(cli, "generate", "x", "--model", "dall-e-3", "--n", "3", "--out", str(tmp_path))
    assert proc.returncode == 2
    assert "n=3" in proc.stderr
    assert not list(tmp_path.iterdir())


def test_api_error_exit_code(cli: list[str], tmp_path: Path) -> None:
    """An unreachable API is exit code 3 with the error class in the message."""
    proc = run(
        cli, "generate", "x", "--base-url", "http://127.0.0.1:9", "--out", str(tmp_path), key="k"
    )
    assert proc.returncode == 3
    assert "ConnectError" in proc.stderr


def test_4o_job_waits_and_saves(cli: list[str], tmp_path: Path) -> None:
    """`ttapi-async 4o` submits a job, waits for it and saves the image."""
    proc = run(cli, "4o", "draw a lighthouse", "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert "job " in proc.stderr
    files = [p for p in tmp_path.iterdir() if p.suffix != ".json"]
    assert len(files) == 1
    with Image.open(files[0]) as img:
        assert img.format == "PNG"


def test_4o_failed_job_exit_code(cli: list[str], tmp_path: Path) -> None:
    """A job TTAPI fails ends with exit code 5 and the reason."""
    proc = run(cli, "4o", "[fail] draw", "--out", str(tmp_path))
    assert proc.returncode == 5
    assert "failed" in proc.stderr


def test_batch_runs_resumes_and_reports(cli: list[str], tmp_path: Path) -> None:
    """A batch saves every row; run again, it skips them all (the journal) and sends nothing."""
    prompts = tmp_path / "p.txt"
    prompts.write_text("a fox\n\n# skipped\na cat\na [fail] owl\n", encoding="utf-8")
    out = tmp_path / "out"
    proc = run(cli, "batch", str(prompts), "--out", str(out), "--no-progress")
    assert proc.returncode == 3, proc.stderr  # one item failed
    lines = [line.split("\t") for line in proc.stdout.splitlines()]
    assert sorted((cols[0], cols[1]) for cols in lines) == [
        ("done", "0"),
        ("done", "1"),
        ("failed", "2"),
    ]
    assert "batch summary" in proc.stderr
    assert "--retry-failed" in proc.stderr
    assert len(list(out.glob("*.png"))) == 2
    assert (out / "ttapi-journal.sqlite").stat().st_mode & 0o777 == 0o600
    again = run(cli, "batch", str(prompts), "--out", str(out), "--no-progress")
    assert again.returncode == 3
    assert re.search(r"already done \(journal\)\s*│\s*2\s*│", again.stderr), again.stderr
    assert len(list(out.glob("*.png"))) == 2


@NEVER_WAITS
def test_batch_dry_run_reports_every_problem_and_sends_nothing(
    cli: list[str], tmp_path: Path
) -> None:
    rows = tmp_path / "rows.jsonl"
    rows.write_text(
        '{"prompt": "ok", "size": "1024x1024"}\n'
        '{"prompt": "bad size", "size": "10x10"}\n'
        "{broken\n"
        '{"prompt": "x", "colour": "red"}\n',
        encoding="utf-8",
    )
    proc = run(cli, "batch", str(rows), "--kind", "generate", "--model", "gpt-image-1", "--dry-run")
    assert proc.returncode == 2
    assert "rows.jsonl:2: size='10x10'" in proc.stderr
    assert "rows.jsonl:3: line=" in proc.stderr
    assert "rows.jsonl:4: colour='red'" in proc.stderr
    assert "3 problem(s)" in proc.stderr
    good = tmp_path / "good.txt"
    good.write_text("a\nb\n", encoding="utf-8")
    proc = run(cli, "batch", str(good), "--dry-run", "--out", str(tmp_path / "none"))
    assert proc.returncode == 0
    assert "2 row(s) valid" in proc.stdout
    assert not (tmp_path / "none").exists()
    proc = run(cli, "batch", str(good), "--model", "gpt-image-1", "--dry-run")
    assert proc.returncode == 2
    assert "does not apply to 4o" in proc.stderr


def test_batch_first_ctrl_c_drains_in_flight_work(cli: list[str], tmp_path: Path) -> None:
    """SIGINT: no new submits, in-flight jobs finish and are saved, the journal is consistent."""
    prompts = tmp_path / "p.txt"
    prompts.write_text("".join(f"prompt {i}\n" for i in range(60)), encoding="utf-8")
    out = tmp_path / "out"
    env = {k: v for k, v in os.environ.items() if k not in {"TTAPI_API_KEY", "TTAPI_BASE_URL"}}
    err_file = tmp_path / "stderr.txt"
    with err_file.open("w") as err_out:
        proc = subprocess.Popen(
            [*cli, "batch", str(prompts), "--out", str(out), "--no-progress", "--concurrency", "4"],
            stdout=subprocess.PIPE,
            stderr=err_out,
            text=True,
            env=env,
        )
    assert proc.stdout is not None
    first = proc.stdout.readline()
    assert first.startswith("done\t")
    proc.send_signal(signal.SIGINT)
    # Read the rest through the same buffered reader: communicate() would read the raw fd
    # and lose lines readline() had already buffered. EOF comes when the process exits
    # (pytest-timeout bounds a hang).
    rest = proc.stdout.read()
    proc.stdout.close()
    proc.wait(timeout=60)
    err = err_file.read_text()
    assert proc.returncode == 130, err
    assert "finishing the jobs in flight" in err
    done = 1 + sum(line.startswith("done\t") for line in rest.splitlines())
    assert done < 60
    assert len(list(out.glob("*.png"))) == done
    assert not list(out.glob(".part-*"))
    from ttapi_async import ItemState, Journal  # noqa: PLC0415

    with Journal.open(out / "ttapi-journal.sqlite") as journal:
        counts = journal.counts()
        rows = len(journal.entries())
        assert journal.recovered == 0
    # Rows are written as the run reaches its inputs: what it reached is done or pending.
    assert counts[ItemState.DONE] == done
    assert counts[ItemState.PENDING] == rows - done
    assert counts[ItemState.SUBMITTED] == counts[ItemState.FAILED] == 0


def test_batch_with_a_damaged_journal_says_so_and_changes_nothing(
    cli: list[str], tmp_path: Path
) -> None:
    """A damaged journal stops the batch with its own error; no advice to run it again."""
    import sqlite3  # noqa: PLC0415

    prompts = tmp_path / "p.txt"
    prompts.write_text("a fox\na cat\n", encoding="utf-8")
    out = tmp_path / "out"
    assert run(cli, "batch", str(prompts), "--out", str(out), "--no-progress").returncode == 0
    journal = out / "ttapi-journal.sqlite"
    db = sqlite3.connect(journal)
    with db:
        db.execute("UPDATE items SET files = 'not json' WHERE idx = 1")
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # the whole journal in the main file
    db.close()
    before = journal.read_bytes()
    proc = run(cli, "batch", str(prompts), "--out", str(out), "--no-progress")
    assert proc.returncode == 3, proc.stderr
    assert "JournalCorruptError" in proc.stderr
    assert str(journal) in proc.stderr
    assert "rows 1" in proc.stderr
    assert "Run the same command again" not in proc.stderr
    assert journal.read_bytes() == before
