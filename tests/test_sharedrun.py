"""A shared run's rows and keys as plain values (no Redis, no event loop)."""

from __future__ import annotations

import json

import pytest

import ttapi_async as tt
from ttapi_async._journalstore import TRANSITIONS, ItemState, JournalEntry
from ttapi_async._sharedrun import RunKeys, changes, decode_row, encode_row, new_row


def test_every_key_of_a_run_shares_one_hash_tag() -> None:
    keys = RunKeys("app", "covers-2026")
    names = [keys.meta, keys.rows, keys.claims, keys.fence]
    assert {name.split("}")[0] + "}" for name in names} == {"{app:run:covers-2026}"}
    assert len(set(names)) == 4
    assert RunKeys("app", "a").rows != RunKeys("app", "b").rows
    assert RunKeys("app", "a").rows != RunKeys("other", "a").rows


@pytest.mark.parametrize("name", ["", "a b", "x" * 65, "a/b", "{a}", "a:b"])
def test_a_bad_run_name_is_refused_by_name(name: str) -> None:
    with pytest.raises(tt.ValidationError, match="run"):
        RunKeys("app", name)


def test_a_row_round_trips() -> None:
    entry = JournalEntry(
        index=3,
        fingerprint="f" * 16,
        state=ItemState.SUBMITTED,
        kind="4o",
        label="a fox",
        job_id="j-1",
        hooked=True,
        files=("a.png", "b.png"),
        reason=None,
        attempts=2,
        updated=1700000000.25,
    )
    assert decode_row(3, encode_row(entry), "here") == entry


def test_a_new_row_is_pending_with_no_attempt() -> None:
    row = decode_row(0, new_row("f1", "4o", "label"), "here")
    assert (row.state, row.attempts, row.job_id, row.files) == (ItemState.PENDING, 0, None, ())


@pytest.mark.parametrize("data", [b"", b"[]", b"{}", b'{"state": "nope"}', b"\xff"])
def test_a_damaged_row_names_itself(data: bytes) -> None:
    with pytest.raises(tt.JournalCorruptError) as info:
        decode_row(7, data, "redis://h run 'r'")
    assert info.value.rows == (7,)


@pytest.mark.parametrize("new", list(ItemState))
def test_changes_allow_exactly_the_table_sources(new: ItemState) -> None:
    allowed, _ = changes(new, job_id="j", hooked=True, files=["f"], reason="r")
    expected = {old.value for old, targets in TRANSITIONS.items() if new in targets}
    assert set(allowed.split(",")) == expected


def test_changes_write_what_each_state_records() -> None:
    def fields(new: ItemState) -> dict[str, object]:
        _, data = changes(new, job_id="j", hooked=True, files=["f.png"], reason="why")
        obj: dict[str, object] = json.loads(data)
        del obj["updated"]
        return obj

    cleared: dict[str, object] = {"job_id": None, "hooked": False, "files": [], "reason": None}
    assert fields(ItemState.SUBMITTING) == {"state": "submitting", **cleared}
    assert fields(ItemState.PENDING) == {"state": "pending", **cleared}
    assert fields(ItemState.SUBMITTED) == {
        "state": "submitted",
        "job_id": "j",
        "hooked": True,
        "reason": None,
    }
    assert fields(ItemState.DONE) == {"state": "done", "files": ["f.png"], "reason": None}
    # failed and outcome_unknown keep the job id: only the reason is written.
    assert fields(ItemState.FAILED) == {"state": "failed", "reason": "why"}
    assert fields(ItemState.OUTCOME_UNKNOWN) == {"state": "outcome_unknown", "reason": "why"}
