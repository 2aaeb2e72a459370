"""What the emulator saw and did, counted for assertions in tests and benchmarks.

Strictly private; :class:`Counters` is public through :mod:`ttapi_async.testing`. It sits
at the bottom of the emulator's modules because every part (gateway, routes, jobs,
billing, files) adds to it.
"""

from __future__ import annotations

import collections
from typing import Any

import attrs


__all__ = ["Counters"]


@attrs.define
class Counters:
    """What the emulator saw and did, for assertions in tests and benchmarks."""

    #: API requests by path (unknown paths included; /files not counted here).
    requests: collections.Counter[str] = attrs.field(factory=collections.Counter)
    #: API responses by HTTP status (injected faults included; drops and /files not).
    responses: collections.Counter[int] = attrs.field(factory=collections.Counter)
    #: Accepted billable calls by path.
    billed: collections.Counter[str] = attrs.field(factory=collections.Counter)
    #: Accepted 4o submits and sync generations/edits by prompt: proves nothing ran twice.
    submits_by_prompt: collections.Counter[str] = attrs.field(factory=collections.Counter)
    #: Authenticated fetch requests.
    fetches: int = 0
    #: Callback POSTs attempted (each duplicate counts).
    callbacks_sent: int = 0
    #: Callback POSTs that raised or got a non-2xx answer.
    callbacks_failed: int = 0
    #: Callbacks skipped on purpose (``CallbackFaults.lose_rate``).
    callbacks_lost: int = 0
    #: Jobs called back twice on purpose (``CallbackFaults.duplicate_rate``).
    callbacks_duplicated: int = 0
    #: Jobs called back before their submit reply (``early_rate``, ``before_reply``).
    callbacks_early: int = 0
    #: Forged callback POSTs sent (``CallbackFaults.forge_rate``: two per job).
    callbacks_forged: int = 0
    #: Another job's callback sent to a job's hook URL (``CallbackFaults.cross_rate``).
    callbacks_crossed: int = 0
    #: Fetches answered with another job's body (``Fault(kind="swap")``).
    fetches_swapped: int = 0
    #: Image files served.
    files_served: int = 0
    #: Requests for image files past their ``url_ttl``.
    files_expired: int = 0
    #: Requests for image files that carried TT-API-KEY or Authorization (must stay 0).
    key_seen_on_files: int = 0
    #: Connections closed on purpose without a response.
    drops: int = 0
    #: Requests refused because their body was larger than ``max_body`` (HTTP 413).
    bodies_too_large: int = 0
    #: Requests whose body did not arrive within ``read_timeout`` (HTTP 408).
    bodies_timed_out: int = 0
    #: Highest in-flight count (running 4o jobs + sync calls) seen for one key.
    in_flight_peak: int = 0

    def snapshot(self) -> dict[str, Any]:
        """Return the counters as plain data (Counters turned into dicts)."""
        out: dict[str, Any] = {}
        for field in attrs.fields(Counters):
            value = getattr(self, field.name)
            out[field.name] = dict(value) if isinstance(value, collections.Counter) else value
        return out
