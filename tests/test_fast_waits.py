"""ttapi_async.testing's fast waits: quick default policies for new clients, nothing else.

The suite runs with them on (tests/conftest.py); tests marked ``default_waits`` opt out.
"""

from __future__ import annotations

import anyio
import pytest

import ttapi_async as tt
from ttapi_async._limits import busy_backoff
from ttapi_async.testing import (
    FAST_POLL_POLICY,
    Emulator,
    Fault,
    fast_waits,
    fast_waits_enabled,
    set_fast_waits,
)


FETCH = "/openai/4o-image/fetch"


def offline_client(**kwargs: object) -> tt.Client:
    """A client that is never opened: only its chosen policies are looked at."""
    return tt.Client("test-key-123", base_url="http://127.0.0.1:9", **kwargs)  # type: ignore[arg-type]


@pytest.mark.anyio
async def test_a_client_without_a_poll_policy_sees_a_quick_job_done_at_once(
    emulator: Emulator,
) -> None:
    """A 50 ms job is seen done long before the default policy's first poll (after 0.95-1 s)."""
    assert fast_waits_enabled()  # the suite's autouse fixture
    emulator.job_duration = 0.05
    async with tt.Client(emulator.api_key, base_url=emulator.url) as c:
        assert c.waiter.policy == FAST_POLL_POLICY
        start = anyio.current_time()
        result = await c.gpt4o.generate(prompt="quick", timeout=10)
        waited = anyio.current_time() - start
    assert result.source == "poll"
    assert waited < 0.6


@pytest.mark.anyio
async def test_a_client_without_retry_retries_at_once_but_honours_retry_after(
    emulator: Emulator,
) -> None:
    """A 502 is retried after about 10 ms (the default backs off 0.375-0.5 s first); a 429's
    ``Retry-After`` (0.2 s, four times the fast backoff's longest) is still waited out; the
    client's own retry settings are kept."""
    async with tt.Client(emulator.api_key, base_url=emulator.url, max_retries=3) as c:
        assert (c.retry.max_retries, c.retry.initial_delay) == (3, 0.01)
        job = (await c.gpt4o.submit(prompt="retried")).job_id
        emulator.add_fault(Fault(route=FETCH, status=502, count=1))
        start = anyio.current_time()
        await c.gpt4o.fetch(job)
        assert anyio.current_time() - start < 0.3
        emulator.add_fault(Fault(route=FETCH, status=429, count=1, retry_after=0.2))
        start = anyio.current_time()
        await c.gpt4o.fetch(job)
        assert anyio.current_time() - start >= 0.2
        assert c.stats.retries == 2


def test_explicit_policies_always_win() -> None:
    """``poll_policy=`` and ``retry=`` are kept as given, fast waits or not."""
    poll = tt.PollPolicy(initial_delay=2.0)
    retry = tt.RetryPolicy(initial_delay=0.7)
    for on in (True, False):
        with fast_waits(on):
            c = offline_client(poll_policy=poll, retry=retry)
            assert c.waiter.policy is poll
            assert c.retry is retry


def test_a_bulk_resubmit_after_a_refusal_waits_briefly_but_honours_retry_after() -> None:
    """busy_backoff without ``initial``: from 10 ms under fast waits, 0.5 s without."""
    assert busy_backoff(1, None) <= 0.01
    assert busy_backoff(1, 2.5) == 2.5
    with fast_waits(on=False):
        assert 0.25 <= busy_backoff(1, None) <= 0.5


@pytest.mark.default_waits
def test_the_defaults_come_back_after_the_block() -> None:
    """A ``default_waits`` test starts with the defaults; each block restores what it found,
    even when it ends with an error, and ``set_fast_waits`` turns them on and off."""
    assert not fast_waits_enabled()
    default_retry = tt.RetryPolicy(max_retries=2)

    def assert_defaults() -> None:
        c = offline_client()
        assert c.waiter.policy == tt.PollPolicy()
        assert c.retry == default_retry
        assert busy_backoff(1, None) >= 0.25

    assert_defaults()
    with pytest.raises(LookupError), fast_waits():
        c = offline_client(max_retries=1)
        assert c.waiter.policy == FAST_POLL_POLICY
        assert c.retry.max_retries == 1
        assert c.retry.max_delay <= 0.05
        with fast_waits(on=False):
            assert_defaults()
        assert fast_waits_enabled()
        raise LookupError
    assert not fast_waits_enabled()
    assert_defaults()
    set_fast_waits(True)
    try:
        assert offline_client().waiter.policy == FAST_POLL_POLICY
    finally:
        set_fast_waits(False)
    assert_defaults()
