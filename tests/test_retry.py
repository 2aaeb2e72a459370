"""The retry policy as a pure function: which errors are retried, and after how long."""

from __future__ import annotations

import random

import pytest

import ttapi_async as tt
from ttapi_async._errors import status_error
from ttapi_async._retry import RetryPolicy, backoff, is_outcome_unknown


POLICY = RetryPolicy(max_retries=3, initial_delay=0.5, max_delay=4.0, jitter=0.0)


def rate_limited(retry_after: float | None = None) -> tt.RateLimitError:
    err = status_error(429, "slow down", retry_after=retry_after)
    assert isinstance(err, tt.RateLimitError)
    return err


def test_backoff_doubles_and_caps() -> None:
    """Delays double from initial_delay and stop at max_delay."""
    assert [POLICY.backoff(i) for i in range(1, 6)] == [0.5, 1.0, 2.0, 4.0, 4.0]


def test_one_backoff_formula() -> None:
    """Doubling from ``initial`` to ``cap``, jitter only shortening it; RetryPolicy's is it."""
    assert [backoff(n, 0.5, 4.0) for n in range(1, 6)] == [0.5, 1.0, 2.0, 4.0, 4.0]
    assert backoff(100_000, 0.5, 4.0) == 4.0  # no overflow however long failures go on
    draw = random.Random(5).random()
    assert backoff(2, 0.5, 4.0, jitter=0.25, rng=random.Random(5)) == 1.0 * (1 - 0.25 * draw)
    policy = RetryPolicy(initial_delay=0.5, max_delay=4.0, jitter=0.25)
    for n in (1, 3, 9):
        expected = backoff(n, 0.5, 4.0, jitter=0.25, rng=random.Random(n))
        assert policy.backoff(n, random.Random(n)) == expected


def test_jitter_stays_in_band() -> None:
    """Jitter scales the delay by a factor in [1 - jitter, 1]."""
    policy = RetryPolicy(jitter=0.25, initial_delay=1.0)
    rng = random.Random(7)
    delays = [policy.backoff(1, rng) for _ in range(200)]
    assert min(delays) >= 0.75
    assert max(delays) <= 1.0
    assert len(set(delays)) > 100


@pytest.mark.parametrize("billable", [True, False])
def test_refusals_before_acceptance_are_retried(billable: bool) -> None:
    """Connect errors, 429 and 499 are retried for every call: nothing was accepted."""
    for exc in (tt.ConnectError("refused"), rate_limited(), status_error(499, "full")):
        assert POLICY.delay(exc, 1, billable=billable, remaining=None) == 0.5


def test_retry_after_is_honoured_up_to_the_cap() -> None:
    """A Retry-After hint replaces the backoff; one above the cap surfaces the error."""
    assert POLICY.delay(rate_limited(3.0), 1, billable=True, remaining=None) == 3.0
    assert POLICY.delay(rate_limited(61.0), 1, billable=True, remaining=None) is None
    capped = RetryPolicy(max_retry_after=120.0)
    assert capped.delay(rate_limited(61.0), 1, billable=True, remaining=None) == 61.0


def test_wait_beyond_the_deadline_gives_up_now() -> None:
    """A retry that cannot finish before the deadline is not attempted."""
    assert POLICY.delay(rate_limited(5.0), 1, billable=True, remaining=4.0) is None
    assert POLICY.delay(rate_limited(5.0), 1, billable=True, remaining=6.0) == 5.0


@pytest.mark.parametrize(
    "exc",
    [
        status_error(500, "boom"),
        status_error(504, "gateway"),
        tt.ConnectionDroppedError("reset"),
        tt.RequestTimeout("slow", request_sent=True),
        tt.ResponseFormatError("garbage", status=200),
    ],
)
def test_unknown_outcomes_retried_only_when_free_or_opted_in(exc: tt.TTAPIError) -> None:
    """5xx, drops, sent timeouts and garbage are retried for fetches, never for billable calls."""
    assert POLICY.delay(exc, 1, billable=False, remaining=None) == 0.5
    assert POLICY.delay(exc, 1, billable=True, remaining=None) is None
    assert is_outcome_unknown(exc)
    opted = RetryPolicy(retry_unknown_outcome=True, jitter=0.0)
    assert opted.delay(exc, 1, billable=True, remaining=None) == 0.5


@pytest.mark.parametrize(
    "exc",
    [
        status_error(400, "bad"),
        status_error(401, "key"),
        status_error(402, "balance"),
        status_error(403, "blocked"),
        status_error(404, "missing"),
        status_error(429, "quota", code="insufficient_quota", error_type="insufficient_quota"),
        status_error(400, "no", code="moderation_blocked"),
        tt.ValidationError("n", 0, "1 to 10"),
        ValueError("not ours"),
    ],
)
def test_definite_errors_are_never_retried(exc: Exception) -> None:
    """Client errors, billing errors and policy refusals are final."""
    assert POLICY.delay(exc, 1, billable=False, remaining=None) is None
    assert not is_outcome_unknown(exc)


def test_insufficient_quota_is_billing_not_rate_limit() -> None:
    """OpenAI's 429 insufficient_quota is a balance error, not a rate limit."""
    err = status_error(429, "quota", code="insufficient_quota")
    assert isinstance(err, tt.InsufficientBalanceError)
    assert not isinstance(err, tt.RateLimitError)


def test_retries_stop_at_max() -> None:
    """No retry beyond max_retries."""
    assert POLICY.delay(tt.ConnectError("x"), 3, billable=True, remaining=None) == 2.0
    assert POLICY.delay(tt.ConnectError("x"), 4, billable=True, remaining=None) is None
    assert (
        RetryPolicy(max_retries=0).delay(tt.ConnectError("x"), 1, billable=True, remaining=None)
        is None
    )


def test_connect_error_before_send_is_not_unknown() -> None:
    """A request that never left is not an unknown outcome, nor is a timeout before sending."""
    assert not is_outcome_unknown(tt.ConnectError("refused"))
    assert not is_outcome_unknown(tt.RequestTimeout("pool", request_sent=False))
