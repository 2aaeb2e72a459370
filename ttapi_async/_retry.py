"""When to retry an HTTP call, and how long to wait: a pure policy over errors.

Strictly private. The loop itself is stamina's (``stamina.retry_context``); this module only
decides, so the rules are tested without a server or a clock.

The one rule that matters: **a billable call is never retried when it may have been
accepted.** TTAPI has no idempotency key, so a second POST after an unknown outcome can
bill twice. A billable call (generate, edit, DALL-E 3, 4o submit) is retried only when:

* no connection was made, so the request was never written (:class:`ConnectError`), or
* the server refused it before accepting it: 429 (rate limit) or 499 (queue full).

A fetch is free and idempotent, so it is also retried on 5xx, dropped connections and
malformed bodies. ``insufficient_quota`` and 402 are never retried: waiting does not refill
a balance.
"""

from __future__ import annotations

import random
from typing import Final

import attrs

from ._errors import (
    APIConnectionError,
    ConnectError,
    QueueFullError,
    RateLimitError,
    ResponseFormatError,
    ServerError,
    TTAPIError,
)


__all__ = ["NO_RETRY", "RetryPolicy", "backoff", "default_retry_policy", "is_outcome_unknown"]

_RNG: Final = random.Random()  # noqa: S311 - jitter, not security
# Past this many doublings every sane cap has long been reached; clamping the exponent
# keeps ``2.0 ** n`` from overflowing however long a run keeps failing.
_MAX_DOUBLINGS: Final = 1000


def backoff(
    attempt: int,
    initial: float,
    cap: float,
    *,
    jitter: float = 0.0,
    rng: random.Random | None = None,
) -> float:
    """The exponential backoff before attempt number ``attempt`` (1-based): the one formula.

    ``initial`` doubles with each attempt up to ``cap``, then the result is scaled by a
    random factor in ``[1 - jitter, 1]`` (only ever shortened, so no wait exceeds its
    nominal length). One number is drawn from ``rng`` when ``jitter`` is not 0. Retries
    (:meth:`RetryPolicy.backoff`), bulk resubmits after a 429/499
    (:func:`~ttapi_async._limits.busy_backoff`) and failed polls
    (:func:`~ttapi_async._polling.poll_error_delay`) all wait by it.
    """
    base = min(cap, initial * 2.0 ** min(attempt - 1, _MAX_DOUBLINGS))
    if jitter:
        base *= 1 - jitter * (rng or _RNG).random()
    return base


@attrs.frozen
class RetryPolicy:
    """How a client retries failed HTTP calls.

    Attributes:
        max_retries: retries after the first attempt (0 turns retrying off).
        initial_delay: the first backoff, in seconds; it doubles on each retry.
        max_delay: the cap of the exponential backoff.
        jitter: each backoff is multiplied by a random factor in ``[1 - jitter, 1]``.
        max_retry_after: the longest ``Retry-After`` the client will honour; a longer
            request surfaces the error at once so the caller can decide.
        retry_unknown_outcome: also retry billable calls whose outcome is unknown (5xx,
            dropped connection, timeout after sending). This can bill twice; off by default.
    """

    max_retries: int = attrs.field(default=2, validator=attrs.validators.ge(0))
    initial_delay: float = 0.5
    max_delay: float = 8.0
    jitter: float = attrs.field(
        default=0.25,
        validator=attrs.validators.and_(attrs.validators.ge(0.0), attrs.validators.le(1.0)),
    )
    max_retry_after: float = 60.0
    retry_unknown_outcome: bool = False

    def backoff(self, retry: int, rng: random.Random = _RNG) -> float:
        """The jittered exponential delay before retry number ``retry`` (1-based)."""
        return backoff(retry, self.initial_delay, self.max_delay, jitter=self.jitter, rng=rng)

    def delay(
        self,
        exc: BaseException,
        retry: int,
        *,
        billable: bool,
        remaining: float | None,
        rng: random.Random = _RNG,
    ) -> float | None:
        """Seconds to wait before retry number ``retry``, or None to give up and raise.

        ``remaining`` is the time left before the call's deadline (None: no deadline);
        a wait that would outlast it is pointless, so the error is raised at once.
        """
        if retry > self.max_retries or not isinstance(exc, TTAPIError):
            return None
        if isinstance(exc, RateLimitError | QueueFullError):
            hint = exc.retry_after
            if hint is not None and hint > self.max_retry_after:
                return None
            wait = self.backoff(retry, rng) if hint is None else hint
        elif isinstance(exc, ConnectError) or (
            _passing(exc) and (not billable or self.retry_unknown_outcome)
        ):
            wait = self.backoff(retry, rng)
        else:
            return None
        if remaining is not None and wait >= remaining:
            return None
        return wait


#: No retries: the waiter's polls, which schedule their own next attempt.
NO_RETRY: Final = RetryPolicy(max_retries=0)

#: ``(initial_delay, max_delay)`` of the policy a client builds when given no ``retry=``
#: (None: the field defaults). Only :func:`ttapi_async.testing.set_fast_waits` sets it, so
#: tests that make a server fail do not sleep through real backoffs. ``Retry-After`` is
#: still honoured: it is the server's word, not our backoff.
_default_backoff: tuple[float, float] | None = None


def default_retry_policy(
    *, max_retries: int, retry_unknown_outcome: bool, max_retry_after: float
) -> RetryPolicy:
    """A client's policy when given no ``retry=``: these fields, default or fast backoff."""
    if _default_backoff is None:
        return RetryPolicy(
            max_retries=max_retries,
            retry_unknown_outcome=retry_unknown_outcome,
            max_retry_after=max_retry_after,
        )
    initial, maximum = _default_backoff
    return RetryPolicy(
        max_retries=max_retries,
        initial_delay=initial,
        max_delay=maximum,
        retry_unknown_outcome=retry_unknown_outcome,
        max_retry_after=max_retry_after,
    )


def _passing(exc: TTAPIError) -> bool:
    """Errors that may pass on their own: worth another try when that is safe."""
    if isinstance(exc, ServerError | ResponseFormatError):
        return True
    return isinstance(exc, APIConnectionError) and exc.request_sent


def is_outcome_unknown(exc: BaseException) -> bool:
    """True when a billable request may have been accepted despite this error."""
    return isinstance(exc, TTAPIError) and _passing(exc)
