"""The ttapi-async command line, run as a user runs it.

Most tests run the CLI's ``main`` in this process, as the shell would run the script:
arguments, environment, exit code, stdout and stderr. That saves a child interpreter
(about a second of CPU each). The commands that wait on jobs talk to an emulator with
short jobs served from a thread, because the CLI runs its own event loop in this one;
without a key the CLI starts its embedded emulator, whose 0.5-1.5 s jobs suit a demo.
Where the process itself is under test (an exit status, Ctrl-C) the installed script or
the same ``main`` runs in a child process (see the ``cli`` fixture).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from PIL import Image

from ttapi_async._cli import main
from ttapi_async.testing import Emulator


def run(*args: str, key: str | None = None, base_url: str | None = None) -> Result:
    """Run ``ttapi-async ARGS`` in this process; of the TTAPI variables, only ``key`` and
    ``base_url`` are set. Waits are as in the test. An exception the CLI does not turn into
    an exit code propagates, so the test fails with its traceback."""
    env = {"TTAPI_API_KEY": key, "TTAPI_BASE_URL": base_url}
    runner = CliRunner()
    return runner.invoke(main, args, env=env, catch_exceptions=False, prog_name="ttapi-async")


def run_process(cli: list[str], *args: str) -> subprocess.CompletedProcess[str]:
    """Run the ``cli`` fixture's command with ``args`` in a child, without a TTAPI key."""
    env = {k: v for k, v in os.environ.items() if k not in {"TTAPI_API_KEY", "TTAPI_BASE_URL"}}
    return subprocess.run(
        [*cli, *args], capture_output=True, text=True, env=env, timeout=120, check=False
    )


# The run that exercises the installed script as shipped never polls nor retries, so it
# keeps the default waits (and the ``cli`` fixture gives the script itself).
NEVER_WAITS = pytest.mark.default_waits


def test_generate_without_key_uses_the_emulator(tmp_path: Path) -> None:
    """With no key the CLI says it uses the emulator and saves real images."""
    res = run(
        "generate",
        "a lighthouse at dawn",
        "--n",
        "2",
        "--size",
        "1536x1024",
        "--out",
        str(tmp_path),
    )
    assert res.exit_code == 0, res.stderr
    assert "embedded TTAPI emulator" in res.stderr
    files = sorted(p for p in tmp_path.iterdir() if p.suffix != ".json")
    assert len(files) == 2
    assert [Path(line).name for line in res.stdout.split()] == [f.name for f in files]
    with Image.open(files[0]) as img:
        assert img.size == (1536, 1024)


def test_dalle3_and_edit(tmp_path: Path) -> None:
    """dalle3 saves a downloaded URL image; edit uploads a local file."""
    res = run("dalle3", "a cat", "--size", "1024x1792", "--out", str(tmp_path / "d3"))
    assert res.exit_code == 0, res.stderr
    src = tmp_path / "in.png"
    Image.new("RGB", (64, 64)).save(src)
    res = run("edit", str(src), "--prompt", "add a hat", "--out", str(tmp_path / "ed"))
    assert res.exit_code == 0, res.stderr
    assert len(list((tmp_path / "ed").glob("*.png"))) == 1


@NEVER_WAITS
def test_rule_violation_exits_2_and_names_the_parameter(cli: list[str], tmp_path: Path) -> None:
    """A broken parameter rule is a usage error naming the parameter; nothing is written.

    The installed script in a child process: the exit status is the process's own."""
    proc = run_process(
        cli, "generate", "x", "--model", "dall-e-3", "--n", "3", "--out", str(tmp_path)
    )
    assert proc.returncode == 2
    assert "n=3" in proc.stderr
    assert not list(tmp_path.iterdir())


def test_api_error_exit_code(tmp_path: Path) -> None:
    """An unreachable API is exit code 3 with the error class in the message."""
    res = run("generate", "x", "--base-url", "http://127.0.0.1:9", "--out", str(tmp_path), key="k")
    assert res.exit_code == 3
    assert "ConnectError" in res.stderr


def test_4o_job_waits_and_saves(emu: Emulator, tmp_path: Path) -> None:
    """`ttapi-async 4o` submits a job, waits for it and saves the image."""
    res = run("4o", "draw a lighthouse", "--out", str(tmp_path), key=emu.api_key, base_url=emu.url)
    assert res.exit_code == 0, res.stderr
    assert "job " in res.stderr
    files = [p for p in tmp_path.iterdir() if p.suffix != ".json"]
    assert len(files) == 1
    with Image.open(files[0]) as img:
        assert img.format == "PNG"


def test_4o_failed_job_exit_code(emu: Emulator, tmp_path: Path) -> None:
    """A job TTAPI fails ends with exit code 5 and the reason."""
    res = run("4o", "[fail] draw", "--out", str(tmp_path), key=emu.api_key, base_url=emu.url)
    assert res.exit_code == 5
    assert "failed" in res.stderr


def test_batch_runs_resumes_and_reports(emu: Emulator, tmp_path: Path) -> None:
    """A batch saves every row; run again, it skips them all (the journal) and sends nothing."""
    prompts = tmp_path / "p.txt"
    prompts.write_text("a fox\n\n# skipped\na cat\na [fail] owl\n", encoding="utf-8")
    out = tmp_path / "out"
    key = {"key": emu.api_key, "base_url": emu.url}
    res = run("batch", str(prompts), "--out", str(out), "--no-progress", **key)
    assert res.exit_code == 3, res.stderr  # one item failed
    lines = [line.split("\t") for line in res.stdout.splitlines()]
    assert sorted((cols[0], cols[1]) for cols in lines) == [
        ("done", "0"),
        ("done", "1"),
        ("failed", "2"),
    ]
    assert "batch summary" in res.stderr
    assert "--retry-failed" in res.stderr
    assert len(list(out.glob("*.png"))) == 2
    assert (out / "ttapi-journal-p.txt-4o.sqlite").stat().st_mode & 0o777 == 0o600
    again = run("batch", str(prompts), "--out", str(out), "--no-progress", **key)
    assert again.exit_code == 3
    assert re.search(r"already done \(journal\)\s*│\s*2\s*│", again.stderr), again.stderr
    assert len(list(out.glob("*.png"))) == 2


def test_batch_dry_run_reports_every_problem_and_sends_nothing(tmp_path: Path) -> None:
    rows = tmp_path / "rows.jsonl"
    rows.write_text(
        '{"prompt": "ok", "size": "1024x1024"}\n'
        '{"prompt": "bad size", "size": "10x10"}\n'
        "{broken\n"
        '{"prompt": "x", "colour": "red"}\n',
        encoding="utf-8",
    )
    res = run("batch", str(rows), "--kind", "generate", "--model", "gpt-image-1", "--dry-run")
    assert res.exit_code == 2
    assert "rows.jsonl:2: size='10x10'" in res.stderr
    assert "rows.jsonl:3: line=" in res.stderr
    assert "rows.jsonl:4: colour='red'" in res.stderr
    assert "3 problem(s)" in res.stderr
    good = tmp_path / "good.txt"
    good.write_text("a\nb\n", encoding="utf-8")
    res = run("batch", str(good), "--dry-run", "--out", str(tmp_path / "none"))
    assert res.exit_code == 0
    assert "2 row(s) valid" in res.stdout
    assert not (tmp_path / "none").exists()
    res = run("batch", str(good), "--model", "gpt-image-1", "--dry-run")
    assert res.exit_code == 2
    assert "does not apply to 4o" in res.stderr


def test_batch_first_ctrl_c_drains_in_flight_work(
    cli: list[str], emu: Emulator, tmp_path: Path
) -> None:
    """SIGINT: no new submits, in-flight jobs finish and are saved, the journal is consistent.

    A child process, for the signal. Its jobs take 0.3-0.6 s: four are in flight when the
    signal lands, and the 60 prompts would take over 4 s, so the run is stopped mid-way."""
    emu.job_duration = (0.3, 0.6)
    prompts = tmp_path / "p.txt"
    prompts.write_text("".join(f"prompt {i}\n" for i in range(60)), encoding="utf-8")
    out = tmp_path / "out"
    env = {**os.environ, "TTAPI_API_KEY": emu.api_key, "TTAPI_BASE_URL": emu.url}
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

    with Journal.open(out / "ttapi-journal-p.txt-4o.sqlite") as journal:
        counts = journal.counts()
        rows = len(journal.entries())
        assert journal.recovered == 0
    # Rows are written as the run reaches its inputs: what it reached is done or pending.
    assert counts[ItemState.DONE] == done
    assert counts[ItemState.PENDING] == rows - done
    assert counts[ItemState.SUBMITTED] == counts[ItemState.FAILED] == 0


def test_batch_with_a_damaged_journal_says_so_and_changes_nothing(
    emu: Emulator, tmp_path: Path
) -> None:
    """A damaged journal stops the batch with its own error; no advice to run it again."""
    import sqlite3  # noqa: PLC0415

    prompts = tmp_path / "p.txt"
    prompts.write_text("a fox\na cat\n", encoding="utf-8")
    out = tmp_path / "out"
    key = {"key": emu.api_key, "base_url": emu.url}
    assert run("batch", str(prompts), "--out", str(out), "--no-progress", **key).exit_code == 0
    journal = out / "ttapi-journal-p.txt-4o.sqlite"
    db = sqlite3.connect(journal)
    with db:
        db.execute("UPDATE items SET files = 'not json' WHERE idx = 1")
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # the whole journal in the main file
    db.close()
    before = journal.read_bytes()
    res = run("batch", str(prompts), "--out", str(out), "--no-progress", **key)
    assert res.exit_code == 3, res.stderr
    assert "JournalCorruptError" in res.stderr
    assert str(journal) in res.stderr
    assert "rows 1" in res.stderr
    assert "Run the same command again" not in res.stderr
    assert journal.read_bytes() == before


def test_gpt_command_and_batch_kind_gpt(emu: Emulator, tmp_path: Path) -> None:
    """`ttapi-async gpt` runs one job on /openai/gpt; `batch --kind gpt` a file of them."""
    res = run(
        "gpt", "a corgi", "--aspect-ratio", "16:9", "--out", str(tmp_path / "one"),
        key=emu.api_key, base_url=emu.url,
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    assert len(list((tmp_path / "one").glob("*.png"))) == 1
    bad = run(
        "gpt",
        "x",
        "--model",
        "gpt-image-1",
        "--size",
        "1024x1024",
        key=emu.api_key,
        base_url=emu.url,
    )
    assert bad.exit_code != 0
    assert "size" in bad.output
    prompts = tmp_path / "p.txt"
    prompts.write_text("a\nb\nc\n", encoding="utf-8")
    res = run(
        "batch", str(prompts), "--kind", "gpt", "--aspect-ratio", "1:1", "--no-progress",
        "--out", str(tmp_path / "many"), key=emu.api_key, base_url=emu.url,
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    assert len(list((tmp_path / "many").glob("*.png"))) == 3
    assert emu.counters.billed["/openai/gpt/generations"] == 4


def test_an_empty_prompts_file_is_an_error(tmp_path: Path) -> None:
    prompts = tmp_path / "empty.txt"
    prompts.write_text("\n# only a comment\n\n", encoding="utf-8")
    res = run("batch", str(prompts), "--dry-run")
    assert res.exit_code == 2
    assert "has no rows" in res.output


def test_retries_print_nothing_bare_on_stderr(emu: Emulator) -> None:
    """A script with no logging set up: a retried call prints no stamina line (issue 12)."""
    from ttapi_async.testing import Fault  # noqa: PLC0415

    emu.add_fault(Fault(route="/v1/images/generations", status=429, count=2, retry_after=0.01))
    script = (
        "import anyio, ttapi_async as tt\n"
        "async def main():\n"
        f"    async with tt.Client({emu.api_key!r}, base_url={emu.url!r}) as c:\n"
        "        r = await c.images.generate(prompt='a fox', model='gpt-image-1')\n"
        "        print(len(r.data), c.stats.retries)\n"
        "anyio.run(main)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["1", "2"]
    assert "stamina" not in proc.stderr


def test_batch_dalle3_defaults_its_size_as_the_dalle3_command_does(tmp_path: Path) -> None:
    prompts = tmp_path / "p.csv"
    prompts.write_text("prompt,size\na fox,\na cat,1792x1024\n", encoding="utf-8")
    res = run("batch", str(prompts), "--kind", "dalle3", "--dry-run")
    assert res.exit_code == 0, res.output
    assert "2 row(s) valid for dalle3" in res.output


def test_a_mask_error_names_the_mask_file(tmp_path: Path) -> None:
    image, mask = tmp_path / "photo.png", tmp_path / "small-mask.png"
    Image.new("RGBA", (64, 64)).save(image)
    Image.new("RGBA", (32, 32)).save(mask)
    res = run("edit", str(image), "--prompt", "x", "--mask", str(mask), "--out", str(tmp_path))
    assert res.exit_code == 2
    assert "small-mask.png (png 32x32" in res.stderr
    assert "photo.png: 64x64" in res.stderr


@NEVER_WAITS  # the installed script: the fast-waits wrapper itself imports the emulator
@pytest.mark.parametrize("command", [["batch", "PROMPTS"], ["generate", "a fox"], ["emulator"]])
def test_without_pillow_the_emulator_is_a_usage_error(
    cli: list[str], tmp_path: Path, command: list[str]
) -> None:
    """No key and no Pillow: exit 2 (the table's usage code), saying what to install."""
    blocker = tmp_path / "blocked" / "PIL"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text("raise ImportError('No module named PIL')\n")
    prompts = tmp_path / "p.txt"
    prompts.write_text("a fox\n", encoding="utf-8")
    args = [str(prompts) if arg == "PROMPTS" else arg for arg in command]
    env = {k: v for k, v in os.environ.items() if k not in {"TTAPI_API_KEY", "TTAPI_BASE_URL"}}
    env["PYTHONPATH"] = str(tmp_path / "blocked")
    if command[0] != "emulator":
        args += ["--out", str(tmp_path / "out")]
    proc = subprocess.run(
        [*cli, *args], capture_output=True, text=True, env=env, timeout=60, check=False
    )
    assert proc.returncode == 2, proc.stderr
    assert "pip install 'ttapi-async[testing]'" in proc.stderr
    assert "Traceback" not in proc.stderr
