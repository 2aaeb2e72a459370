"""Fault injection for the emulator: what can go wrong, described as small plain records.

Strictly private; :class:`Fault` and :class:`CallbackFaults` are public through
:mod:`ttapi_async.testing`. The emulator owns the server and the jobs, so it carries the
faults out; this module holds only their descriptions and the few pure helpers that pick
and shape them, so :mod:`._emulator` stays about TTAPI itself.

Two families:

* :class:`Fault`, per request and matched by route: a status instead of the reply (429
  with or without ``Retry-After``, 499, 5xx with a JSON or an HTML body), a dropped
  connection, a truncated JSON body, extra latency (a hanging reply), or a fetch answered
  with another job's body. Each fires before the request is processed (nothing billed,
  no job) or after (billed, job created, reply lost: the "accepted but unknown" case).
* :class:`CallbackFaults`, per job with a ``hookUrl``: callbacks lost, duplicated, delayed,
  early (before the submit reply), forged (by someone who does not hold the job's token),
  or cross-job (another job's body on this job's hook URL).
"""

from __future__ import annotations

import random
import secrets
from typing import Any, Final, Literal

import attrs


__all__ = [
    "CallbackFaults",
    "Fault",
    "FaultKind",
    "chance",
    "forged_body",
    "pick",
    "wrong_token_url",
]

FaultKind = Literal["status", "drop", "malformed", "latency", "swap"]
_KINDS: Final = ("status", "drop", "malformed", "latency", "swap")


@attrs.define
class Fault:
    """One injected failure, matched per request by route.

    ``after_accept=False`` replaces the reply before anything is processed (nothing is
    billed or created). ``after_accept=True`` processes the request in full (billed, job
    created, counters updated) and only then replaces the reply: the "outcome unknown"
    case a careful client must not retry blindly. A ``latency`` fault adds ``delay``
    seconds before handling (or, with ``after_accept``, before replying: a hanging reply
    for a job that exists) and combines with any other fault; of the other kinds, the
    first one that fires wins.

    Kinds: ``status`` answers ``status`` (the route's error shape, or ``body``);
    ``drop`` closes the connection with no response; ``malformed`` answers 200 with a
    truncated JSON body; ``latency`` waits ``delay``; ``swap`` (fetch route only, always
    after processing) answers a successful fetch with the body of *another* job of the
    same key, an ended one when there is one: the reply's ``jobId`` is not the one asked.
    """

    #: Exact path (``"/v1/images/generations"``), or ``"*"`` for every API route (never /files).
    route: str = "*"
    #: What happens: see the class docstring.
    kind: FaultKind = attrs.field(default="status", validator=attrs.validators.in_(_KINDS))
    #: HTTP status of a ``status`` fault; the body has the route's error shape.
    status: int = 500
    #: Body of a ``status`` or ``malformed`` fault, instead of the default.
    body: bytes | None = None
    #: Content-Type of ``body`` (default ``application/json``), e.g. ``"text/html"`` for a
    #: gateway's error page.
    content_type: str | None = None
    #: Chance per matching request, drawn from the emulator's seeded RNG.
    rate: float = 1.0
    #: Fire at most this many times, then stay inert (None: unlimited).
    count: int | None = None
    #: Extra seconds of a ``latency`` fault.
    delay: float = 0.0
    #: Process the request first, then replace its reply.
    after_accept: bool = False
    #: Seconds sent in a ``Retry-After`` header with a ``status`` fault.
    retry_after: float | None = None
    #: How many times the fault fired.
    fired: int = 0

    @property
    def processes_first(self) -> bool:
        """True when the request is handled before this fault replaces its reply."""
        return self.after_accept or self.kind == "swap"


@attrs.define
class CallbackFaults:
    """How the emulator misbehaves when it delivers ``hookUrl`` callbacks.

    Each rate is a chance per job with a hook URL, drawn from the emulator's seeded RNG.
    """

    #: Share of callbacks never delivered.
    lose_rate: float = 0.0
    #: Share of callbacks delivered twice (receivers must be idempotent on jobId).
    duplicate_rate: float = 0.0
    #: Extra seconds between the end of a job and its callback.
    delay: float = 0.0
    #: Every job with a hook URL ends at once and its callback is delivered (and answered)
    #: before the submit reply is written; the same as ``early_rate=1.0``.
    before_reply: bool = False
    #: Seconds one delivery may take before it counts as failed.
    timeout: float = 10.0
    #: Share of jobs that end at once with their callback delivered before the submit
    #: reply (the receiver must keep it until it learns the job id).
    early_rate: float = 0.0
    #: Share of jobs that get two forged callbacks right after the submit, while they
    #: run: a SUCCESS on a made-up token of the same receiver, and a SUCCESS on the job's
    #: own hook URL whose image belongs to no job. The genuine callback follows as usual.
    forge_rate: float = 0.0
    #: Share of jobs whose hook URL first receives the callback body of another job of the
    #: same key (an ended one when there is one), then the job's own callback.
    cross_rate: float = 0.0


def chance(rate: float, rng: random.Random) -> bool:
    """Draw one chance of ``rate``; no draw at all for 0, so a seed's other draws stay put."""
    return rate > 0 and rng.random() < rate


def pick(faults: list[Fault], path: str, rng: random.Random) -> tuple[Fault | None, float, float]:
    """Pick the fault that replaces a request's reply; sum the latency before and after."""
    chosen: Fault | None = None
    before = after = 0.0
    for fault in faults:
        if fault.route not in {"*", path}:
            continue
        if fault.count is not None and fault.fired >= fault.count:
            continue
        if fault.kind != "latency" and chosen is not None:
            continue
        if fault.rate < 1.0 and rng.random() >= fault.rate:
            continue
        fault.fired += 1
        if fault.kind == "latency":
            if fault.after_accept:
                after += fault.delay
            else:
                before += fault.delay
        else:
            chosen = fault
    return chosen, before, after


def wrong_token_url(hook_url: str) -> str:
    """The hook URL with its last path segment (the token) replaced by a made-up one."""
    base, _, _ = hook_url.rstrip("/").rpartition("/")
    return f"{base}/{secrets.token_urlsafe(24)}"


def forged_body(job_body: dict[str, Any], image_url: str) -> dict[str, Any]:
    """A job's callback body claiming SUCCESS with ``image_url``, whatever its real state."""
    data = dict(job_body["data"])
    data.update(imageUrl=image_url, quota="2", finishTime=data.get("finishTime"))
    return {**job_body, "status": "SUCCESS", "message": "success", "data": data}
