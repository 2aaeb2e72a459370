"""What a bulk run's journal is: its item states, their legal moves, and the store protocol.

Strictly private. :class:`ItemState` and :class:`JournalEntry` are public through
``ttapi_async``; :class:`JournalStore` is the protocol the bulk runner talks to, of which
:class:`~ttapi_async.Journal` (SQLite, one process) is the first implementation. A second
one (Redis, shared by several workers) plugs in behind the same methods, so they are
``async`` and shaped for a store that is remote: every write is one call that checks the
transition where the row lives, and a worker *claims* an item (a lease, renewed while it
works on it) before running it.

Each row moves through :class:`ItemState` as :data:`TRANSITIONS` allows::

    pending ──> submitting ──> submitted ──> done
                  │  ↺             │
                  ├──> done        └──> failed ──> done    (a retry saved its job's image)
                  ├──> failed             ↺                (the retry failed again)
                  ├──> outcome_unknown ──> submitting
                  └──> pending    (refused: 429/499/401/402/403, or stopped before a retry)

    pending ──> failed            (an error before sending: a rule, a budget timeout)
    pending ──> done, outcome_unknown    (written by the journal's own tests only)
    every state ──> pending       (a reset: to retry, or to resubmit)

``submitting`` is written before each attempt is sent (so again on a retry). ``done`` is
final but for a reset: its images exist, so it never becomes ``failed`` or
``outcome_unknown``. A new row starts ``pending``; a row a crashed run left in
``submitting`` becomes ``outcome_unknown`` when the journal is opened again.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from typing import Final, Protocol

import attrs

from ._errors import JournalTransitionError, ValidationError


__all__ = [
    "TRANSITIONS",
    "ItemState",
    "JournalEntry",
    "JournalStore",
    "check_transition",
    "recorded",
    "sources",
]


class ItemState(enum.StrEnum):
    """Where one input of a bulk run stands; the values are what the journal stores."""

    PENDING = "pending"
    """Not sent yet (or handed back by :meth:`Journal.reset`)."""
    SUBMITTING = "submitting"
    """Written just before the request is sent; its answer is not recorded yet."""
    SUBMITTED = "submitted"
    """A 4o job was accepted; ``job_id`` names it."""
    DONE = "done"
    """The images are saved; ``files`` lists them."""
    FAILED = "failed"
    """It ended with a definite error; ``reason`` says which."""
    OUTCOME_UNKNOWN = "outcome_unknown"
    """It may have been accepted and billed, with no answer to say; ``reason`` says why."""


@attrs.frozen
class JournalEntry:
    """One journal row: what the journal knows about one input of a bulk run.

    Attributes:
        index: the input's position, 0-based.
        fingerprint: a hash of the request, to detect a changed input file.
        state: where the input stands.
        kind: ``"4o"``, ``"generate"``, ``"edit"`` or ``"dalle3"``.
        label: a short human label (a prompt excerpt) for reports.
        job_id: the 4o job id, once a job was accepted (kept when it then fails).
        hooked: the job was submitted with a hook URL (the URL itself is never stored).
        files: the saved file paths, once done.
        reason: why it failed or why its outcome is unknown.
        attempts: how many times it was moved to ``submitting``.
        updated: ``time.time()`` of the last change.
    """

    index: int
    fingerprint: str
    state: ItemState
    kind: str
    label: str
    job_id: str | None
    hooked: bool
    files: tuple[str, ...]
    reason: str | None
    attempts: int
    updated: float


_PENDING, _SUBMITTING, _SUBMITTED, _DONE, _FAILED, _UNKNOWN = ItemState

#: ``{state: the states a row in it may be written to}``: the moves the bulk runner makes,
#: the ones the diagram above documents, and what the journal's own tests write.
TRANSITIONS: Final[Mapping[ItemState, frozenset[ItemState]]] = {
    # Sent (submitting), or: failed before sending (a rule, a budget timeout).
    _PENDING: frozenset({_PENDING, _SUBMITTING, _FAILED, _DONE, _UNKNOWN}),
    # Each attempt of the client's retries writes submitting again; then its answer, or
    # a refusal (429/499/401/402/403) that puts it back to pending.
    _SUBMITTING: frozenset({_PENDING, _SUBMITTING, _SUBMITTED, _DONE, _FAILED, _UNKNOWN}),
    _SUBMITTED: frozenset({_PENDING, _DONE, _FAILED}),
    # Its images exist: only a reset moves it.
    _DONE: frozenset({_PENDING}),
    # A retry of a job whose image was not saved: saved now, or failed again.
    _FAILED: frozenset({_PENDING, _DONE, _FAILED}),
    _UNKNOWN: frozenset({_PENDING, _SUBMITTING}),
}


def sources(new: ItemState) -> frozenset[ItemState]:
    """The states a row may be in to be written to ``new`` (the table read backwards)."""
    return _SOURCES[new]


_SOURCES: Final = {
    new: frozenset(old for old, allowed in TRANSITIONS.items() if new in allowed)
    for new in ItemState
}

_DONE_HINT: Final = "its images are saved; reset() it first to run it again"


def check_transition(old: ItemState, new: ItemState, *, index: int) -> None:
    """Raise :class:`JournalTransitionError` unless row ``index`` may go from ``old`` to ``new``."""
    if new not in TRANSITIONS[old]:
        hint = _DONE_HINT if old is ItemState.DONE else ""
        raise JournalTransitionError(index, old.value, new.value, hint=hint)


def recorded(new: ItemState, *, job_id: str | None, reason: str | None) -> str:
    """The text a move to ``new`` records: a job id, a reason, or "" for none.

    ``submitted`` records its job id; ``failed`` and ``outcome_unknown`` their reason.
    Both stores check a transition here, before writing, so they refuse the same moves.

    Raises:
        ValidationError: ``new`` records a job id or a reason and the move has none.
    """
    if new is ItemState.SUBMITTED:
        if not job_id:
            raise ValidationError("job_id", job_id, "required to record submitted")
        return job_id
    if new in (ItemState.FAILED, ItemState.OUTCOME_UNKNOWN):
        if reason is None:
            raise ValidationError("reason", reason, f"required to record {new.value}")
        return reason
    return ""


class JournalStore(Protocol):
    """A bulk run's journal, as the runner uses it: one row per input, moved by transitions.

    Every write checks :data:`TRANSITIONS` where the row lives and raises
    :class:`~ttapi_async.JournalTransitionError` for an illegal move (a missing row:
    :class:`~ttapi_async.ValidationError`). Every method has committed when it returns:
    the runner writes ``submitting`` before a request goes out and relies on it after a
    crash.

    Several workers may share one store (a remote one): each :meth:`claim` s an item
    before running it, holds the claim as a lease (:meth:`renew`) while it works, and
    :meth:`release` s it once the item's outcome is written. A local store, used by one
    process at a time, grants every claim.

    Attributes:
        run_id: the journal's run id, shared by every run of it (16 hex digits); it tags
            the run's temporary files so a resumed run sweeps its own leftovers. None:
            such files are not tagged.
    """

    @property
    def run_id(self) -> str | None:
        """The journal's run id (see the class docstring)."""
        ...

    async def load(self) -> Mapping[int, JournalEntry]:
        """Every row, by index."""
        ...

    async def begin(self, index: int, fingerprint: str, kind: str, label: str) -> JournalEntry:
        """Add input ``index`` as pending, or return its row unchanged if it exists.

        Raises:
            ValidationError: the row exists with another fingerprint (other inputs).
        """
        ...

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
        """Move row ``index`` to ``new``, with what that state records.

        ``submitting`` counts an attempt and clears an earlier attempt's job id, files
        and reason; ``submitted`` needs ``job_id`` (and ``hooked``); ``done`` takes
        ``files`` and keeps the job id; ``failed`` and ``outcome_unknown`` need
        ``reason`` and keep the job id; ``pending`` clears all but the attempts.
        """
        ...

    async def claim(self, index: int) -> bool:
        """Take item ``index`` for this worker; False if another worker holds it."""
        ...

    async def renew(self, index: int) -> bool:
        """Extend this worker's claim on ``index``; False if it was lost meanwhile."""
        ...

    async def release(self, index: int) -> bool:
        """Let go of the claim on ``index``; False if this worker did not hold it."""
        ...

    async def aclose(self) -> None:
        """Close the store (idempotent)."""
        ...
