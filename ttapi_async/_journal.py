"""The bulk runner's journal: one SQLite row per input, so a crashed run can resume.

Strictly private; ``ttapi_async.Journal`` is the public name. :class:`Journal` is the first
implementation of :class:`~ttapi_async._journalstore.JournalStore`, the protocol the bulk
runner (:mod:`ttapi_async._bulk`) talks to, and keeps its synchronous methods for scripts
and reports. Each input's row moves through :class:`ItemState`::

    pending ──> submitting ──> submitted ──> done
                    │               │
                    ├──> done       └──> failed
                    ├──> failed
                    └──> outcome_unknown

and back to ``pending`` by :meth:`Journal.reset`. Every write checks the full table,
:data:`~ttapi_async._journalstore.TRANSITIONS` (which also holds the retries' moves), and
refuses an illegal move with :class:`~ttapi_async.JournalTransitionError`.

``submitting`` is written *before* the request goes out. A row still in ``submitting``
when a journal is opened again belongs to a run that stopped (crash, ``kill -9``) after
the request may have been sent and before its answer was recorded; TTAPI has no
idempotency key, so :meth:`Journal.open` moves such rows to ``outcome_unknown`` rather
than letting them be sent (and billed) twice.

Durability: the database runs in WAL mode with ``synchronous=NORMAL`` and every method is
one short transaction that has committed when it returns. That survives the process
dying at any point (an exception, ``kill -9``, an OOM kill): the operating system still
writes what was handed to it. A power loss or an operating-system crash may lose the last
few transactions (WAL commits are not fsynced one by one); ``synchronous=FULL`` would
close that gap at the price of an fsync per state change.

What is stored: the input's position, a fingerprint of the request, its kind, a short
label, the 4o job id, whether a hook URL was used, saved file paths, a reason and
timestamps; and once per file, a random *run id* (16 hex digits) that every run of the
journal shares: a run's temporary files are named ``.part-<run id>-*``, so a resumed run
removes exactly what an earlier run of the same journal left, and nothing else.

A damaged file (SQLite finds it malformed, or a row holds what no run writes: an unknown
state, ``files`` that are not a JSON list, a wrong type) raises
:class:`~ttapi_async.JournalCorruptError` from :meth:`Journal.open`, naming the rows,
before anything is written. A local failure (disk full, permission denied) raises
:class:`~ttapi_async.StorageError`. API keys, hook URLs and hook tokens are never stored:
no method takes them. The file is still created readable by its owner only (0600), since
labels quote prompts.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import secrets
import sqlite3
import stat
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Final, Self

from ._errors import JournalCorruptError, StorageError, ValidationError
from ._journalstore import ItemState, JournalEntry, check_transition, recorded, sources


if sys.platform != "win32":
    import fcntl


__all__ = ["ItemState", "Journal", "JournalEntry", "read_states", "set_aside"]


_SCHEMA: Final = 1
# Marks the file as ours: an SQLite database without it is somebody else's.
_APP: Final = "ttapi-async bulk journal"
_SQLITE_MAGIC: Final = b"SQLite format 3\x00"
_PRIVATE: Final = 0o600

_INTERRUPTED: Final = (
    "interrupted after the request may have been sent (no job id recorded); TTAPI has no "
    "idempotency key, so it is not resubmitted unless asked"
)

_CREATE: Final = (
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    f"""CREATE TABLE IF NOT EXISTS items (
        idx INTEGER PRIMARY KEY,
        fingerprint TEXT NOT NULL,
        state TEXT NOT NULL CHECK (state IN ({", ".join(f"'{s.value}'" for s in ItemState)})),
        kind TEXT NOT NULL,
        label TEXT NOT NULL,
        job_id TEXT,
        hooked INTEGER NOT NULL DEFAULT 0,
        files TEXT NOT NULL DEFAULT '[]',
        reason TEXT,
        attempts INTEGER NOT NULL DEFAULT 0,
        updated REAL NOT NULL
    )""",
)

_COLUMNS: Final = (
    "idx, fingerprint, state, kind, label, job_id, hooked, files, reason, attempts, updated"
)

_NOT_SQLITE: Final = (
    "not an SQLite file, so not a ttapi-async journal; give the path of a journal written "
    "by ttapi-async, or of a file that does not exist yet"
)
#: A run id: what names temporary files, so checked before any sweep trusts it.
_RUN_ID: Final = re.compile(r"[0-9a-f]{16}")
#: SQLite's words for a damaged file (extended codes start the same).
_CORRUPT: Final = ("SQLITE_CORRUPT", "SQLITE_NOTADB")
#: The errno a StorageError carries for SQLite's local failures (others: EIO).
_ERRNO: Final = {
    "SQLITE_FULL": errno.ENOSPC,
    "SQLITE_READONLY": errno.EROFS,
    "SQLITE_PERM": errno.EACCES,
    "SQLITE_CANTOPEN": errno.EACCES,
    "SQLITE_BUSY": errno.EBUSY,
    "SQLITE_LOCKED": errno.EBUSY,
}

_NOT_JOURNAL: Final = (
    "an SQLite database but not a ttapi-async journal; give the path of a journal written "
    "by ttapi-async, or of a file that does not exist yet"
)


class Journal:
    """The state of every input of a bulk run, in an SQLite file; see the module docstring.

    Open it with :meth:`open`, close it with :meth:`close` or ``with``. Every method is
    synchronous and short (one transaction, tens of microseconds), so the bulk runner
    calls it straight from the event loop. The connection is made with
    ``check_same_thread=False`` because :meth:`open` runs in a worker thread and the
    rest on the event loop's thread; it must be used from one thread at a time. One
    process at a time should run a given journal: two runs on the same file would both
    submit its pending rows. Another process writing the file at the same moment makes a
    call wait for SQLite's lock (up to 5 s).

    Every write checks the move against the transition table (see the module docstring)
    in the same statement that makes it, and raises :class:`JournalTransitionError`
    instead of an illegal one (a ``done`` row, say, is never turned into ``failed`` or
    ``outcome_unknown``, as its images exist); a write to a row that does not exist
    raises :class:`ValidationError`.

    The ``async`` methods (:meth:`load`, :meth:`begin`, :meth:`transition`,
    :meth:`claim`, :meth:`renew`, :meth:`release`, :meth:`aclose`) are the
    :class:`~ttapi_async._journalstore.JournalStore` protocol the bulk runner uses; they
    run the same short transactions. One process holds the journal, so every claim is
    granted.

    Attributes:
        path: the database file.
        recovered: how many rows :meth:`open` moved from ``submitting`` to
            ``outcome_unknown``.
        run_id: the journal's run id (16 hex digits, made once per file and shared by
            every run of it), which tags the run's temporary files; None only for a
            journal built without :meth:`open`.
    """

    path: Path
    recovered: int
    run_id: str | None

    def __init__(
        self,
        path: Path,
        conn: sqlite3.Connection,
        recovered: int,
        lock: int | None = None,
        *,
        run_id: str | None = None,
    ) -> None:
        """Wrap an open, checked connection; use :meth:`open` instead."""
        self.path = path
        self.recovered = recovered
        self.run_id = run_id
        self._conn = conn
        self._lock = lock

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> Journal:
        """Open the journal at ``path``, creating it (and its folders) if absent.

        Rows a previous run left in ``submitting`` become ``outcome_unknown``
        (:attr:`recovered` counts them). Blocking file I/O: call it in a worker thread
        from async code.

        One process at a time: the journal holds an exclusive ``flock`` on its file until
        :meth:`close` (the OS drops it if the process dies, even by ``kill -9``). Two runs
        on one journal would both submit its pending rows, and the second would take the
        first's ``submitting`` rows for a crash.

        Raises:
            ValidationError: ``path`` is not an SQLite file, is an SQLite database but
                not a journal, or is a journal from a newer ttapi-async.
            JournalCorruptError: the file is damaged (SQLite finds it malformed, or rows
                hold what no run writes); nothing was written to it.
            StorageError: the file or its folder could not be made, opened or written.
        """
        path = Path(path)
        conn, recovered, lock, run_id = _open_file(path)
        return cls(path, conn, recovered, lock, run_id=run_id)

    # ------------------------------------------------------------------ reading

    def entries(self) -> dict[int, JournalEntry]:
        """Every row, by index (in index order).

        Raises:
            JournalCorruptError: a row was damaged since :meth:`open` checked them.
        """
        with self._errors("reading the journal"):
            rows = self._conn.execute(f"SELECT {_COLUMNS} FROM items ORDER BY idx").fetchall()  # noqa: S608 - constant column list
        return {row[0]: self._entry(row) for row in rows}

    def get(self, index: int) -> JournalEntry | None:
        """The row for input ``index``, or None if there is none.

        Raises:
            JournalCorruptError: the row was damaged since :meth:`open` checked it.
        """
        with self._errors("reading the journal"):
            row = self._conn.execute(
                f"SELECT {_COLUMNS} FROM items WHERE idx = ?",  # noqa: S608 - constant column list
                (index,),
            ).fetchone()
        return None if row is None else self._entry(row)

    def counts(self) -> dict[ItemState, int]:
        """How many rows are in each state; every state is a key, zero when absent."""
        counts = dict.fromkeys(ItemState, 0)
        with self._errors("reading the journal"):
            rows = self._conn.execute("SELECT state, COUNT(*) FROM items GROUP BY state").fetchall()
        for state, count in rows:
            if state not in _STATES:
                raise JournalCorruptError(str(self.path), detail=f"unknown state {state!r}")
            counts[ItemState(state)] = count
        return counts

    # ------------------------------------------------------------------ writing

    def add_pending(self, index: int, fingerprint: str, kind: str, label: str) -> JournalEntry:
        """Add input ``index`` as pending, or return its row if a run already added it.

        An existing row is returned unchanged, whatever its state.

        Raises:
            ValidationError: the row exists with another fingerprint: the journal was
                written for different inputs.
        """
        entry = self.get(index)
        if entry is None:
            now = time.time()
            label = _storable(label)
            with self._errors("writing the journal"):
                self._conn.execute(
                    "INSERT INTO items (idx, fingerprint, state, kind, label, updated) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    (index, fingerprint, ItemState.PENDING, kind, label, now),
                )
            return JournalEntry(
                index=index,
                fingerprint=fingerprint,
                state=ItemState.PENDING,
                kind=kind,
                label=label,
                job_id=None,
                hooked=False,
                files=(),
                reason=None,
                attempts=0,
                updated=now,
            )
        if entry.fingerprint != fingerprint:
            raise ValidationError(
                "journal",
                str(self.path),
                f"row {index} was written for a different input; use a new journal file "
                "or the same inputs",
            )
        return entry

    def mark_submitting(self, index: int) -> None:
        """Record that the request is about to be sent; counts an attempt.

        Clears what an earlier attempt left (job id, files, reason).
        """
        self._update(
            index,
            ItemState.SUBMITTING,
            "attempts = attempts + 1, job_id = NULL, hooked = 0, files = '[]', reason = NULL",
            (),
        )

    def mark_submitted(self, index: int, job_id: str, *, hooked: bool) -> None:
        """Record that a 4o job was accepted as ``job_id`` (``hooked``: with a hook URL)."""
        self._update(
            index, ItemState.SUBMITTED, "job_id = ?, hooked = ?, reason = NULL", (job_id, hooked)
        )

    def mark_done(self, index: int, files: Sequence[str]) -> None:
        """Record that the input's images were saved as ``files``; a job id is kept."""
        self._update(index, ItemState.DONE, "files = ?, reason = NULL", (json.dumps(list(files)),))

    def mark_failed(self, index: int, reason: str) -> None:
        """Record a definite failure; a job id is kept, to say which job failed.

        Raises:
            JournalTransitionError: the row is ``done`` (its images exist).
        """
        self._update(index, ItemState.FAILED, "reason = ?", (_storable(reason),))

    def mark_unknown(self, index: int, reason: str) -> None:
        """Record that the request may have been accepted, with no answer to say.

        Raises:
            JournalTransitionError: the row is ``done`` (its images exist).
        """
        self._update(index, ItemState.OUTCOME_UNKNOWN, "reason = ?", (_storable(reason),))

    def reset(self, index: int) -> None:
        """Put the row back to pending (to retry or resubmit it); ``attempts`` is kept."""
        self._update(
            index,
            ItemState.PENDING,
            "job_id = NULL, hooked = 0, files = '[]', reason = NULL",
            (),
        )

    # ------------------------------------------------------------------ JournalStore

    async def load(self) -> Mapping[int, JournalEntry]:
        """Every row, by index (:meth:`entries`)."""
        return self.entries()

    async def begin(self, index: int, fingerprint: str, kind: str, label: str) -> JournalEntry:
        """Add input ``index`` as pending, or return its row (:meth:`add_pending`)."""
        return self.add_pending(index, fingerprint, kind, label)

    async def transition(
        self,
        index: int,
        new: ItemState,
        *,
        job_id: str | None = None,
        hooked: bool = False,
        files: Sequence[str] = (),
        reason: str | None = None,
    ) -> None:
        """Move row ``index`` to ``new``: the ``mark_*`` method (or :meth:`reset`) of ``new``.

        Raises:
            JournalTransitionError: the table forbids the move; nothing was written.
            ValidationError: there is no such row, or ``new`` lacks what it records
                (``submitted`` a job id, ``failed`` and ``outcome_unknown`` a reason).
        """
        text = recorded(new, job_id=job_id, reason=reason)
        if new is ItemState.SUBMITTING:
            self.mark_submitting(index)
        elif new is ItemState.SUBMITTED:
            self.mark_submitted(index, text, hooked=hooked)
        elif new is ItemState.DONE:
            self.mark_done(index, files)
        elif new is ItemState.FAILED:
            self.mark_failed(index, text)
        elif new is ItemState.OUTCOME_UNKNOWN:
            self.mark_unknown(index, text)
        else:
            self.reset(index)

    async def claim(self, index: int) -> bool:  # noqa: ARG002 - the protocol's signature
        """Granted: one process holds this journal (its ``flock``), so no one else runs it."""
        return True

    async def renew(self, index: int) -> bool:  # noqa: ARG002 - the protocol's signature
        """Granted: a claim on a local journal does not expire."""
        return True

    async def release(self, index: int) -> bool:  # noqa: ARG002 - the protocol's signature
        """Nothing to let go of: every claim on a local journal is granted."""
        return True

    async def aclose(self) -> None:
        """Close the journal (:meth:`close`)."""
        self.close()

    def close(self) -> None:
        """Close the database (SQLite then folds the -wal file back in); idempotent."""
        self._conn.close()
        lock, self._lock = self._lock, None
        _unlock(lock)

    def __enter__(self) -> Self:
        """Return the journal itself; :meth:`close` runs on exit."""
        return self

    def __exit__(self, *exc_info: object) -> None:
        """Close the journal."""
        self.close()

    def __repr__(self) -> str:
        """Show the path; the rows are a query away (:meth:`entries`)."""
        return f"Journal(path={str(self.path)!r}, recovered={self.recovered})"

    @contextlib.contextmanager
    def _errors(self, what: str) -> Iterator[None]:
        """Raise SQLite's errors as the SDK's: a damaged file, or a local failure."""
        try:
            yield
        except (sqlite3.ProgrammingError, sqlite3.InterfaceError):
            raise  # a misuse (a closed journal): a bug in the caller, not the file's state
        except (sqlite3.Error, UnicodeDecodeError) as exc:
            raise _translate(exc, self.path, what) from exc

    def _entry(self, row: tuple[Any, ...]) -> JournalEntry:
        try:
            return _entry(row)
        except _DamagedRowError as exc:
            raise JournalCorruptError(str(self.path), rows=(row[0],), detail=str(exc)) from exc

    def _update(
        self, index: int, new: ItemState, assignments: str, values: tuple[Any, ...]
    ) -> None:
        """Write row ``index`` to ``new``: the one place every state change goes through.

        One autocommit UPDATE whose WHERE holds the states ``new`` may be reached from:
        the check and the write are one short transaction, as cheap as the write alone.
        """
        with self._errors("writing the journal"):
            cursor = self._conn.execute(
                _UPDATES[new].format(assignments), (*values, time.time(), index)
            )
        if cursor.rowcount:
            return
        entry = self.get(index)
        if entry is None:
            raise ValidationError("index", index, "no such journal row")
        check_transition(entry.state, new, index=index)
        # The move is legal from the row's state now: another process changed the row
        # between the two statements, which the journal's lock rules out.
        raise StorageError(errno.EBUSY, "the journal row changed under a write", str(self.path))


def read_states(path: str | os.PathLike[str]) -> dict[int, tuple[str, ItemState]] | None:
    """Each row's ``(fingerprint, state)`` in the journal at ``path``, read only.

    Nothing is locked, recovered or written, so a dry run can look at a journal another
    process is running. ``{}`` when there is no file (or an empty one, which a run makes
    its journal of); None when the file cannot be read as a journal (damaged, not SQLite,
    another database): :meth:`Journal.open` is the one that says exactly what is wrong.
    """
    file = Path(path)
    try:
        if not file.exists() or file.stat().st_size == 0:
            return {}
        conn = sqlite3.connect(f"{file.resolve().as_uri()}?mode=ro", uri=True)
    except (OSError, sqlite3.Error, ValueError):
        return None
    try:
        rows = conn.execute("SELECT idx, fingerprint, state FROM items").fetchall()
        return {int(idx): (str(fp), ItemState(state)) for idx, fp, state in rows}
    except (sqlite3.Error, ValueError, TypeError):
        return None
    finally:
        conn.close()


def set_aside(path: str | os.PathLike[str], suffix: str) -> Path | None:
    """Move the journal at ``path`` to ``<path>.<suffix>.bak``, whole; return where.

    The -wal and -shm files move with it (as ``<bak>-wal``, ``<bak>-shm``, the names
    SQLite pairs with the new name), so nothing a killed run left in them is lost, and
    none is left behind for a new journal at ``path`` to pick up. The file is not opened
    as a database (a damaged one moves too); its lock is taken first, so a journal a run
    is using is refused. None when there is no file at ``path``.

    Raises:
        ValidationError: another process is running with the journal.
        StorageError: a file could not be moved.
    """
    file = Path(path)
    if not file.exists():
        return None
    target = file.with_name(f"{file.name}.{suffix}.bak")
    try:
        lock = _lock(file)
    except OSError as exc:
        raise StorageError.wrap(exc, "setting the journal aside") from exc
    try:
        # The main file last: until it moves, a new run finds the journal where it was.
        for extra in ("-wal", "-shm"):
            side = file.with_name(file.name + extra)
            if side.exists():
                side.replace(target.with_name(target.name + extra))
        file.replace(target)
    except OSError as exc:
        raise StorageError.wrap(exc, "setting the journal aside") from exc
    finally:
        _unlock(lock)
    return target


def _open_file(path: Path) -> tuple[sqlite3.Connection, int, int | None, str]:
    """Open, check and recover the journal file: (connection, recovered, lock, run id).

    See :meth:`Journal.open`; nothing is written to a file that fails a check.
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        _create_private(path)
        lock = _lock(path)
    except OSError as exc:
        raise StorageError.wrap(exc, "opening the journal") from exc
    except ValueError as exc:
        if isinstance(exc, ValidationError):
            raise
        # A NUL byte, or a lone surrogate the OS cannot encode.
        raise ValidationError("journal", str(path), f"not a usable path ({exc})") from exc
    try:
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    except BaseException as exc:
        _unlock(lock)
        if isinstance(exc, sqlite3.Error):
            raise _translate(exc, path, "opening the journal") from exc
        raise
    # Undecodable text (a damaged cell) reads as bytes, so a row check names it
    # rather than the whole query failing.
    conn.text_factory = _decode_text
    try:
        # Checked before anything is written: a wrong or damaged file is left as it
        # was (no WAL switch, no chmod, no recovery, no run id).
        fresh = _check_schema(conn, path)
        run_id = None if fresh else _check_contents(conn, path)
        _tighten(path)
        # WAL: a commit is one append to the -wal file, no fsync with NORMAL, and
        # still all-or-nothing when the process dies mid-write.
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("BEGIN IMMEDIATE")
        try:
            if fresh:
                for statement in _CREATE:
                    conn.execute(statement)
                conn.executemany(
                    "INSERT OR IGNORE INTO meta (key, value) VALUES (?, ?)",
                    [("app", _APP), ("schema", str(_SCHEMA))],
                )
            if run_id is None:  # new, or written before run ids existed
                run_id = secrets.token_hex(8)
                conn.execute("INSERT INTO meta (key, value) VALUES ('run_id', ?)", (run_id,))
            # submitting -> outcome_unknown, a move of the transition table.
            recovered = conn.execute(
                "UPDATE items SET state = ?, reason = ?, updated = ? WHERE state = ?",
                (ItemState.OUTCOME_UNKNOWN, _INTERRUPTED, time.time(), ItemState.SUBMITTING),
            ).rowcount
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:  # else ROLLBACK itself fails and hides the cause
                conn.execute("ROLLBACK")
            raise
    except (sqlite3.Error, UnicodeDecodeError) as exc:
        conn.close()
        _unlock(lock)
        # A damaged file, or a local failure (locked, read-only, disk full).
        raise _translate(exc, path, "opening the journal") from exc
    except OSError as exc:  # _tighten's chmod
        conn.close()
        _unlock(lock)
        raise StorageError.wrap(exc, "opening the journal") from exc
    except BaseException:
        conn.close()
        _unlock(lock)
        raise
    return conn, recovered, lock, run_id


def _update_sql(new: ItemState) -> str:
    """The UPDATE moving a row to ``new``, guarded by the states it may come from."""
    allowed = ", ".join(f"'{s.value}'" for s in sorted(sources(new)))
    return (
        f"UPDATE items SET state = '{new.value}', {{}}, updated = ? "  # noqa: S608 - constants
        f"WHERE idx = ? AND state IN ({allowed})"
    )


#: One guarded UPDATE per target state; ``{}`` takes the state's own assignments.
_UPDATES: Final = {new: _update_sql(new) for new in ItemState}


_STATES: Final = frozenset(s.value for s in ItemState)


class _DamagedRowError(Exception):
    """A row holds what no run writes; the message says what."""


def _entry(row: tuple[Any, ...]) -> JournalEntry:
    """The entry of a row; _DamagedRowError saying what is wrong if no run wrote it."""
    index, fingerprint, state, kind, label, job_id, hooked, files, reason, attempts, updated = row
    if not isinstance(index, int):  # only a damaged schema lets idx be anything else
        raise _DamagedRowError(f"the row index is {_kind(index)}")
    for name, value in (("fingerprint", fingerprint), ("kind", kind), ("label", label)):
        if not isinstance(value, str):
            raise _DamagedRowError(f"{name} is {_kind(value)}, not text")
    for name, value in (("job_id", job_id), ("reason", reason)):
        if value is not None and not isinstance(value, str):
            raise _DamagedRowError(f"{name} is {_kind(value)}, not text or null")
    if state not in _STATES:
        raise _DamagedRowError(f"unknown state {_kind(state)}")
    if state == ItemState.SUBMITTED and not job_id:
        raise _DamagedRowError("a submitted row without a job id")
    if hooked not in (0, 1) or isinstance(hooked, float):
        raise _DamagedRowError(f"hooked is {_kind(hooked)}, not 0 or 1")
    if not isinstance(attempts, int) or attempts < 0:
        raise _DamagedRowError(f"attempts is {_kind(attempts)}, not a count")
    if not isinstance(updated, int | float):
        raise _DamagedRowError(f"updated is {_kind(updated)}, not a time")
    try:
        paths = json.loads(files) if isinstance(files, str) else None
    except (ValueError, RecursionError):  # not JSON; nested too deep to read
        paths = None
    if not isinstance(paths, list) or not all(isinstance(p, str) for p in paths):
        raise _DamagedRowError(f"files is {_kind(files)}, not a JSON list of paths")
    return JournalEntry(
        index=index,
        fingerprint=fingerprint,
        state=ItemState(state),
        kind=kind,
        label=label,
        job_id=job_id,
        hooked=bool(hooked),
        files=tuple(paths),
        reason=reason,
        attempts=attempts,
        updated=float(updated),
    )


def _kind(value: object) -> str:
    """A damaged cell (or SQLite's report), short enough for a message."""
    text = repr(value)
    return text if len(text) <= 80 else f"{text[:77]}..."  # noqa: PLR2004


def _decode_text(data: bytes) -> str | bytes:
    """SQLite text as str; undecodable bytes (a damaged cell) stay bytes, for _entry to name."""
    try:
        return data.decode()
    except UnicodeDecodeError:
        return data


def _translate(
    exc: sqlite3.Error | UnicodeDecodeError, path: Path, what: str
) -> JournalCorruptError | StorageError:
    """The SDK's error for an SQLite error met while doing ``what``.

    A malformed file is :class:`JournalCorruptError` (so is an error message that is not
    even UTF-8: SQLite quotes a damaged schema in it); anything else (disk full,
    read-only, locked, I/O) is a local failure, :class:`StorageError`.
    """
    if isinstance(exc, UnicodeDecodeError):
        return JournalCorruptError(str(path), detail="its schema is not readable text")
    name = getattr(exc, "sqlite_errorname", None) or ""
    if name.startswith(_CORRUPT):
        return JournalCorruptError(str(path), detail=str(exc))
    code = next((e for prefix, e in _ERRNO.items() if name.startswith(prefix)), errno.EIO)
    err = StorageError(code, f"{what}: {exc}", str(path))
    err.__cause__ = exc
    return err


def _storable(text: str) -> str:
    # SQLite text is UTF-8; a lone surrogate (from a mis-decoded prompt or file name in
    # an error message) would make the write raise, losing the state change.
    try:
        text.encode()
    except UnicodeEncodeError:
        return text.encode(errors="replace").decode()
    return text


def _lock(path: Path) -> int | None:
    """Take an exclusive, non-blocking ``flock`` on ``path``; None where flock is missing."""
    if sys.platform == "win32":  # no flock: SQLite's own locking is all there is
        return None
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise ValidationError(
            "journal",
            str(path),
            "another process is running with this journal; wait for it or use another file",
        ) from None
    except BaseException:
        os.close(fd)
        raise
    return fd


def _unlock(fd: int | None) -> None:
    if fd is not None:
        os.close(fd)  # closing the descriptor releases its flock


def _create_private(path: Path) -> None:
    """Create ``path`` as an empty 0600 file if absent; reject a non-SQLite file.

    Creating it ourselves fixes the mode: SQLite gives the -wal and -shm files the
    database file's mode, and would otherwise create it with the umask's (often 0644).
    """
    # O_NONBLOCK: a FIFO at the path must be refused, not waited on for ever.
    flags = os.O_CREAT | os.O_RDWR | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
    fd = os.open(path, flags, _PRIVATE)
    try:
        # Only a regular file: a device node or a FIFO is no journal, and must not be
        # chmod-ed or written to (as root, /dev/null would become 0600).
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ValidationError("journal", str(path), "must be a regular file")
        header = os.read(fd, len(_SQLITE_MAGIC))
    finally:
        os.close(fd)
    # Empty is fine: SQLite treats an empty file as an empty database.
    if header and header != _SQLITE_MAGIC:
        raise ValidationError("journal", str(path), _NOT_SQLITE)


def _check_schema(conn: sqlite3.Connection, path: Path) -> bool:
    """Check that ``conn`` is a journal this version reads; True when it is empty (new)."""
    tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    if not tables:
        return True
    if not {"meta", "items"} <= tables:
        raise ValidationError("journal", str(path), _NOT_JOURNAL)
    try:
        meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
    except sqlite3.OperationalError:  # a "meta" table of another shape
        meta = {}
    if meta.get("app") != _APP:
        raise ValidationError("journal", str(path), _NOT_JOURNAL)
    version = meta.get("schema")
    if version != str(_SCHEMA):
        raise ValidationError(
            "journal",
            str(path),
            f"journal schema {version!r} is not one this ttapi-async reads (schema {_SCHEMA}); "
            "it was written by a newer version: upgrade ttapi-async, or use a new journal file",
        )
    return False


def _check_contents(conn: sqlite3.Connection, path: Path) -> str | None:
    """Check a journal's pages, rows and run id; return the run id (None if it has none).

    Reads only. Raises JournalCorruptError naming every damaged row, so a run refuses to
    start on a file it would misread (and sweeps, resets and removes nothing).
    """
    # A damaged schema can keep the table names and lose, say, ``idx``'s primary key.
    reference = sqlite3.connect(":memory:")
    try:
        for statement in _CREATE:
            reference.execute(statement)
        for table in ("meta", "items"):
            query = f"PRAGMA table_info({table})"
            if conn.execute(query).fetchall() != reference.execute(query).fetchall():
                raise JournalCorruptError(str(path), detail=f"its {table} table was altered")
    finally:
        reference.close()
    bad: list[int] = []
    first = ""
    for row in conn.execute(f"SELECT {_COLUMNS} FROM items ORDER BY idx"):  # noqa: S608 - constant column list
        try:
            _entry(row)
        except _DamagedRowError as exc:
            bad.append(row[0])
            first = first or f"row {row[0]}: {exc}"
    if bad:
        more = f" (and {len(bad) - 1} more damaged rows)" if len(bad) > 1 else ""
        raise JournalCorruptError(str(path), rows=tuple(bad), detail=first + more)
    # After the rows (which it would only call "CHECK constraint failed"): damage the
    # scan cannot see, in free pages or the meta table's index.
    problems = [row[0] for row in conn.execute("PRAGMA quick_check(20)")]
    if problems != ["ok"]:
        report = " ".join(str(problems[0]).split())  # a report of many lines: its start
        raise JournalCorruptError(str(path), detail=f"SQLite's check says: {_kind(report)}")
    found = conn.execute("SELECT value FROM meta WHERE key = 'run_id'").fetchone()
    if found is None:
        return None
    if not isinstance(found[0], str) or not _RUN_ID.fullmatch(found[0]):
        raise JournalCorruptError(str(path), detail=f"its run id {_kind(found[0])} is damaged")
    run_id: str = found[0]
    return run_id


def _tighten(path: Path) -> None:
    """Make the database and its -wal/-shm files owner-only if they are not."""
    for name in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
        try:
            mode = stat.S_IMODE(name.stat().st_mode)
        except FileNotFoundError:
            continue
        if mode & 0o077:
            name.chmod(_PRIVATE)
