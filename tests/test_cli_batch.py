"""``ttapi-async batch`` as a new user meets it: the README's examples one after another,
a journal of another input, a CSV with an unclosed quote, a bad option, a paused account.

The CLI's ``main`` runs in this process (see tests/test_cli.py's docstring for why).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

from click.testing import Result
from test_cli import run

from ttapi_async.testing import Emulator


EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def batch(*args: str, emu: Emulator | None = None) -> Result:
    keys = {"key": emu.api_key, "base_url": emu.url} if emu is not None else {}
    return run("batch", *args, "--no-progress", **keys)


def test_the_readme_examples_run_one_after_another_into_one_folder(
    emu: Emulator, tmp_path: Path
) -> None:
    """The main job, then the README's next examples, all with --out images: no clash."""
    for name in ("prompts.txt", "prompts.jsonl", "prompts.csv"):
        shutil.copy(EXAMPLES / name, tmp_path / name)
    out = str(tmp_path / "images")
    first = batch(str(tmp_path / "prompts.txt"), "--out", out, emu=emu)
    assert first.exit_code == 0, first.stderr
    for args in (
        ("prompts.jsonl", "--kind", "generate", "--model", "gpt-image-1"),
        ("prompts.csv", "--kind", "dalle3"),
    ):
        dry = batch(str(tmp_path / args[0]), *args[1:], "--out", out, "--dry-run", emu=emu)
        assert dry.exit_code == 0, dry.stderr
        res = batch(str(tmp_path / args[0]), *args[1:], "--out", out, emu=emu)
        assert res.exit_code == 0, res.stderr
    journals = sorted(p.name for p in (tmp_path / "images").glob("ttapi-journal*.sqlite"))
    assert journals == [
        "ttapi-journal-prompts.csv-dalle3.sqlite",
        "ttapi-journal-prompts.jsonl-generate.sqlite",
        "ttapi-journal-prompts.txt-4o.sqlite",
    ]


def test_a_journal_of_another_input_is_refused_before_anything_is_sent(
    emu: Emulator, tmp_path: Path
) -> None:
    prompts = tmp_path / "p.txt"
    prompts.write_text("a fox\na cat\n", encoding="utf-8")
    out = str(tmp_path / "out")
    assert batch(str(prompts), "--out", out, emu=emu).exit_code == 0
    prompts.write_text("an owl\na cat\n", encoding="utf-8")  # the file was edited
    sent = emu.counters.requests.copy()
    for extra in ((), ("--dry-run",)):
        res = batch(str(prompts), "--out", out, *extra, emu=emu)
        assert res.exit_code == 2, res.stderr
        assert "was written for another input" in res.stderr
        assert "row 0 (line 1)" in res.stderr
        assert "--fresh" in res.stderr
        assert "--journal" in res.stderr
        assert "Run the same command again" not in res.output
    assert emu.counters.requests == sent
    # --fresh starts over, keeping the old journal as a .bak beside it.
    res = batch(str(prompts), "--out", out, "--fresh", emu=emu)
    assert res.exit_code == 0, res.stderr
    assert "set the old journal aside" in res.stderr
    assert len(list((tmp_path / "out").glob("*.bak"))) == 1
    assert sorted(line.split("\t")[0] for line in res.stdout.splitlines()) == ["done", "done"]


def test_a_rerun_reports_earlier_items_apart_from_new_work(emu: Emulator, tmp_path: Path) -> None:
    prompts = tmp_path / "p.txt"
    prompts.write_text("a fox\na cat\n", encoding="utf-8")
    out = str(tmp_path / "out")
    assert batch(str(prompts), "--out", out, emu=emu).exit_code == 0
    prompts.write_text("a fox\na cat\nan owl\n", encoding="utf-8")  # one more row
    res = batch(str(prompts), "--out", out, emu=emu)
    assert res.exit_code == 0, res.stderr
    assert "resuming" in res.stderr
    states = sorted((cols[0], cols[1]) for cols in map(str.split, res.stdout.splitlines()))
    assert states == [("done", "2"), ("skipped", "0"), ("skipped", "1")]


def test_an_unclosed_csv_quote_is_named_as_such(tmp_path: Path) -> None:
    rows = tmp_path / "rows.csv"
    rows.write_text('prompt,size\n"a fox,1024x1024\na cat,1024x1024\n', encoding="utf-8")
    res = batch(str(rows), "--kind", "dalle3", "--dry-run")
    assert res.exit_code == 2
    assert "rows.csv:2:" in res.stderr
    assert "never closed" in res.stderr
    assert "size" not in res.stderr.split("never closed")[0].split("rows.csv:2:")[1]


def test_a_bad_option_is_blamed_on_the_option_once(tmp_path: Path) -> None:
    prompts = tmp_path / "p.jsonl"
    prompts.write_text(
        '{"prompt": "a"}\n{"prompt": "b"}\n{"prompt": "c", "size": "5x5"}\n', encoding="utf-8"
    )
    res = batch(str(prompts), "--kind", "generate", "--model", "gpt-image-1", "--size", "9x9")
    assert res.exit_code == 2
    lines = res.stderr.splitlines()
    flagged = [line for line in lines if line.startswith("--size (on the command line)")]
    assert len(flagged) == 1, res.stderr
    assert "line(s) 1-2" in flagged[0]
    # The row that sets its own size is that row's problem, named by its line.
    assert any(line.startswith("p.jsonl:3: size='5x5'") for line in lines)
    assert not any(line.startswith(("p.jsonl:1", "p.jsonl:2")) for line in lines)


def test_an_account_error_is_said_once(cli: list[str], emu: Emulator, tmp_path: Path) -> None:
    """A 402 pauses the run: one line says why, and the advice is to fix it, then rerun.

    A child process: under pytest the log capture would hide a stray library warning."""
    emu.balance = 0
    prompts = tmp_path / "p.txt"
    prompts.write_text("a\nb\nc\n", encoding="utf-8")
    env = {**os.environ, "TTAPI_API_KEY": emu.api_key, "TTAPI_BASE_URL": emu.url}
    proc = subprocess.run(
        [*cli, "batch", str(prompts), "--out", str(tmp_path / "out"), "--no-progress"],
        capture_output=True, text=True, env=env, timeout=60, check=False,
    )  # fmt: skip
    assert proc.returncode == 3, proc.stderr
    assert len(re.findall("Insufficient balance", proc.stderr + proc.stdout)) == 1, proc.stderr
    assert "Put the account right" in proc.stderr


def test_the_emulator_notice_comes_before_the_live_bar(tmp_path: Path) -> None:
    prompts = tmp_path / "p.txt"
    prompts.write_text("a\n", encoding="utf-8")
    res = run("batch", str(prompts), "--out", str(tmp_path / "out"), "--progress")
    assert res.exit_code == 0, res.stderr
    notice = res.stderr.index("embedded TTAPI emulator")
    bar = res.stderr.index("batch ")
    assert notice < bar
    notice_line = next(line for line in res.stderr.splitlines() if "embedded" in line)
    assert "━" not in notice_line


def test_a_journal_in_use_or_not_a_journal_is_a_usage_error(tmp_path: Path) -> None:
    """Another run holds the journal, or the file is not one: exit 2, no summary, no rerun
    advice (it was reported as a --fail-fast stop, exit 3)."""
    from ttapi_async import Journal  # noqa: PLC0415
    from ttapi_async._clijournal import default_journal  # noqa: PLC0415

    prompts = tmp_path / "p.txt"
    prompts.write_text("a\nb\n", encoding="utf-8")
    out = tmp_path / "out"
    with Journal.open(default_journal(out, prompts, "4o")):  # held, as a running batch does
        res = batch(str(prompts), "--out", str(out))
    assert res.exit_code == 2, res.output
    assert "another process is running with this journal" in res.stderr
    assert "batch summary" not in res.stderr
    other = tmp_path / "notes.txt"
    other.write_text("not a journal\n", encoding="utf-8")
    for extra in ((), ("--dry-run",)):
        res = batch(str(prompts), "--journal", str(other), *extra)
        assert res.exit_code == 2, res.output
        assert "cannot be read as a journal" in res.stderr


def test_a_damaged_journal_is_caught_by_a_dry_run_and_set_aside_by_fresh(tmp_path: Path) -> None:
    from ttapi_async._clijournal import default_journal  # noqa: PLC0415

    prompts = tmp_path / "p.txt"
    prompts.write_text("a\n", encoding="utf-8")
    out = tmp_path / "out"
    out.mkdir()
    journal = default_journal(out, prompts, "4o")
    journal.write_bytes(b"SQLite format 3\x00" + bytes(range(256)) * 8)
    res = batch(str(prompts), "--out", str(out), "--dry-run")
    assert res.exit_code == 2
    assert "cannot be read as a journal" in res.stderr
    assert "--fresh" in res.stderr
    res = batch(str(prompts), "--out", str(out), "--fresh")
    assert res.exit_code == 0, res.output
    backups = list(out.glob("*.bak"))
    assert len(backups) == 1
    assert backups[0].read_bytes().startswith(b"SQLite format 3")  # the damaged file, kept


def test_files_that_cannot_be_read_as_a_whole_are_problems_not_tracebacks(tmp_path: Path) -> None:
    """A CSV header with an unclosed quote or no prompt column, a file that is not UTF-8:
    exit 2 with the reason (they escaped as tracebacks, exit 1)."""
    cases = {
        "quote.csv": b'"prompt,size\na,b\n',
        "noprompt.csv": b"text,size\na,b\n",
        "binary.txt": b"\xff\xfe\x00a\x00b",
    }
    for name, data in cases.items():
        path = tmp_path / name
        path.write_bytes(data)
        res = batch(str(path), "--kind", "generate", "--model", "gpt-image-1", "--dry-run")
        assert res.exit_code == 2, (name, res.output)
        assert f"{name}: prompts_file=" in res.stderr, res.stderr
