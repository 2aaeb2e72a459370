"""What several workers share through Redis, as plain values and bytes (sans-I/O).

Strictly private. :class:`~ttapi_async.RedisBroker` moves these over the wire; everything
here is pure, so the key layout, the records and the verdicts of the Lua scripts are
tested without Redis or an event loop.

Key layout (``P`` is the broker's prefix; the part in braces is a Redis Cluster hash tag,
so every key of one hook, or of one job, lands in one slot):

* ``P:hook:{D}``: a hook token's job id (``""`` until the submit returns). ``D`` is the
  SHA-256 of the token: the raw token is never stored, so reading Redis does not let
  anyone forge a callback.
* ``P:early:{D}``: callbacks that beat the submit's reply, a short list.
* ``P:confirm:{D}``: set by the one worker that confirms the job's callback (one fetch
  per job in the whole fleet, however many workers the duplicates land on).
* ``P:job:{J}``: a job's record (route, whether a callback is expected, submit time,
  the token's digest), so any worker can wait on any job.
* ``P:result:{J}``: a job's final state, kept ``result_ttl`` seconds for late readers.
* ``P:done``: the channel every final state is published on (one channel: a worker's
  subscription does not depend on which jobs it awaits, so nothing slips between a
  subscribe and a check). When a worker accepts a job's first callback, ``S:<job id>``
  goes out on it too: the worker awaiting the job then polls it itself after a grace
  period unless the outcome came first (the accepting worker may die while confirming).
* ``P:epoch``: a random value set once; if it vanishes, Redis lost its data.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any, Final

import attrs

from . import _json
from ._errors import ResponseFormatError, ValidationError
from ._models import JobSnapshot
from ._protocol import callback_snapshot


__all__ = [
    "BIND_SCRIPT",
    "CALLBACK_SCRIPT",
    "SEEN",
    "CallbackVerdict",
    "FleetKeys",
    "JobRecord",
    "callback_verdict",
    "decode_outcome",
    "encode_outcome",
    "token_digest",
]

_PREFIX_RULE: Final = re.compile(r"[A-Za-z0-9_.:-]{1,64}")

#: The start of a "callback seen" message on the channel (an outcome is a JSON object).
SEEN: Final = b"S:"


def token_digest(token: str) -> str:
    """The SHA-256 of a hook token, as stored in Redis instead of the token."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


@attrs.frozen
class FleetKeys:
    """The names of a broker's Redis keys under one ``prefix``."""

    prefix: str = attrs.field()

    @prefix.validator
    def _check(self, _: object, value: str) -> None:
        if not _PREFIX_RULE.fullmatch(value):
            raise ValidationError("prefix", value, "1-64 characters of letters, digits and _ . : -")

    @property
    def channel(self) -> str:
        """The channel of final states."""
        return f"{self.prefix}:done"

    @property
    def epoch(self) -> str:
        """The key whose disappearance says Redis lost its data."""
        return f"{self.prefix}:epoch"

    def hook(self, digest: str) -> tuple[str, str, str]:
        """The keys of one hook: its job id, its early callbacks, its confirm claim."""
        tag = "{" + digest + "}"
        return (
            f"{self.prefix}:hook:{tag}",
            f"{self.prefix}:early:{tag}",
            f"{self.prefix}:confirm:{tag}",
        )

    def job(self, job_id: str) -> str:
        """The key of a job's record."""
        return f"{self.prefix}:job:{{{job_id}}}"

    def result(self, job_id: str) -> str:
        """The key of a job's final state."""
        return f"{self.prefix}:result:{{{job_id}}}"


@attrs.frozen
class JobRecord:
    """What the fleet knows of a job it submitted.

    Attributes:
        job_id: the job's id.
        route: the job route that made it (``"4o-image"``).
        hooked: a callback is expected (the job was submitted with a hook URL).
        submitted_at: Unix time of the submit.
        hook: the SHA-256 of the job's hook token ("" without one); never the token.
    """

    job_id: str
    route: str
    hooked: bool
    submitted_at: float
    hook: str = ""

    def encode(self) -> bytes:
        """The record as stored in Redis."""
        return _json.dumps(
            {
                "job_id": self.job_id,
                "route": self.route,
                "hooked": self.hooked,
                "submitted_at": self.submitted_at,
                "hook": self.hook,
            }
        )

    @classmethod
    def decode(cls, data: bytes) -> JobRecord:
        """Read a stored record; a malformed one raises :class:`ResponseFormatError`."""
        try:
            obj = _json.loads(data)
            return cls(
                job_id=str(obj["job_id"]),
                route=str(obj["route"]),
                hooked=bool(obj["hooked"]),
                submitted_at=float(obj["submitted_at"]),
                hook=str(obj.get("hook", "")),
            )
        except (ValueError, TypeError, KeyError) as exc:
            raise ResponseFormatError("a malformed job record in Redis", status=0) from exc


def encode_outcome(snapshot: JobSnapshot, source: str) -> bytes:
    """A job's final state as stored and published: the fetch body's shape, plus ``source``.

    The hook URL is left out (it carries the token), and so is the HTTP metadata.
    """
    data: dict[str, Any] = {"jobId": snapshot.job_id}
    if snapshot.prompt is not None:
        data["prompt"] = snapshot.prompt
    if snapshot.refer_images:
        data["referImages"] = list(snapshot.refer_images)
    if snapshot.image_url is not None:
        data["imageUrl"] = snapshot.image_url
    if snapshot.quota is not None:
        data["quota"] = str(snapshot.quota)
    if snapshot.finish_time is not None:
        data["finishTime"] = snapshot.finish_time.isoformat()
    return _json.dumps(
        {
            "status": snapshot.raw_status or snapshot.status.value,
            "message": snapshot.message,
            "data": data,
            "source": source,
        }
    )


def decode_outcome(data: bytes) -> tuple[JobSnapshot, str]:
    """Read a stored or published final state: ``(snapshot, source)``.

    Raises:
        ResponseFormatError: not a job's state (another app on the channel, a bad write).
    """
    # Decoded once: every worker reads every published outcome.
    try:
        obj = _json.loads(data)
    except (ValueError, RecursionError) as exc:
        raise ResponseFormatError("a stored outcome is not JSON", status=200) from exc
    snap = callback_snapshot(obj)
    source = obj.get("source") if isinstance(obj, dict) else None
    return snap, source if isinstance(source, str) and source else "poll"


@attrs.frozen
class CallbackVerdict:
    """What :data:`CALLBACK_SCRIPT` decided about one callback.

    Attributes:
        status: the HTTP status to answer (200, 202, 400, 404).
        job_id: the job the token is bound to ("" when unbound or unknown).
        confirm: this worker won the right to act on the callback (first in the fleet).
    """

    status: int
    job_id: str = ""
    confirm: bool = False


def callback_verdict(reply: Any) -> CallbackVerdict:
    """Read the Lua script's reply (a list of status, job id, confirm flag)."""
    if not isinstance(reply, list | tuple) or not reply:
        raise ResponseFormatError("unexpected reply of the callback script", status=0)
    status = int(reply[0])
    job_id = reply[1] if len(reply) > 1 else b""
    job = job_id.decode() if isinstance(job_id, bytes) else str(job_id)
    confirm = len(reply) > 2 and int(reply[2]) == 1  # noqa: PLR2004
    return CallbackVerdict(status, job, confirm)


#: KEYS: hook, early, confirm. ARGV: the callback's job id, its body, how many early
#: callbacks to keep, seconds the confirm claim lasts, the channel (the first acceptance
#: is announced there as ``S:<job id>``).
#: Returns {404} unknown token, {202} kept until the submit returns, {400, job} another
#: job's token, {200, job, 1} first in the fleet, {200, job, 0} a duplicate.
CALLBACK_SCRIPT: Final = """
local bound = redis.call('GET', KEYS[1])
if not bound then return {404} end
if bound == '' then
  redis.call('RPUSH', KEYS[2], ARGV[2])
  redis.call('LTRIM', KEYS[2], -tonumber(ARGV[3]), -1)
  local ttl = redis.call('PTTL', KEYS[1])
  if ttl > 0 then redis.call('PEXPIRE', KEYS[2], ttl) end
  return {202}
end
if bound ~= ARGV[1] then return {400, bound} end
if redis.call('SET', KEYS[3], '1', 'NX', 'EX', ARGV[4]) then
  redis.call('PUBLISH', ARGV[5], 'S:' .. bound)
  return {200, bound, 1}
end
return {200, bound, 0}
"""

#: KEYS: hook, early, confirm. ARGV: the job id, seconds the hook lives, seconds the
#: confirm claim lasts. Binds the token to its job and hands back the early callbacks
#: (claiming the confirmation when there are any), in one step: a callback is either kept
#: before the bind and returned here, or sees the bound job, never neither.
BIND_SCRIPT: Final = """
local ttl = redis.call('PTTL', KEYS[1])
if ttl > 0 then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ttl)
else
  redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
end
local early = redis.call('LRANGE', KEYS[2], 0, -1)
redis.call('DEL', KEYS[2])
if #early > 0 then redis.call('SET', KEYS[3], '1', 'NX', 'EX', ARGV[3]) end
return early
"""
