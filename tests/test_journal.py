"""The bulk journal: transitions, persistence, crash recovery, permissions, wrong files."""

from __future__ import annotations

import os
import signal
import sqlite3
import stat
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from ttapi_async._errors import ValidationError
from ttapi_async._journal import ItemState, Journal, JournalEntry


ROOT = Path(__file__).resolve().parent.parent
INTERRUPTED = (
    "interrupted after the request may have been sent (no job id recorded); TTAPI has no "
    "idempotency key, so it is not resubmitted unless asked"
)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def reopen(journal: Journal) -> Journal:
    journal.close()
    return Journal.open(journal.path)


def test_new_journal_is_empty_wal_and_normal_sync(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "er" / "run.sqlite"
    with Journal.open(str(path)) as j:
        assert j.path == path
        assert j.recovered == 0
        assert j.entries() == {}
        assert j.get(0) is None
        assert j._conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert j._conn.execute("PRAGMA synchronous").fetchone() == (1,)  # NORMAL
        assert j._conn.isolation_level is None
    assert path.is_file()


def test_add_pending_and_persistence(tmp_path: Path) -> None:
    j = Journal.open(tmp_path / "j.sqlite")
    before = time.time()
    entry = j.add_pending(0, "fp0", "4o", "a cat")
    assert entry == JournalEntry(
        index=0,
        fingerprint="fp0",
        state=ItemState.PENDING,
        kind="4o",
        label="a cat",
        job_id=None,
        hooked=False,
        files=(),
        reason=None,
        attempts=0,
        updated=entry.updated,
    )
    assert before <= entry.updated <= time.time()
    assert j.get(0) == entry
    j = reopen(j)
    assert j.entries() == {0: entry}
    assert j.get(0) == entry
    j.close()


def test_add_pending_returns_existing_row_unchanged(tmp_path: Path) -> None:
    with Journal.open(tmp_path / "j.sqlite") as j:
        j.add_pending(3, "fp3", "generate", "a dog")
        j.mark_submitting(3)
        j.mark_done(3, ["out/a.png"])
        done = j.get(3)
        assert done is not None
        again = j.add_pending(3, "fp3", "edit", "another label")
        assert again == done
        assert again.state is ItemState.DONE
        assert again.kind == "generate"
        assert again.label == "a dog"
        assert again.files == ("out/a.png",)


def test_fingerprint_mismatch(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    with Journal.open(path) as j:
        j.add_pending(0, "fp-a", "4o", "x")
    with Journal.open(path) as j:
        with pytest.raises(ValidationError) as info:
            j.add_pending(0, "fp-b", "4o", "x")
        err = info.value
        assert err.param == "journal"
        assert err.value == str(path)
        assert err.rule == (
            "row 0 was written for a different input; use a new journal file or the same inputs"
        )
        row = j.get(0)
        assert row is not None
        assert row.fingerprint == "fp-a"


def test_4o_path_submitting_submitted_done(tmp_path: Path) -> None:
    j = Journal.open(tmp_path / "j.sqlite")
    j.add_pending(1, "fp1", "4o", "a fox")

    j.mark_submitting(1)
    j.mark_submitting(1)  # a resubmit after a 429 counts a second attempt
    j.mark_submitted(1, "job-1", hooked=True)
    j = reopen(j)
    assert j.recovered == 0
    row = j.get(1)
    assert row is not None
    assert row.state is ItemState.SUBMITTED
    assert row.job_id == "job-1"
    assert row.hooked is True
    assert row.attempts == 2
    assert row.reason is None

    j.mark_done(1, ["out/fox-1.png", "out/fox-2.png"])
    j = reopen(j)
    row = j.get(1)
    assert row is not None
    assert row.state is ItemState.DONE
    assert row.files == ("out/fox-1.png", "out/fox-2.png")
    assert row.job_id == "job-1"  # which job made the files
    assert row.attempts == 2
    j.close()


def test_submitting_is_written_before_the_request(tmp_path: Path) -> None:
    with Journal.open(tmp_path / "j.sqlite") as j:
        j.add_pending(0, "fp", "generate", "g")
        j.mark_submitting(0)
        row = j.get(0)
        assert row is not None
        assert row.state is ItemState.SUBMITTING
        assert row.attempts == 1
        assert row.job_id is None


def test_failed_and_unknown_persist_with_reason(tmp_path: Path) -> None:
    j = Journal.open(tmp_path / "j.sqlite")
    j.add_pending(0, "fp0", "4o", "a")
    j.add_pending(1, "fp1", "dalle3", "b")
    j.mark_submitting(0)
    j.mark_submitted(0, "job-0", hooked=False)
    j.mark_failed(0, "JobFailedError: job job-0: failed: nsfw")
    j.mark_submitting(1)
    j.mark_unknown(1, "HTTP 504: gateway timeout")
    j = reopen(j)
    assert j.recovered == 0
    failed, unknown = j.get(0), j.get(1)
    assert failed is not None
    assert unknown is not None
    assert failed.state is ItemState.FAILED
    assert failed.reason == "JobFailedError: job job-0: failed: nsfw"
    assert failed.job_id == "job-0"  # says which job failed
    assert failed.hooked is False
    assert unknown.state is ItemState.OUTCOME_UNKNOWN
    assert unknown.reason == "HTTP 504: gateway timeout"
    assert unknown.kind == "dalle3"
    j.close()


def test_reset_keeps_attempts_and_clears_the_rest(tmp_path: Path) -> None:
    j = Journal.open(tmp_path / "j.sqlite")
    j.add_pending(0, "fp0", "4o", "a")
    j.mark_submitting(0)
    j.mark_submitted(0, "job-0", hooked=True)
    j.mark_failed(0, "boom")
    j.reset(0)
    j = reopen(j)
    row = j.get(0)
    assert row is not None
    assert row.state is ItemState.PENDING
    assert row.attempts == 1
    assert row.reason is None
    assert row.job_id is None
    assert row.hooked is False
    j.mark_submitting(0)
    row = j.get(0)
    assert row is not None
    assert row.attempts == 2
    j.close()


def test_mark_submitting_clears_an_earlier_attempt(tmp_path: Path) -> None:
    with Journal.open(tmp_path / "j.sqlite") as j:
        j.add_pending(0, "fp0", "4o", "a")
        j.mark_submitting(0)
        j.mark_unknown(0, "dropped")
        j.mark_submitting(0)  # the runner resubmits without reset(): allowed
        row = j.get(0)
        assert row is not None
        assert row.state is ItemState.SUBMITTING
        assert row.reason is None
        assert row.attempts == 2


def test_updated_moves_forward(tmp_path: Path) -> None:
    with Journal.open(tmp_path / "j.sqlite") as j:
        first = j.add_pending(0, "fp0", "generate", "a").updated
        time.sleep(0.01)
        j.mark_submitting(0)
        row = j.get(0)
        assert row is not None
        assert row.updated > first


def test_done_row_is_not_failed_or_unknown(tmp_path: Path) -> None:
    with Journal.open(tmp_path / "j.sqlite") as j:
        j.add_pending(0, "fp0", "generate", "a")
        j.mark_submitting(0)
        j.mark_done(0, ["a.png"])
        for mark in (j.mark_failed, j.mark_unknown):
            with pytest.raises(ValidationError) as info:
                mark(0, "late error")
            assert info.value.param == "index"
            assert info.value.value == 0
            assert "done" in info.value.rule
        row = j.get(0)
        assert row is not None
        assert row.state is ItemState.DONE
        assert row.reason is None
        assert row.files == ("a.png",)
        # Other moves stay the runner's call.
        j.reset(0)
        row = j.get(0)
        assert row is not None
        assert row.state is ItemState.PENDING


def test_marking_a_missing_row(tmp_path: Path) -> None:
    with Journal.open(tmp_path / "j.sqlite") as j:
        j.add_pending(0, "fp0", "generate", "a")
        calls: list[Callable[[], None]] = [
            lambda: j.mark_submitting(7),
            lambda: j.mark_submitted(7, "job", hooked=False),
            lambda: j.mark_done(7, []),
            lambda: j.mark_failed(7, "r"),
            lambda: j.mark_unknown(7, "r"),
            lambda: j.reset(7),
        ]
        for call in calls:
            with pytest.raises(ValidationError) as info:
                call()
            assert info.value.param == "index"
            assert info.value.value == 7
            assert info.value.rule == "no such journal row"
        assert list(j.entries()) == [0]


def test_recovery_of_submitting_rows_on_reopen(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    with Journal.open(path) as j:
        j.add_pending(0, "fp0", "4o", "a")
        j.mark_submitting(0)
        j.add_pending(1, "fp1", "edit", "b")
        j.mark_submitting(1)
        j.add_pending(2, "fp2", "generate", "c")
    with Journal.open(path) as j:
        assert j.recovered == 2
        entries = j.entries()
        for index in (0, 1):
            assert entries[index].state is ItemState.OUTCOME_UNKNOWN
            assert entries[index].reason == INTERRUPTED
            assert entries[index].attempts == 1
        assert entries[2].state is ItemState.PENDING
    with Journal.open(path) as j:
        assert j.recovered == 0  # recovered once, and it stuck


CHILD = textwrap.dedent(
    """
    import sys, time
    from ttapi_async._journal import Journal

    j = Journal.open(sys.argv[1])
    j.add_pending(0, "fp0", "4o", "a cat")
    j.mark_submitting(0)
    j.add_pending(1, "fp1", "generate", "a dog")
    j.mark_submitting(1)
    j.add_pending(2, "fp2", "4o", "a fox")
    j.mark_submitting(2)
    j.mark_submitted(2, "job-2", hooked=True)
    j.add_pending(3, "fp3", "dalle3", "an owl")
    j.mark_submitting(3)
    j.mark_done(3, ["out/owl.png"])
    j.add_pending(4, "fp4", "edit", "a hen")
    print("ready", flush=True)
    time.sleep(60)
    """
)


def test_recovery_after_kill_9(tmp_path: Path) -> None:
    path = tmp_path / "killed.sqlite"
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(path)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
        # The child holds the database open, so its writes sit in the -wal file.
        assert Path(f"{path}-wal").exists()
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        assert proc.stdout is not None
        proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL

    with Journal.open(path) as j:
        assert j.recovered == 2
        entries = j.entries()
        assert sorted(entries) == [0, 1, 2, 3, 4]
        for index, kind in ((0, "4o"), (1, "generate")):
            assert entries[index].state is ItemState.OUTCOME_UNKNOWN
            assert entries[index].reason == INTERRUPTED
            assert entries[index].kind == kind
            assert entries[index].job_id is None
            assert entries[index].attempts == 1
        assert entries[2].state is ItemState.SUBMITTED
        assert entries[2].job_id == "job-2"
        assert entries[2].hooked is True
        assert entries[3].state is ItemState.DONE
        assert entries[3].files == ("out/owl.png",)
        assert entries[4].state is ItemState.PENDING
        assert entries[4].label == "a hen"


def test_counts(tmp_path: Path) -> None:
    with Journal.open(tmp_path / "j.sqlite") as j:
        assert j.counts() == dict.fromkeys(ItemState, 0)
        for index in range(7):
            j.add_pending(index, f"fp{index}", "generate", str(index))
        j.mark_submitting(1)
        j.mark_submitting(2)
        j.mark_submitted(2, "job-2", hooked=False)
        j.mark_done(3, ["3.png"])
        j.mark_failed(4, "bad")
        j.mark_unknown(5, "504")
        j.mark_unknown(6, "dropped")
        counts = j.counts()
        assert list(counts) == list(ItemState)
        assert counts == {
            ItemState.PENDING: 1,
            ItemState.SUBMITTING: 1,
            ItemState.SUBMITTED: 1,
            ItemState.DONE: 1,
            ItemState.FAILED: 1,
            ItemState.OUTCOME_UNKNOWN: 2,
        }


def test_files_and_text_round_trip(tmp_path: Path) -> None:
    odd = ['out/ä b,c".png', "out/\udcff.png", "out/quote'.png"]
    with Journal.open(tmp_path / "j.sqlite") as j:
        j.add_pending(0, "fp0", "generate", "label \udcff with a lone surrogate")
        j.mark_done(0, odd)
        j.add_pending(1, "fp1", "generate", "b")
        j.mark_failed(1, "reason \ud800")
    with Journal.open(tmp_path / "j.sqlite") as j:
        row, failed = j.get(0), j.get(1)
        assert row is not None
        assert failed is not None
        assert row.files == tuple(odd)
        assert row.label == "label ? with a lone surrogate"
        assert failed.reason == "reason ?"


def test_file_modes_are_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    old = os.umask(0o022)
    try:
        with Journal.open(path) as j:
            j.add_pending(0, "fp0", "4o", "a")
            wal = Path(f"{path}-wal")
            assert wal.exists()
            assert mode(path) == 0o600
            assert mode(wal) == 0o600
            assert mode(Path(f"{path}-shm")) == 0o600
    finally:
        os.umask(old)


def test_existing_loose_file_is_tightened(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    path.touch()
    path.chmod(0o644)
    with Journal.open(path) as j:
        assert mode(path) == 0o600
        j.add_pending(0, "fp0", "4o", "a")
        assert mode(Path(f"{path}-wal")) == 0o600


def test_existing_loose_journal_and_wal_are_tightened(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    wal, shm = Path(f"{path}-wal"), Path(f"{path}-shm")
    with Journal.open(path) as first:
        first.add_pending(0, "fp0", "4o", "a")
        before = first.get(0)
    # A plain reader keeps the -wal and -shm files in place between the two opens.
    keeper = sqlite3.connect(path)
    try:
        keeper.execute("SELECT count(*) FROM items").fetchall()
        for file in (path, wal, shm):
            file.chmod(0o644)
        with Journal.open(path) as second:
            for file in (path, wal, shm):
                assert mode(file) == 0o600, file
            assert second.get(0) == before
    finally:
        keeper.close()


def test_one_process_at_a_time(tmp_path: Path) -> None:
    """A second open while the first is live is refused (it would resubmit pending rows)."""
    path = tmp_path / "j.sqlite"
    with Journal.open(path) as first:
        first.add_pending(0, "fp0", "4o", "a")
        first.mark_submitting(0)
        with pytest.raises(ValidationError, match="another process"):
            Journal.open(path)
        # The refused open did not take the live run's in-flight row for a crash.
        assert first.get(0).state is ItemState.SUBMITTING  # type: ignore[union-attr]
    with Journal.open(path) as again:  # the lock went with close()
        assert again.recovered == 1


def test_rejects_a_text_file(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("prompt one\nprompt two\n")
    path.chmod(0o644)
    with pytest.raises(ValidationError) as info:
        Journal.open(path)
    assert info.value.param == "journal"
    assert info.value.value == str(path)
    # Told by its first bytes, before SQLite reads it (so no SQLite detail is appended).
    assert info.value.rule == (
        "not an SQLite file, so not a ttapi-async journal; give the path of a journal written "
        "by ttapi-async, or of a file that does not exist yet"
    )
    assert path.read_text() == "prompt one\nprompt two\n"
    assert mode(path) == 0o644  # a wrong file is left as it was


def test_rejects_a_damaged_file_that_looks_like_sqlite(tmp_path: Path) -> None:
    path = tmp_path / "bad.sqlite"
    path.write_bytes(b"SQLite format 3\x00" + b"\xff" * 200)
    with pytest.raises(ValidationError) as info:
        Journal.open(path)
    assert info.value.param == "journal"
    assert "not an SQLite file" in info.value.rule


def test_rejects_a_non_journal_sqlite_file(tmp_path: Path) -> None:
    path = tmp_path / "other.sqlite"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE items (idx INTEGER, fingerprint TEXT)")
    conn.execute("CREATE TABLE meta (k TEXT)")
    conn.commit()
    conn.close()
    before = path.read_bytes()
    with pytest.raises(ValidationError) as info:
        Journal.open(path)
    assert info.value.param == "journal"
    assert "an SQLite database but not a ttapi-async journal" in info.value.rule
    assert path.read_bytes() == before
    assert not Path(f"{path}-wal").exists()  # not switched to WAL


def test_rejects_a_newer_schema(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    with Journal.open(path) as j:
        j.add_pending(0, "fp0", "4o", "a")
    conn = sqlite3.connect(path)
    conn.execute("UPDATE meta SET value = '2' WHERE key = 'schema'")
    conn.commit()
    conn.close()
    with pytest.raises(ValidationError) as info:
        Journal.open(path)
    assert info.value.param == "journal"
    assert "schema '2'" in info.value.rule
    assert "newer" in info.value.rule


def test_stores_no_secret_columns(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    with Journal.open(path) as j:
        j.add_pending(0, "fp0", "4o", "a")
        j.mark_submitting(0)
        j.mark_submitted(0, "job-0", hooked=True)
        columns = {row[1] for row in j._conn.execute("PRAGMA table_info(items)")}
    assert columns == {
        "idx", "fingerprint", "state", "kind", "label", "job_id", "hooked", "files",
        "reason", "attempts", "updated",
    }  # fmt: skip


def test_close_is_idempotent_and_repr(tmp_path: Path) -> None:
    j = Journal.open(tmp_path / "j.sqlite")
    assert repr(j) == f"Journal(path={str(tmp_path / 'j.sqlite')!r}, recovered=0)"
    j.close()
    j.close()
    with pytest.raises(sqlite3.ProgrammingError):
        j.get(0)
