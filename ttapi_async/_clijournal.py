"""Which journal a ``ttapi-async batch`` run uses, and whether it belongs to the input.

Strictly private: command-line policy over :mod:`ttapi_async._journal`.

Every input has its own default journal, ``OUT/ttapi-journal-<file name>-<kind>.sqlite``,
so the README's second example does not meet the journal of its first in the same
``--out``. A journal whose rows were written for other inputs is found before anything
is sent (a dry run included), and the message says the two ways out: another
``--journal`` for this input, or ``--fresh`` to set the old journal aside and start over.
Before per-input names, every run used ``OUT/ttapi-journal.sqlite``; a rerun after an
upgrade still resumes that file when it holds this input, rather than starting again
(and submitting everything a second time).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import attrs

from ._journal import read_states, set_aside
from ._journalstore import ItemState
from ._requests import Request, fingerprint


__all__ = [
    "LEGACY_NAME",
    "JournalPlan",
    "SharedRun",
    "default_journal",
    "mismatch",
    "plan_journal",
]

#: The one default journal name before each input had its own.
LEGACY_NAME = "ttapi-journal.sqlite"


@attrs.frozen
class SharedRun:
    """A run shared through Redis: where, its name, the lease, each item's line number."""

    url: str
    run: str
    lease: float
    lines: list[int]


@attrs.frozen
class JournalPlan:
    """The journal a run will use, and what to tell the user about it first.

    Attributes:
        path: the journal file.
        notes: lines to print before the run starts (a legacy journal resumed, an old
            journal set aside).
        resumable: rows this input already has in the journal, by state.
    """

    path: Path
    notes: tuple[str, ...] = ()
    resumable: Mapping[ItemState, int] = attrs.Factory(dict)


class JournalClashError(Exception):
    """The journal was written for other inputs; the message says what to do."""


#: Characters of the input's name kept in a journal's name: with the prefix, the kind and a
#: ``--fresh`` suffix the whole stays far below the 255 bytes a file name may have.
_NAME_KEPT = 80


def default_journal(out: Path, prompts_file: Path, kind: str) -> Path:
    """``OUT/ttapi-journal-<file name>-<kind>.sqlite``: one journal per input and kind."""
    # The file's name, not its path: the same command run from another folder, or with the
    # file moved, still finds its journal. Characters a file name cannot hold are replaced;
    # a long name is cut, and a digest of the whole keeps two long names apart.
    name = re.sub(r"[^\w.+-]+", "_", prompts_file.name) or "input"
    if len(name.encode()) > _NAME_KEPT:
        digest = hashlib.sha256(prompts_file.name.encode("utf-8", "surrogatepass")).hexdigest()
        name = name.encode()[: _NAME_KEPT - 9].decode("utf-8", "ignore") + "-" + digest[:8]
    return out / f"ttapi-journal-{name}-{kind}.sqlite"


Rows = dict[int, tuple[str, ItemState]]


def mismatch(rows: Rows, requests: Sequence[Request]) -> tuple[int, int] | None:
    """The first of a journal's ``rows`` written for another input, and how many are.

    None when every row matches the input at its index (rows past the end of a shortened
    input are never run, so they agree).
    """
    bad = _differing(rows, requests)
    return (min(bad), len(bad)) if bad else None


def _rows(path: Path) -> Rows:
    """The journal's rows, read once; a file that is not a journal is a clash."""
    rows = read_states(path)
    if rows is None:
        raise JournalClashError(
            f"the journal {path} cannot be read as a journal (damaged, or another kind of "
            "file). To keep it, give this run its own: --journal OTHER.sqlite. To start "
            "this input over: --fresh (the file is kept beside it as a .bak file)."
        )
    return rows


def _differing(rows: Rows, requests: Sequence[Request]) -> list[int]:
    """The rows written for another input than ``requests`` holds at their index."""
    return [
        index
        for index, (stored, _state) in rows.items()
        if index < len(requests) and stored != fingerprint(requests[index])
    ]


def _counts(rows: Rows, total: int) -> dict[ItemState, int]:
    counts: dict[ItemState, int] = {}
    for index, (_stored, state) in rows.items():
        if index < total:
            counts[state] = counts.get(state, 0) + 1
    return counts


def plan_journal(
    *,
    out: Path,
    prompts_file: Path,
    kind: str,
    requests: Sequence[Request],
    lines: Sequence[int],
    given: str | None,
    fresh: bool,
    dry_run: bool,
    now: dt.datetime | None = None,
) -> JournalPlan:
    """Choose the journal of a run, checking it belongs to ``requests``.

    ``given`` is ``--journal`` (None: the default); ``fresh`` sets an existing journal
    aside first (not on a dry run, which only says it would). ``lines`` are the input's
    line numbers, for the message.

    Raises:
        JournalClashError: ``fresh`` is off, and the journal holds rows of other inputs or
            cannot be read as a journal.
    """
    notes: list[str] = []
    if given:
        path = Path(given)
    else:
        path = default_journal(out, prompts_file, kind)
        legacy = out / LEGACY_NAME
        if not fresh and not path.exists():
            old = read_states(legacy)  # None (not a journal) or {} (none): not adopted
            if old and mismatch(old, requests) is None:
                # Written by an earlier version for this very input: resume it.
                notes.append(
                    f"resuming {legacy} (the journal's name before each input had its own)"
                )
                path = legacy
    if fresh and path.exists():
        if dry_run:
            notes.append(f"--fresh would set {path} aside and start this input over")
            return JournalPlan(path, tuple(notes))
        stamp = (now or dt.datetime.now(dt.UTC)).strftime("%Y%m%dT%H%M%SZ")
        counts = _counts(read_states(path) or {}, len(requests))  # a damaged one has none
        moved = set_aside(path, stamp)
        unfinished = counts.get(ItemState.SUBMITTED, 0)
        notes.append(
            f"--fresh: set the old journal aside as {moved}; this input starts over"
            + (
                f" ({unfinished} job(s) it had submitted may still finish at TTAPI; "
                "they are in that file)"
                if unfinished
                else ""
            )
        )
        return JournalPlan(path, tuple(notes))
    rows = _rows(path)
    clash = mismatch(rows, requests)
    if clash is not None:
        first, count = clash
        line = lines[first] if first < len(lines) else first + 1
        raise JournalClashError(
            f"the journal {path} was written for another input: {count} of its rows "
            f"differ from {prompts_file.name}, the first at row {first} (line {line}). "
            f"Resuming it would mix two runs. To keep it, give this run its own: "
            f"--journal OTHER.sqlite. To start this input over: --fresh (the old journal "
            f"is kept beside it as a .bak file)."
        )
    return JournalPlan(path, tuple(notes), _counts(rows, len(requests)))
