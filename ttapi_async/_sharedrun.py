"""A bulk run's journal as Redis holds it, as plain values and Lua text (sans-I/O).

Strictly private; :class:`~ttapi_async.RedisJournal` moves these over the wire. Every key
of one run shares the hash tag ``{P:run:NAME}``, so each script touches one Redis
Cluster slot. The keys:

* ``...:meta``: the run id and when the run began.
* ``...:rows``: a hash, input index to its row (JSON, the fields of
  :class:`~ttapi_async.JournalEntry`).
* ``...:claims``: a hash, input index to ``owner|fence|expires_ms``: who holds the item,
  with which fencing number, until when (Redis time).
* ``...:fence``: a counter; every claim takes the next number.

A claim is a lease: it lapses unless renewed. Every write to a row is *fenced*: it
succeeds only if the writer still holds the row's claim with the same fencing number and
the lease has not lapsed, checked inside Redis in the same script as the write. A worker
paused past its lease (GC, SIGSTOP) therefore cannot write ``submitting``, so it never
sends for an item another worker took over.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from typing import Any, Final

import attrs

from . import _json
from ._errors import JournalCorruptError, ValidationError
from ._journalstore import ItemState, JournalEntry, sources


__all__ = [
    "BEGIN_SCRIPT",
    "CLAIM_SCRIPT",
    "FINAL_STATES",
    "RELEASE_SCRIPT",
    "RENEW_SCRIPT",
    "TRANSITION_SCRIPT",
    "RunKeys",
    "changes",
    "decode_row",
    "encode_row",
]

_NAME_RULE: Final = re.compile(r"[A-Za-z0-9_.-]{1,64}")

#: The states an item of a shared run ends in (the run is over once every row is in one).
FINAL_STATES: Final = frozenset({ItemState.DONE, ItemState.FAILED, ItemState.OUTCOME_UNKNOWN})


@attrs.frozen
class RunKeys:
    """The Redis keys of one shared run ``run`` under ``prefix``."""

    prefix: str
    run: str = attrs.field()

    @run.validator
    def _check(self, _: object, value: str) -> None:
        if not _NAME_RULE.fullmatch(value):
            raise ValidationError("run", value, "1-64 characters of letters, digits and _ . -")

    @property
    def _base(self) -> str:
        return f"{{{self.prefix}:run:{self.run}}}"

    @property
    def meta(self) -> str:
        """The run's id and start time."""
        return f"{self._base}:meta"

    @property
    def rows(self) -> str:
        """Index to row."""
        return f"{self._base}:rows"

    @property
    def claims(self) -> str:
        """Index to ``owner|fence|expires_ms``."""
        return f"{self._base}:claims"

    @property
    def fence(self) -> str:
        """The fencing counter."""
        return f"{self._base}:fence"


def encode_row(entry: JournalEntry) -> bytes:
    """A row as stored."""
    return _json.dumps(
        {
            "fingerprint": entry.fingerprint,
            "state": entry.state.value,
            "kind": entry.kind,
            "label": entry.label,
            "job_id": entry.job_id,
            "hooked": entry.hooked,
            "files": list(entry.files),
            "reason": entry.reason,
            "attempts": entry.attempts,
            "updated": entry.updated,
        }
    )


def decode_row(index: int, data: bytes | str, where: str) -> JournalEntry:
    """Read a stored row; a damaged one raises :class:`JournalCorruptError` naming it."""
    try:
        obj = _json.loads(data)
        return JournalEntry(
            index=index,
            fingerprint=str(obj["fingerprint"]),
            state=ItemState(obj["state"]),
            kind=str(obj["kind"]),
            label=str(obj["label"]),
            job_id=None if obj.get("job_id") is None else str(obj["job_id"]),
            hooked=bool(obj.get("hooked")),
            files=tuple(str(f) for f in obj.get("files") or ()),
            reason=None if obj.get("reason") is None else str(obj["reason"]),
            attempts=int(obj.get("attempts", 0)),
            updated=float(obj.get("updated", 0.0)),
        )
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise JournalCorruptError(where, (index,), "a row is not a journal row") from exc


def new_row(fingerprint: str, kind: str, label: str) -> bytes:
    """A new pending row."""
    entry = JournalEntry(
        index=0,
        fingerprint=fingerprint,
        state=ItemState.PENDING,
        kind=kind,
        label=label,
        job_id=None,
        hooked=False,
        files=(),
        reason=None,
        attempts=0,
        updated=time.time(),
    )
    return encode_row(entry)


def changes(
    new: ItemState,
    *,
    job_id: str | None,
    hooked: bool,
    files: Sequence[str],
    reason: str | None,
) -> tuple[str, bytes]:
    """What moving a row to ``new`` writes: its allowed sources, and the fields to set.

    The states a row may come from, comma-separated, and the fields as JSON, as
    :meth:`Journal.transition` writes them in SQLite; ``submitting`` also counts an
    attempt (the script adds one).
    """
    fields: dict[str, Any] = {"state": new.value, "updated": time.time()}
    if new in (ItemState.SUBMITTING, ItemState.PENDING):
        fields |= {"job_id": None, "hooked": False, "files": [], "reason": None}
    elif new is ItemState.SUBMITTED:
        fields |= {"job_id": job_id, "hooked": hooked, "reason": None}
    elif new is ItemState.DONE:
        fields |= {"files": list(files), "reason": None}
    else:  # failed, outcome_unknown: the job id stays
        fields |= {"reason": reason}
    allowed = ",".join(sorted(state.value for state in sources(new)))
    return allowed, _json.dumps(fields)


# Shared by the scripts below: the claim of row ARGV[1] held by ARGV[2] with fence ARGV[3]
# and not lapsed, by Redis's own clock (one clock for every worker).
_NOW_MS: Final = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""
_HELD: Final = """
local function held(claim)
  if not claim then return false end
  local owner, fence, expires = string.match(claim, '^(.*)|(%d+)|(%d+)$')
  return owner == ARGV[2] and fence == ARGV[3] and tonumber(expires) > now
end
"""

#: KEYS: claims, fence, rows. ARGV: index, owner, lease ms, the reason an item caught in
#: ``submitting`` gets. Returns the fencing number (> 0), or 0 when another worker holds a
#: live claim. A row left ``submitting`` by a worker whose claim lapsed becomes
#: ``outcome_unknown`` in the same step (it may have been sent), as SQLite's do on open.
CLAIM_SCRIPT: Final = (
    _NOW_MS
    + """
local claim = redis.call('HGET', KEYS[1], ARGV[1])
if claim then
  local owner, fence, expires = string.match(claim, '^(.*)|(%d+)|(%d+)$')
  if owner ~= ARGV[2] and tonumber(expires) > now then return 0 end
end
local fence = redis.call('INCR', KEYS[2])
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2] .. '|' .. fence .. '|' .. (now + tonumber(ARGV[3])))
local raw = redis.call('HGET', KEYS[3], ARGV[1])
if raw then
  local row = cjson.decode(raw)
  if row.state == 'submitting' then
    row.state = 'outcome_unknown'
    row.reason = ARGV[4]
    row.updated = now / 1000
    redis.call('HSET', KEYS[3], ARGV[1], cjson.encode(row))
  end
end
return fence
"""
)

#: KEYS: claims. ARGV: index, owner, fence, lease ms. 1: extended; 0: lost (lapsed or
#: taken over).
RENEW_SCRIPT: Final = (
    _NOW_MS
    + _HELD
    + """
if not held(redis.call('HGET', KEYS[1], ARGV[1])) then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2] .. '|' .. ARGV[3] .. '|' .. (now + tonumber(ARGV[4])))
return 1
"""
)

#: KEYS: claims. ARGV: index, owner, fence. 1: released; 0: not held.
RELEASE_SCRIPT: Final = (
    _NOW_MS
    + _HELD
    + """
if not held(redis.call('HGET', KEYS[1], ARGV[1])) then return 0 end
redis.call('HDEL', KEYS[1], ARGV[1])
return 1
"""
)

#: KEYS: rows, claims. ARGV: index, owner, fence, allowed states (comma-separated), the
#: fields to set (JSON). Returns {'ok'}, {'lost'}, {'missing'} or {'illegal', state}.
TRANSITION_SCRIPT: Final = (
    _NOW_MS
    + _HELD
    + """
if not held(redis.call('HGET', KEYS[2], ARGV[1])) then return {'lost'} end
local raw = redis.call('HGET', KEYS[1], ARGV[1])
if not raw then return {'missing'} end
local row = cjson.decode(raw)
if not string.find(',' .. ARGV[4] .. ',', ',' .. row.state .. ',', 1, true) then
  return {'illegal', row.state}
end
local fields = cjson.decode(ARGV[5])
for key, value in pairs(fields) do row[key] = value end
if row.state == 'submitting' then row.attempts = (row.attempts or 0) + 1 end
redis.call('HSET', KEYS[1], ARGV[1], cjson.encode(row))
return {'ok'}
"""
)

#: KEYS: rows. ARGV: index, the new row. Adds it unless it exists; returns the stored row.
BEGIN_SCRIPT: Final = """
redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2])
return redis.call('HGET', KEYS[1], ARGV[1])
"""
