"""The poll schedule as a pure function of age, last gap and learned durations."""

from __future__ import annotations

import random

import attrs
import pytest

from ttapi_async import AuthenticationError, PollPolicy, RateLimitError, RetryPolicy, ServerError
from ttapi_async._polling import (
    DurationModel,
    dense_gap,
    next_poll_delay,
    poll_error_delay,
    reconfirm_delay,
)


NO_JITTER = PollPolicy(jitter=0.0, dense_interval=1.0)


def learned(low: float, high: float, n: int = 400) -> DurationModel:
    model = DurationModel(window=512)
    rng = random.Random(3)
    for _ in range(n):
        model.add(rng.uniform(low, high))
    return model


def test_cold_start_backs_off_to_the_cap() -> None:
    """Before anything is learned, gaps grow by `growth` from initial_delay up to max_interval."""
    model = DurationModel()
    gaps = []
    last = None
    for _ in range(8):
        last = next_poll_delay(0.0, last, model, NO_JITTER)
        gaps.append(round(last, 3))
    assert gaps == [1.0, 1.5, 2.25, 3.375, 5.062, 7.594, 8.0, 8.0]


def test_fixed_policy_never_changes() -> None:
    """PollPolicy.fixed polls at one interval whatever is learned."""
    policy = PollPolicy.fixed(1.0)
    model = learned(20, 90)
    assert {next_poll_delay(age, 1.0, model, policy) for age in (0, 30, 200)} == {1.0}


def test_learned_schedule_skips_the_dead_time() -> None:
    """A young job's first poll lands one dense gap past the early edge of learned durations."""
    model = learned(20, 90)
    first = next_poll_delay(0.0, None, model, NO_JITTER)
    assert first == model.early_edge(0.01) + 1.0
    assert 21.0 <= first <= 23.0
    assert next_poll_delay(5.0, None, model, NO_JITTER) == first - 5.0


def test_dense_where_jobs_finish_and_backoff_when_late() -> None:
    """Inside the learned range polls are dense; past it they back off to the cap."""
    model = learned(20, 90)
    assert next_poll_delay(50.0, 1.0, model, NO_JITTER) == 1.0
    late = next_poll_delay(95.0, 1.0, model, NO_JITTER)
    assert late == 1.5
    assert next_poll_delay(200.0, 7.0, model, NO_JITTER) == 8.0


def test_few_samples_give_the_early_edge_but_no_late_backoff() -> None:
    """A few durations already place the first poll; the late edge needs min_samples."""
    model = learned(20, 90, n=5)
    assert next_poll_delay(0.0, None, model, NO_JITTER) == model.early_edge(0.0) + 1.0
    assert next_poll_delay(200.0, 1.0, model, NO_JITTER) == 1.0


def test_jitter_spreads_polls() -> None:
    """Jitter keeps thousands of jobs from polling in lock step, within its band."""
    policy = PollPolicy(jitter=0.2)
    rng = random.Random(1)
    delays = [next_poll_delay(0.0, None, DurationModel(), policy, rng) for _ in range(300)]
    assert 0.8 <= min(delays) < 0.82
    assert 0.98 < max(delays) <= 1.0


def test_duration_model_window_and_quantiles() -> None:
    """The model keeps the most recent `window` durations, sorted."""
    model = DurationModel(window=3)
    for d in (5.0, 1.0, 9.0, 7.0, -1.0):
        model.add(d)
    assert len(model) == 3  # 5.0 was forgotten; the negative one ignored
    assert model.quantile(0.0) == 1.0
    assert model.quantile(0.99) == 9.0
    assert DurationModel().quantile(0.5) == 0.0


def test_late_edge_not_trusted_while_young() -> None:
    """Early on only quick jobs have finished, so the late edge is underestimated: no backoff."""
    model = learned(1.5, 2.0)  # the quick jobs of a batch are the only ones seen so far
    # Neither backing off nor narrowing the dense gap to what the quick jobs suggest...
    assert next_poll_delay(4.0, 1.0, model, NO_JITTER, observed=3.0) == 1.0
    # ...until the waiter has watched long enough to trust the late edge.
    assert next_poll_delay(4.0, 1.0, model, NO_JITTER, observed=60.0) == 1.5


def test_dense_gap_follows_the_learned_spread() -> None:
    """Short, tight jobs are polled finely; long, wide ones at the 1 s cap."""
    assert dense_gap(DurationModel(), NO_JITTER) == 1.0  # nothing learned yet
    assert dense_gap(learned(1, 3), NO_JITTER) == pytest.approx(0.25, abs=0.01)
    assert dense_gap(learned(2, 10), NO_JITTER) == pytest.approx(0.97, abs=0.03)
    assert dense_gap(learned(20, 90), NO_JITTER) == 1.0
    assert dense_gap(learned(5.0, 5.1), NO_JITTER) == 0.25  # never below the floor
    # For 1-3 s jobs the first poll lands one fine gap past the ~1 s edge, not a second.
    first = next_poll_delay(0.0, None, learned(1, 3), NO_JITTER)
    assert 1.1 < first < 1.35
    # Learned from the quick jobs only (watched for less than twice the longest): the cap.
    assert dense_gap(learned(1, 3), NO_JITTER, observed=5.0) == 1.0
    assert dense_gap(learned(1, 3), NO_JITTER, observed=6.5) == pytest.approx(0.25, abs=0.01)
    wide = PollPolicy(jitter=0.0, dense_interval=1.0, dense_fraction=1.0)
    assert dense_gap(learned(1, 3), wide) == 1.0  # the fraction is a knob


def test_a_job_in_the_zone_never_sleeps_again() -> None:
    """Once polled past the edge, a job stays dense even if the learned edge moves up."""
    model = learned(20, 90)
    assert next_poll_delay(10.0, 1.0, model, NO_JITTER) > 10.0
    assert next_poll_delay(10.0, 1.0, model, NO_JITTER, in_zone=True) == 1.0


def test_early_edge_remembers_the_shortest_jobs() -> None:
    """The early edge comes from all durations seen, not from a window of recent ones."""
    model = DurationModel(window=10)
    for d in (20.0, 21.0, 22.0):
        model.add(d)
    for _ in range(50):
        model.add(80.0)  # a burst drains: only slow jobs finish now
    assert model.quantile(0.01) == 80.0
    assert model.early_edge(0.01) == 19.0  # 20, stepped back by the spacing to 21


STEADY = PollPolicy(
    confirm_retry=RetryPolicy(max_retries=100, initial_delay=0.25, max_delay=4.0, jitter=0.0)
)


def confirm_schedule(policy: PollPolicy, error: BaseException | None = None) -> list[float]:
    """The gaps between confirming fetches after a callback the fetch keeps denying."""
    gaps: list[float] = []
    since = 0.0
    while (gap := reconfirm_delay(len(gaps) + 1, since, policy, error)) is not None:
        gaps.append(gap)
        since += gap
    return gaps


def test_a_callback_is_reconfirmed_soon_then_left_to_the_backstop() -> None:
    """A fetch lagging behind a callback is asked again at 0.25, 0.5, 1, 2, 4, 4 ... s."""
    gaps = confirm_schedule(STEADY)
    assert gaps[:6] == [0.25, 0.5, 1.0, 2.0, 4.0, 4.0]
    assert set(gaps[4:]) == {4.0}
    assert sum(gaps) <= STEADY.confirm_window < sum(gaps) + 4.0  # then the normal schedule
    assert len(gaps) == 18
    # The default jitter only shortens gaps: never later, a few more fetches at most.
    jittered_gaps = confirm_schedule(PollPolicy())
    assert all(j <= s for j, s in zip(jittered_gaps, gaps, strict=False))
    assert max(jittered_gaps) <= 4.0


def test_reconfirm_honours_retry_after_and_gives_up_on_lasting_errors() -> None:
    """A 429's Retry-After sets the gap; 5xx back off; a 401 or the window's end stop."""
    limited = RateLimitError("slow down", status=429)
    limited.retry_after = 1.0
    assert reconfirm_delay(1, 0.5, STEADY, limited) == 1.0
    assert reconfirm_delay(3, 0.5, STEADY, ServerError("bad gateway", status=502)) == 1.0
    assert reconfirm_delay(1, 0.5, STEADY, AuthenticationError("no", status=401)) is None
    assert reconfirm_delay(1, 59.5, STEADY, limited) is None  # would land past the window
    assert reconfirm_delay(1, 59.9, STEADY) is None
    assert reconfirm_delay(1, 0.0, PollPolicy(confirm_window=0.0)) is None  # turned off
    few = PollPolicy(confirm_retry=attrs.evolve(STEADY.confirm_retry, max_retries=2))
    assert confirm_schedule(few) == [0.25, 0.5]


def test_failed_polls_back_off_from_twice_the_dense_gap() -> None:
    """2, 4, 8 ... dense gaps, at most 64 of them and max_interval; Retry-After and a
    hooked job's backstop only ever lengthen the wait."""
    err = ServerError("bad gateway", status=502)
    fine = PollPolicy(dense_interval=0.05, max_interval=8.0)
    delays = [poll_error_delay(n, fine, err, hooked=False) for n in (1, 2, 3, 6, 7, 100)]
    assert delays == [0.1, 0.2, 0.4, 3.2, 3.2, 3.2]
    assert [poll_error_delay(n, NO_JITTER, err, hooked=False) for n in (1, 2, 3, 4)] == [
        2.0,
        4.0,
        8.0,
        8.0,
    ]
    assert poll_error_delay(1, NO_JITTER, err, hooked=True) == NO_JITTER.backstop_interval
    limited = RateLimitError("slow down", status=429)
    limited.retry_after = 12.0
    assert poll_error_delay(1, NO_JITTER, limited, hooked=False) == 12.0
    limited.retry_after = 0.5
    assert poll_error_delay(1, NO_JITTER, limited, hooked=False) == 2.0
