"""Money and queue places: what an accepted call costs, and the work in flight per key.

Strictly private; :class:`Charge` is public through :mod:`ttapi_async.testing`. TTAPI
answers 402 when the balance cannot pay for a call and 499 when the key's queue is full
(wire §2.3); both are decided here, before anything is created. The ledger
(:attr:`Billing.charges`) is the server's own record of what it accepted and billed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final, Protocol

import attrs


if TYPE_CHECKING:
    from ._counters import Counters


__all__ = ["COST_4O", "Billing", "BillingKnobs", "Charge"]

#: What a 4o-image job costs (its fetch body reports it as ``"quota": "2"``, wire §7.2);
#: a synchronous call costs 1 per image asked for.
COST_4O: Final = 2


@attrs.frozen
class Charge:
    """One billed call, as the emulator's ledger (``Emulator.charges``) keeps it.

    The ledger is the server's own record of what it accepted and billed, independent of
    anything a client counts: a fault matrix reads from it how many times each prompt
    was accepted, and under which job ids.
    """

    #: The route billed (``"/openai/4o-image/generations"``, ``"/v1/images/edits"``, ...).
    path: str
    #: The prompt of the accepted request.
    prompt: str
    #: What was taken from the balance.
    cost: float
    #: The 4o job created (None for a synchronous call).
    job_id: str | None = None


class BillingKnobs(Protocol):
    """The emulator's settings billing reads (and the balance it draws down)."""

    #: Quota left; None is unlimited.
    balance: float | None
    #: Per key, running 4o jobs plus sync calls in progress; None is unlimited.
    max_in_flight: int | None


class Billing:
    """Bills accepted calls against the balance and holds their in-flight places per key."""

    def __init__(self, knobs: BillingKnobs, counters: Counters) -> None:
        """Bill against ``knobs.balance`` (read at each call: it may change at runtime)."""
        self._knobs = knobs
        self._counters = counters
        #: Every billed call, in order.
        self.charges: list[Charge] = []
        #: Running 4o jobs plus sync calls in progress, per key (absent when none).
        self.in_flight: dict[str, int] = {}

    def admit(self, key: str, cost: float, path: str) -> int | None:
        """Bill an accepted call and take an in-flight place; or the status that refuses it.

        Returns:
            None when admitted, 402 when the balance cannot pay ``cost``, 499 when the
            key's queue is full. A refused call is not billed.
        """
        knobs = self._knobs
        balance = knobs.balance
        if balance is not None and balance < cost:
            return 402
        current = self.in_flight.get(key, 0)
        cap = knobs.max_in_flight
        if cap is not None and current >= cap:
            return 499
        current += 1
        self.in_flight[key] = current
        counters = self._counters
        counters.in_flight_peak = max(counters.in_flight_peak, current)
        if balance is not None:
            knobs.balance = balance - cost
        counters.billed[path] += 1
        return None

    def record(self, path: str, prompt: str, cost: float, job_id: str | None = None) -> None:
        """Write an admitted call into the ledger."""
        self.charges.append(Charge(path, prompt, cost, job_id))

    def release(self, key: str) -> None:
        """Give back one in-flight place of ``key`` (a sync call answered, a job ended)."""
        left = self.in_flight.get(key, 0) - 1
        if left > 0:
            self.in_flight[key] = left
        else:
            self.in_flight.pop(key, None)
