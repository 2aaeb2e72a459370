"""The bulk journal: transitions, persistence, crash recovery, permissions, wrong files."""

from __future__ import annotations

import errno
import os
import re
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

from ttapi_async._errors import (
    JournalCorruptError,
    JournalTransitionError,
    StorageError,
    ValidationError,
)
from ttapi_async._journal import ItemState, Journal, JournalEntry
from ttapi_async._journalstore import TRANSITIONS


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
    """It starts like SQLite and SQLite cannot read it: damaged, and left as it was."""
    path = tmp_path / "bad.sqlite"
    damaged = b"SQLite format 3\x00" + b"\xff" * 200
    path.write_bytes(damaged)
    with pytest.raises(JournalCorruptError) as info:
        Journal.open(path)
    assert info.value.path == str(path)
    assert info.value.rows == ()
    assert "not a database" in str(info.value)
    assert path.read_bytes() == damaged


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


# ---------------------------------------------------------------- run id, damage, storage


def raw(path: Path) -> sqlite3.Connection:
    """A plain SQLite connection that can write what no run writes (CHECKs off)."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA ignore_check_constraints = ON")
    return conn


def raw_rows(path: Path) -> list[tuple[object, ...]]:
    conn = sqlite3.connect(path)
    conn.text_factory = bytes
    try:
        return conn.execute("SELECT * FROM items ORDER BY idx").fetchall()
    finally:
        conn.close()


def test_run_id_is_made_once_per_file_and_kept(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    with Journal.open(path) as j:
        run_id = j.run_id
    assert run_id is not None
    assert re.fullmatch(r"[0-9a-f]{16}", run_id)
    with Journal.open(path) as j:  # a resumed run is a new process: same id
        assert j.run_id == run_id
    with Journal.open(tmp_path / "other.sqlite") as other:
        assert other.run_id != run_id
    # A journal written before run ids existed is given one, then keeps it.
    conn = raw(path)
    conn.execute("DELETE FROM meta WHERE key = 'run_id'")
    conn.close()
    with Journal.open(path) as j:
        added = j.run_id
    assert added is not None
    assert added != run_id
    with Journal.open(path) as j:
        assert j.run_id == added


@pytest.mark.parametrize("value", ["*", "", "../x", "0123456789ABCDEF", "0123456789abcde"])
def test_a_damaged_run_id_is_refused(tmp_path: Path, value: str) -> None:
    """The run id names what a sweep deletes: ``*`` would match every temporary file."""
    path = tmp_path / "j.sqlite"
    Journal.open(path).close()
    conn = raw(path)
    conn.execute("UPDATE meta SET value = ? WHERE key = 'run_id'", (value,))
    conn.close()
    with pytest.raises(JournalCorruptError) as info:
        Journal.open(path)
    assert info.value.path == str(path)
    assert "run id" in str(info.value)


DAMAGE = {
    "unknown state": ("state = 'exploded'", (2,)),
    "files not JSON": ("files = 'nope'", (2,)),
    "files a JSON list of numbers": ("files = '[1, 2]'", (2,)),
    "files a JSON object": ("files = '{\"a\": 1}'", (2,)),
    "files nested past the recursion limit": ("files = '" + "[" * 100_000 + "'", (2,)),
    "fingerprint a blob": ("fingerprint = x'6670'", (2,)),
    "label a blob": ("label = x'00ff'", (2,)),
    "label not UTF-8": ("label = CAST(x'ff' AS TEXT)", (2,)),
    "job id a blob": ("job_id = x'6a6f62'", (2,)),
    "reason a blob": ("reason = x'00'", (2,)),
    "hooked 7": ("hooked = 7", (2,)),
    "attempts text": ("attempts = 'many'", (2,)),
    "attempts negative": ("attempts = -1", (2,)),
    "updated text": ("updated = 'yesterday'", (2,)),
    "submitted without a job id": ("state = 'submitted', job_id = NULL", (2,)),
}


@pytest.mark.parametrize("damage", list(DAMAGE), ids=list(DAMAGE))
def test_damaged_rows_are_named_and_nothing_is_written(tmp_path: Path, damage: str) -> None:
    """A row no run writes: the open refuses, names the rows, and changes nothing.

    Not even the recovery of the ``submitting`` row, the switch to WAL or the chmod.
    """
    assignment, rows = DAMAGE[damage]
    path = tmp_path / "j.sqlite"
    with Journal.open(path) as j:
        for i in range(4):
            j.add_pending(i, f"fp{i}", "4o", f"prompt {i}")
        j.mark_submitting(1)  # a crash left it: recovery would turn it outcome_unknown
        j.mark_submitting(2)
        j.mark_submitted(2, "job-2", hooked=False)
        j.mark_done(2, ["out/a.png"])
    conn = raw(path)
    conn.execute(f"UPDATE items SET {assignment} WHERE idx = 2")  # noqa: S608 - test constants
    conn.execute("UPDATE items SET state = 'exploded' WHERE idx = 3")
    conn.execute("PRAGMA journal_mode = DELETE")  # so a WAL switch would show in the bytes
    conn.close()
    path.chmod(0o644)
    before, rows_before = path.read_bytes(), raw_rows(path)
    with pytest.raises(JournalCorruptError) as info:
        Journal.open(path)
    assert info.value.path == str(path)
    assert info.value.rows == (*rows, 3)
    assert str(path) in str(info.value)
    assert path.read_bytes() == before
    assert raw_rows(path) == rows_before  # row 1 is still submitting
    assert mode(path) == 0o644
    assert not Path(f"{path}-wal").exists()
    with pytest.raises(JournalCorruptError):  # and again: the refusal is not a one-off
        Journal.open(path)


def test_rows_damaged_while_open_are_named(tmp_path: Path) -> None:
    """Damage written by another program after the open is still a typed error."""
    path = tmp_path / "j.sqlite"
    with Journal.open(path) as j:
        j.add_pending(0, "fp0", "4o", "a")
        j.add_pending(1, "fp1", "4o", "b")
        conn = raw(path)
        conn.execute("UPDATE items SET files = 'nope', state = 'bogus' WHERE idx = 1")
        conn.close()
        with pytest.raises(JournalCorruptError) as info:
            j.entries()
        assert info.value.rows == (1,)
        with pytest.raises(JournalCorruptError) as info:
            j.get(1)
        assert info.value.rows == (1,)
        with pytest.raises(JournalCorruptError):
            j.counts()
        assert j.get(0) is not None  # the sound rows still read


@pytest.mark.parametrize(
    "keep",
    [lambda n: 100, lambda n: 4096, lambda n: n // 2, lambda n: n - 1000],
    ids=["header", "first page", "half", "all but the end"],
)
def test_a_truncated_journal_is_damaged_and_kept(
    tmp_path: Path, keep: Callable[[int], int]
) -> None:
    path = tmp_path / "j.sqlite"
    with Journal.open(path) as j:
        for i in range(300):
            j.add_pending(i, f"fingerprint {i}" * 4, "4o", f"a long label for prompt {i}" * 3)
    whole = path.read_bytes()
    cut = whole[: keep(len(whole))]
    path.write_bytes(cut)
    with pytest.raises(JournalCorruptError) as info:
        Journal.open(path)
    assert info.value.path == str(path)
    assert path.read_bytes() == cut


def test_a_full_disk_is_a_storage_error(tmp_path: Path) -> None:
    """SQLite's "database or disk is full", made real by a page limit: a StorageError.

    It is an OSError with errno ENOSPC, keeps SQLite's error as its cause, and the rows
    written before it are still there.
    """
    path = tmp_path / "j.sqlite"
    with Journal.open(path) as j:
        j.add_pending(0, "fp0", "4o", "first")
        pages = j._conn.execute("PRAGMA page_count").fetchone()[0]
        j._conn.execute(f"PRAGMA max_page_count = {pages + 1}")
        with pytest.raises(StorageError) as info:
            for i in range(1, 10_000):
                j.add_pending(i, f"fp{i}", "4o", "x" * 500)
        err = info.value
        assert isinstance(err, OSError)
        assert err.errno == errno.ENOSPC
        assert err.filename == str(path)
        assert isinstance(err.__cause__, sqlite3.OperationalError)
        assert j.get(0) is not None
        with pytest.raises(StorageError):
            j.mark_done(0, ["x" * 100_000])


def test_a_journal_path_that_cannot_be_made_is_a_storage_error(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(StorageError) as info:
        Journal.open(blocker / "j.sqlite")
    assert info.value.errno == errno.EEXIST  # mkdir finds a file where the folder goes
    assert isinstance(info.value.__cause__, FileExistsError)
    with pytest.raises(StorageError) as info:
        Journal.open(tmp_path)  # a folder where the file should be
    assert info.value.errno == errno.EISDIR
    assert blocker.read_text() == "not a folder"


@pytest.mark.skipif(not Path("/sys/kernel").is_dir(), reason="needs Linux sysfs")
def test_a_journal_where_even_root_may_not_write_is_a_storage_error() -> None:
    """sysfs refuses new files to everyone, root included: a real EACCES."""
    with pytest.raises(StorageError) as info:
        Journal.open("/sys/kernel/ttapi-journal.sqlite")
    assert info.value.errno == errno.EACCES


@pytest.mark.parametrize("name", ["j\x00.sqlite", "j\ud800.sqlite"])
def test_a_journal_path_the_os_cannot_take_is_a_validation_error(tmp_path: Path, name: str) -> None:
    with pytest.raises(ValidationError) as info:
        Journal.open(tmp_path / name)
    assert info.value.param == "journal"


def test_an_altered_table_is_damage(tmp_path: Path) -> None:
    """Same table names, but ``idx`` lost its primary key (a flipped schema byte does
    that): rows could have no index or share one, so the open refuses."""
    path = tmp_path / "j.sqlite"
    with Journal.open(path) as j:
        j.add_pending(0, "fp0", "4o", "a")
    conn = raw(path)
    columns = "fingerprint, state, kind, label, job_id, hooked, files, reason, attempts, updated"
    conn.executescript(
        f"""
        ALTER TABLE items RENAME TO old;
        CREATE TABLE items (idx INTEGER, fingerprint TEXT NOT NULL, state TEXT NOT NULL,
            kind TEXT NOT NULL, label TEXT NOT NULL, job_id TEXT,
            hooked INTEGER NOT NULL DEFAULT 0, files TEXT NOT NULL DEFAULT '[]', reason TEXT,
            attempts INTEGER NOT NULL DEFAULT 0, updated REAL NOT NULL);
        INSERT INTO items SELECT * FROM old;
        INSERT INTO items (idx, {columns}) SELECT NULL, {columns} FROM old;
        DROP TABLE old;
        """  # noqa: S608 - test constants
    )
    conn.close()
    before = path.read_bytes()
    with pytest.raises(JournalCorruptError) as info:
        Journal.open(path)
    assert "items table was altered" in str(info.value)
    assert path.read_bytes() == before


def test_a_fifo_or_a_device_is_refused_untouched(tmp_path: Path) -> None:
    """Not a regular file: refused at once (a FIFO once blocked for ever), mode unchanged."""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo, 0o644)
    paths = [fifo]
    device = tmp_path / "null"
    try:  # a private copy of /dev/null (root only; CI runs as root)
        os.mknod(device, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
        paths.append(device)
    except PermissionError:
        pass
    for path in paths:
        mode = path.stat().st_mode
        with pytest.raises(ValidationError, match="regular file"):
            Journal.open(path)
        assert path.stat().st_mode == mode


# ---------------------------------------------------------------- the transition table

#: How a test puts a row into each state, by legal moves from pending.
_REACH: dict[ItemState, list[Callable[[Journal, int], None]]] = {
    ItemState.PENDING: [],
    ItemState.SUBMITTING: [lambda j, i: j.mark_submitting(i)],
    ItemState.SUBMITTED: [
        lambda j, i: j.mark_submitting(i),
        lambda j, i: j.mark_submitted(i, f"job-{i}", hooked=True),
    ],
    ItemState.DONE: [lambda j, i: j.mark_submitting(i), lambda j, i: j.mark_done(i, ["a.png"])],
    ItemState.FAILED: [lambda j, i: j.mark_submitting(i), lambda j, i: j.mark_failed(i, "bad")],
    ItemState.OUTCOME_UNKNOWN: [
        lambda j, i: j.mark_submitting(i),
        lambda j, i: j.mark_unknown(i, "dropped"),
    ],
}
#: The write that moves a row to each state.
_WRITE: dict[ItemState, Callable[[Journal, int], None]] = {
    ItemState.PENDING: lambda j, i: j.reset(i),
    ItemState.SUBMITTING: lambda j, i: j.mark_submitting(i),
    ItemState.SUBMITTED: lambda j, i: j.mark_submitted(i, "job-new", hooked=False),
    ItemState.DONE: lambda j, i: j.mark_done(i, ["new.png"]),
    ItemState.FAILED: lambda j, i: j.mark_failed(i, "new reason"),
    ItemState.OUTCOME_UNKNOWN: lambda j, i: j.mark_unknown(i, "new reason"),
}


def test_every_write_is_checked_against_the_transition_table(tmp_path: Path) -> None:
    """Each of the 36 moves: a legal one is made, an illegal one raises
    JournalTransitionError naming the row and both states, and changes nothing."""
    pairs = [(old, new) for old in ItemState for new in ItemState]
    with Journal.open(tmp_path / "j.sqlite") as j:
        for index, (old, new) in enumerate(pairs):
            j.add_pending(index, f"fp{index}", "4o", "x")
            for step in _REACH[old]:
                step(j, index)
            before = j.get(index)
            assert before is not None
            assert before.state is old
            if new in TRANSITIONS[old]:
                _WRITE[new](j, index)
                after = j.get(index)
                assert after is not None
                assert after.state is new
                continue
            with pytest.raises(JournalTransitionError) as info:
                _WRITE[new](j, index)
            assert (info.value.index, info.value.old, info.value.new) == (index, old, new)
            assert f"journal row {index} cannot go from {old} to {new}" in str(info.value)
            after = j.get(index)
            assert after is not None
            assert after.state is old
            assert after.attempts == before.attempts
            assert (after.job_id, after.files, after.reason) == (
                before.job_id,
                before.files,
                before.reason,
            )
        refused = sum(new not in TRANSITIONS[old] for old, new in pairs)
        assert refused == 16  # of 36 moves, 20 are allowed


@pytest.mark.anyio
async def test_the_journal_store_methods_write_through_the_same_checks(tmp_path: Path) -> None:
    """The async protocol the bulk runner uses: the same rows, the same table."""
    j = Journal.open(tmp_path / "j.sqlite")
    entry = await j.begin(0, "fp0", "4o", "a fox")
    assert entry.state is ItemState.PENDING
    assert await j.begin(0, "fp0", "4o", "other label") == entry
    assert await j.claim(0)
    assert await j.renew(0)
    await j.transition(0, ItemState.SUBMITTING)
    with pytest.raises(ValidationError, match="job_id"):
        await j.transition(0, ItemState.SUBMITTED)
    await j.transition(0, ItemState.SUBMITTED, job_id="job-0", hooked=True)
    with pytest.raises(ValidationError, match="reason"):
        await j.transition(0, ItemState.FAILED)
    await j.transition(0, ItemState.DONE, files=["out/fox.png"])
    with pytest.raises(JournalTransitionError, match="from done to outcome_unknown"):
        await j.transition(0, ItemState.OUTCOME_UNKNOWN, reason="late")
    rows = await j.load()
    assert list(rows) == [0]
    assert (rows[0].state, rows[0].job_id, rows[0].files, rows[0].hooked) == (
        ItemState.DONE,
        "job-0",
        ("out/fox.png",),
        True,
    )
    await j.transition(0, ItemState.PENDING)
    assert (await j.load())[0].state is ItemState.PENDING
    assert await j.release(0)
    await j.aclose()
    await j.aclose()  # idempotent, as close()
    with Journal.open(tmp_path / "j.sqlite") as again:  # the lock was let go
        assert again.counts()[ItemState.PENDING] == 1
