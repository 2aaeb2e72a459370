"""The journal's protocol and transition table (``ttapi_async._journalstore``).

The table first (pure: no event loop, no file), then a bulk run over a second, in-memory
implementation of the protocol: what the runner needs of a store is the protocol, not
SQLite, and a store shared by several workers leaves the items another worker claimed.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest
from bulk_helpers import client_for, generations, prompts

import ttapi_async as tt
from ttapi_async import ItemState, JournalEntry, JournalTransitionError, ValidationError
from ttapi_async._journalstore import (
    TRANSITIONS,
    JournalStore,
    check_transition,
    recorded,
    sources,
)
from ttapi_async.testing import Emulator


P, SG, SD, D, F, U = (
    ItemState.PENDING,
    ItemState.SUBMITTING,
    ItemState.SUBMITTED,
    ItemState.DONE,
    ItemState.FAILED,
    ItemState.OUTCOME_UNKNOWN,
)

#: Moves the bulk runner makes (recorded over tests/test_bulk*.py, test_resume.py,
#: test_cli.py, test_faults.py, test_secrets.py and test_examples.py, plus failed ->
#: failed, which test_items.py covers: a retried job whose image still cannot be saved).
BY_THE_RUNNER = {
    (P, SG),
    (SG, SG),
    (SG, SD),
    (SG, D),
    (SG, F),
    (SG, U),
    (SG, P),
    (SD, D),
    (SD, F),
    (F, P),
    (F, D),
    (F, F),
    (U, P),
}
#: Moves the state diagram documents (and the recovery of a crashed run's rows).
DOCUMENTED = {(P, SG), (SG, SD), (SG, D), (SG, F), (SG, U), (SD, D), (SD, F)}
#: Resets: back to pending from every state, as ``Journal.reset`` documents.
RESETS = {(state, P) for state in ItemState}
#: Moves only the journal's own tests make (test_journal.py, test_properties_files.py).
BY_JOURNAL_TESTS = {(P, D), (P, F), (P, U), (U, SG)}


def test_the_table_is_what_the_runner_does_and_the_docs_say() -> None:
    table = {(old, new) for old, allowed in TRANSITIONS.items() for new in allowed}
    assert set(TRANSITIONS) == set(ItemState)
    assert table == BY_THE_RUNNER | DOCUMENTED | RESETS | BY_JOURNAL_TESTS


def test_done_is_final_but_for_a_reset() -> None:
    assert TRANSITIONS[D] == {P}
    # A crashed run's submitting rows are recovered as unknown when the journal opens.
    assert U in TRANSITIONS[SG]


@pytest.mark.parametrize("new", list(ItemState))
def test_sources_read_the_table_backwards(new: ItemState) -> None:
    assert sources(new) == {old for old in ItemState if new in TRANSITIONS[old]}


def test_a_legal_move_passes_and_an_illegal_one_names_the_row_and_both_states() -> None:
    check_transition(SG, SD, index=3)
    with pytest.raises(JournalTransitionError) as info:
        check_transition(SD, SG, index=3)
    err = info.value
    assert isinstance(err, ValidationError)
    assert (err.param, err.value, err.index, err.old, err.new) == (
        "index",
        3,
        3,
        "submitted",
        "submitting",
    )
    assert str(err) == "index=3: journal row 3 cannot go from submitted to submitting"
    with pytest.raises(JournalTransitionError, match=r"from done to failed \(its images"):
        check_transition(D, F, index=0)


@pytest.mark.parametrize(
    ("new", "job_id", "reason", "param"),
    [
        (ItemState.SUBMITTED, None, "r", "job_id"),
        (ItemState.SUBMITTED, "", None, "job_id"),
        (ItemState.FAILED, "j", None, "reason"),
        (ItemState.OUTCOME_UNKNOWN, "j", None, "reason"),
    ],
)
def test_a_move_without_what_it_records_is_refused(
    new: ItemState, job_id: str | None, reason: str | None, param: str
) -> None:
    with pytest.raises(ValidationError) as info:
        recorded(new, job_id=job_id, reason=reason)
    assert info.value.param == param
    assert f"required to record {new.value}" in str(info.value)


def test_a_move_records_its_job_id_or_reason_and_nothing_else() -> None:
    assert recorded(ItemState.SUBMITTED, job_id="j1", reason=None) == "j1"
    assert recorded(ItemState.FAILED, job_id="j1", reason="policy") == "policy"
    assert recorded(ItemState.OUTCOME_UNKNOWN, job_id=None, reason="") == ""
    assert recorded(ItemState.DONE, job_id="j1", reason="x") == ""


class MemoryStore:
    """A second JournalStore: rows in a dict, transitions checked, claims granted by rule."""

    def __init__(self, refuse: frozenset[int] = frozenset()) -> None:
        self.rows: dict[int, JournalEntry] = {}
        self.moves: list[tuple[int, ItemState, ItemState]] = []
        self.refuse = refuse  # items another worker holds
        self.claimed: set[int] = set()
        self.closed = False

    @property
    def run_id(self) -> str | None:
        return None

    async def load(self) -> Mapping[int, JournalEntry]:
        return dict(self.rows)

    async def begin(self, index: int, fingerprint: str, kind: str, label: str) -> JournalEntry:
        if index not in self.rows:
            self.rows[index] = JournalEntry(
                index=index,
                fingerprint=fingerprint,
                state=P,
                kind=kind,
                label=label,
                job_id=None,
                hooked=False,
                files=(),
                reason=None,
                attempts=0,
                updated=0.0,
            )
        return self.rows[index]

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
        old = self.rows[index]
        check_transition(old.state, new, index=index)
        assert index in self.claimed  # the runner writes only what it claimed
        self.moves.append((index, old.state, new))
        self.rows[index] = JournalEntry(
            index=index,
            fingerprint=old.fingerprint,
            state=new,
            kind=old.kind,
            label=old.label,
            job_id=job_id or (old.job_id if new in {D, F, U} else None),
            hooked=hooked,
            files=tuple(files),
            reason=reason,
            attempts=old.attempts + (new is SG),
            updated=0.0,
        )

    async def claim(self, index: int) -> bool:
        if index in self.refuse:
            return False
        self.claimed.add(index)
        return True

    async def renew(self, index: int) -> bool:
        return index in self.claimed

    async def release(self, index: int) -> bool:
        held = index in self.claimed
        self.claimed.discard(index)
        return held

    async def aclose(self) -> None:
        self.closed = True


PROTOCOL = ("load", "begin", "transition", "claim", "renew", "release", "aclose")


def test_the_sqlite_journal_and_the_memory_store_are_journal_stores(tmp_path: Path) -> None:
    with tt.Journal.open(tmp_path / "j.sqlite") as journal:
        stores: list[JournalStore] = [MemoryStore(), journal]
        for store in stores:
            assert all(inspect.iscoroutinefunction(getattr(store, m)) for m in PROTOCOL)
        assert journal.run_id is not None


@pytest.mark.anyio
async def test_a_run_writes_through_any_journal_store(emulator: Emulator) -> None:
    """A bulk run over a store that is not SQLite: every move legal, every claim let go,
    and the store stays open (it is the caller's)."""
    store = MemoryStore()
    reqs: list[tt.Request] = [*prompts(3), *generations(2)]
    async with client_for(emulator) as c, c.bulk(reqs, journal=store) as run:
        got = {o.index: o async for o in run}
    assert all(o.ok for o in got.values())
    assert {i: e.state for i, e in (await store.load()).items()} == dict.fromkeys(range(5), D)
    assert {(old, new) for _, old, new in store.moves} == {(P, SG), (SG, SD), (SD, D), (SG, D)}
    assert store.claimed == set()
    assert not store.closed
    assert [store.rows[i].job_id == got[i].job_id for i in range(3)] == [True] * 3


@pytest.mark.anyio
async def test_items_another_worker_claimed_are_left_to_it(emulator: Emulator) -> None:
    """A claim refused (a shared store: another worker holds the lease) skips the item:
    never sent, never handed back, and in ordered mode it holds nothing back."""
    store = MemoryStore(refuse=frozenset({0, 2}))
    async with client_for(emulator) as c:
        async with c.bulk(prompts(4), journal=store, ordered=True) as run:
            got = [o async for o in run]
    assert [o.index for o in got] == [1, 3]
    assert all(o.ok for o in got)
    assert emulator.counters.submits_by_prompt == {"p 1": 1, "p 3": 1}
    assert set(store.rows) == {1, 3}
