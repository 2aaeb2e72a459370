"""Which journal a batch uses: one per input, legacy files resumed, clashes refused, --fresh.

Real journal files in tmp_path, written by the SQLite journal itself; no event loop.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from ttapi_async import GenerateRequest, GPT4oRequest, ItemState, Journal
from ttapi_async._clijournal import (
    LEGACY_NAME,
    JournalClashError,
    JournalPlan,
    default_journal,
    mismatch,
    plan_journal,
)
from ttapi_async._journal import read_states
from ttapi_async._requests import Request, fingerprint, label


def reqs(*prompts: str) -> list[Request]:
    return [GPT4oRequest(prompt=p) for p in prompts]


def write_journal(path: Path, requests: Sequence[Request], *, done: int = 0) -> None:
    """A journal as a run leaves it: a row per input, the first ``done`` of them done."""
    with Journal.open(path) as journal:
        for i, request in enumerate(requests):
            journal.add_pending(i, fingerprint(request), request.kind, label(request))
            if i < done:
                journal.mark_submitting(i)
                journal.mark_submitted(i, f"job-{i}", hooked=False)
                journal.mark_done(i, [f"img-{i}.png"])


def plan(tmp_path: Path, requests: list[Request], **kw: Any) -> JournalPlan:
    options: dict[str, Any] = {
        "out": tmp_path / "out",
        "prompts_file": tmp_path / "prompts.txt",
        "kind": "4o",
        "requests": requests,
        "lines": list(range(1, len(requests) + 1)),
        "given": None,
        "fresh": False,
        "dry_run": False,
    }
    options.update(kw)
    return plan_journal(**options)


def test_each_input_and_kind_has_its_own_default() -> None:
    out = Path("out")
    a = default_journal(out, Path("x/prompts.txt"), "4o")
    assert a == out / "ttapi-journal-prompts.txt-4o.sqlite"
    assert default_journal(out, Path("prompts.jsonl"), "4o") != a
    assert default_journal(out, Path("prompts.txt"), "generate") != a
    # The same file from another folder is the same input: its journal is found again.
    assert default_journal(out, Path("elsewhere/prompts.txt"), "4o") == a
    weird = default_journal(out, Path("my prompts (v2).txt"), "4o")
    assert weird.name == "ttapi-journal-my_prompts_v2_.txt-4o.sqlite"


def clash(path: Path, requests: list[Request]) -> tuple[int, int] | None:
    """:func:`mismatch` over the journal at ``path`` (none there: no rows)."""
    return mismatch(read_states(path) or {}, requests)


def test_mismatch_finds_the_first_row_of_another_input(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    assert clash(path, reqs("a")) is None  # no journal at all
    write_journal(path, reqs("a", "b", "c"))
    assert clash(path, reqs("a", "b", "c")) is None
    assert clash(path, reqs("a", "B", "C")) == (1, 2)
    # A shortened input never runs the rows past its end: they agree.
    assert clash(path, reqs("a", "b")) is None
    # A longer one adds rows.
    assert clash(path, reqs("a", "b", "c", "d")) is None


def test_a_clash_names_both_ways_out_and_no_rerun(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    path = default_journal(out, tmp_path / "prompts.txt", "4o")
    write_journal(path, reqs("a fox", "a cat"))
    with pytest.raises(JournalClashError) as caught:
        plan(tmp_path, reqs("a fox", "an owl"), lines=[1, 3])
    message = str(caught.value)
    assert str(path) in message
    assert "row 1 (line 3)" in message
    assert "--journal" in message
    assert "--fresh" in message
    assert "same command" not in message


def test_the_legacy_journal_is_resumed_when_it_holds_this_input(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    legacy = out / LEGACY_NAME
    write_journal(legacy, reqs("a", "b"), done=1)
    chosen = plan(tmp_path, reqs("a", "b"))
    assert chosen.path == legacy
    assert any("resuming" in note for note in chosen.notes)
    assert chosen.resumable == {ItemState.DONE: 1, ItemState.PENDING: 1}
    # Another input does not take it: it gets its own journal.
    other = plan(tmp_path, reqs("x", "y"))
    assert other.path == default_journal(out, tmp_path / "prompts.txt", "4o")
    assert other.notes == ()


def test_fresh_sets_the_old_journal_aside_whole(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    path = default_journal(out, tmp_path / "prompts.txt", "4o")
    write_journal(path, reqs("a", "b"), done=2)
    when = dt.datetime(2026, 12, 6, 7, 0, tzinfo=dt.UTC)
    # A dry run only says what it would do.
    dry = plan(tmp_path, reqs("x"), fresh=True, dry_run=True, now=when)
    assert path.exists()
    assert "would" in dry.notes[0]
    chosen = plan(tmp_path, reqs("x"), fresh=True, now=when)
    assert chosen.path == path
    assert not path.exists()  # the run starts an empty journal here
    backup = path.with_name(path.name + ".20261206T070000Z.bak")
    assert str(backup) in chosen.notes[0]
    with Journal.open(backup) as old:
        assert old.counts()[ItemState.DONE] == 2  # nothing of the old run was lost


def test_fresh_warns_of_jobs_still_running(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    path = default_journal(out, tmp_path / "prompts.txt", "4o")
    requests = reqs("a")
    with Journal.open(path) as journal:
        journal.add_pending(0, fingerprint(requests[0]), "4o", "a")
        journal.mark_submitting(0)
        journal.mark_submitted(0, "job-0", hooked=False)
    chosen = plan(tmp_path, requests, fresh=True)
    assert "1 job(s) it had submitted may still finish" in chosen.notes[0]


def test_an_explicit_journal_is_checked_too(tmp_path: Path) -> None:
    given = tmp_path / "mine.sqlite"
    write_journal(given, reqs("a"))
    assert plan(tmp_path, reqs("a"), given=str(given)).path == given
    with pytest.raises(JournalClashError):
        plan(tmp_path, [GenerateRequest(prompt="a", model="gpt-image-1")], given=str(given))


def test_a_long_input_name_makes_a_journal_name_a_file_system_takes() -> None:
    for name in ("p" * 240 + ".txt", "日本語のプロンプト" * 10 + ".txt"):
        path = default_journal(Path("out"), Path(name), "generate")
        assert len(path.name.encode()) <= 120
        assert path != default_journal(Path("out"), Path(name + "2"), "generate")


def test_set_aside_moves_the_wal_with_the_journal(tmp_path: Path) -> None:
    """Another connection keeps the -wal file from being folded in on close: it moves with
    the journal, so the .bak holds every write and no stale -wal is left for a new journal."""
    import sqlite3  # noqa: PLC0415

    from ttapi_async._journal import set_aside  # noqa: PLC0415

    path = tmp_path / "j.sqlite"
    requests = reqs("a", "b", "c")
    write_journal(path, requests[:1])
    reader = sqlite3.connect(path, isolation_level=None)
    reader.execute("BEGIN")
    reader.execute("SELECT count(*) FROM items").fetchall()  # holds the WAL open
    write_journal(path, requests, done=3)
    moved = set_aside(path, "STAMP")
    reader.close()
    assert moved == tmp_path / "j.sqlite.STAMP.bak"
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("j.sqlite-")) == []
    with Journal.open(moved) as old:
        assert old.counts()[ItemState.DONE] == 3
    with Journal.open(path) as new:
        assert new.entries() == {}


def test_a_damaged_legacy_journal_is_not_taken_for_this_input(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / LEGACY_NAME).write_bytes(b"SQLite format 3\x00" + b"\x01" * 2000)
    chosen = plan(tmp_path, reqs("a"))
    assert chosen.path == default_journal(out, tmp_path / "prompts.txt", "4o")


def test_fresh_on_a_legacy_journal_starts_under_the_new_name(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    write_journal(out / LEGACY_NAME, reqs("a"), done=1)
    chosen = plan(tmp_path, reqs("a"), fresh=True)
    assert chosen.path == default_journal(out, tmp_path / "prompts.txt", "4o")
    assert (out / LEGACY_NAME).exists()  # left as it was: this run has a journal of its own
