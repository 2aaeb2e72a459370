"""Fast waits for tests: quick polling and near-zero retry backoff, like stamina's test mode.

A client made with the defaults polls a 4o job one second after submitting it, then about
every second, and backs off half a second and more before retrying a failed call: right
for TTAPI, where jobs take 20-90 s, but the emulator's jobs take a tenth of a second, so a
test suite would spend its time asleep. While fast waits are on, a client created without
``poll_policy=`` polls on :data:`FAST_POLL_POLICY`, and one created without ``retry=``
backs off a hundredth of a second (its ``max_retries`` and the rest are kept), as does a
bulk run resubmitting after a 429 or 499. What is passed explicitly always wins, and
``Retry-After`` is still honoured: it is the server's word. The policies are chosen when a
client is created, and a client keeps the ones it got. The setting is per process: a child
process (a CLI run, say) turns it on for itself.

Unlike ``stamina.set_testing``, this neither caps the attempts nor zeroes the sleeps of an
explicit policy, so tests of the retry rules still see them as they are.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Final

from ttapi_async import _limits, _polling, _retry
from ttapi_async._polling import PollPolicy
from ttapi_async._retry import RetryPolicy


__all__ = ["FAST_POLL_POLICY", "fast_waits", "fast_waits_enabled", "set_fast_waits"]

#: The poll policy of clients created without one while fast waits are on: first poll after
#: 20 ms, then every 20-50 ms where jobs finish, at most 0.2 s apart when backing off, a
#: half-second backstop behind a webhook receiver, and callbacks re-confirmed 10-50 ms
#: apart. Jobs of 0.05-0.15 s on the emulator are seen done 0-50 ms after they end, in two
#: or three fetches each.
FAST_POLL_POLICY: Final = PollPolicy(
    initial_delay=0.02,
    max_interval=0.2,
    dense_interval=0.05,
    min_dense_interval=0.02,
    backstop_interval=0.5,
    coalesce=0.005,
    confirm_retry=RetryPolicy(max_retries=100, initial_delay=0.01, max_delay=0.05),
)
# (initial_delay, max_delay) of the retry policy of clients created without ``retry=``;
# the first also starts a bulk run's backoff after a 429/499 without Retry-After.
_FAST_BACKOFF: Final = (0.01, 0.05)
_BUSY_INITIAL: Final = _limits._busy_initial  # noqa: SLF001 - the default, to restore


def set_fast_waits(on: bool) -> None:
    """Turn fast waits on or off for clients created from now on (see the module's doc)."""
    _polling._default_policy = FAST_POLL_POLICY if on else None  # noqa: SLF001
    _retry._default_backoff = _FAST_BACKOFF if on else None  # noqa: SLF001
    _limits._busy_initial = _FAST_BACKOFF[0] if on else _BUSY_INITIAL  # noqa: SLF001


def fast_waits_enabled() -> bool:
    """True while fast waits are on."""
    return _polling._default_policy is not None  # noqa: SLF001


@contextlib.contextmanager
def fast_waits(on: bool = True) -> Iterator[None]:
    """Fast waits (or, with ``False``, the defaults) inside the block; the old setting after.

    ::

        with fast_waits():
            async with Client(emu.api_key, base_url=emu.url) as client:
                ...  # polls every few hundredths of a second
    """
    before = fast_waits_enabled()
    set_fast_waits(on)
    try:
        yield
    finally:
        set_fast_waits(before)
