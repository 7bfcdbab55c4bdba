"""Backoff with full jitter, bounds and which errors are retried."""

import random

import pytest

from btcbot.btcturk.errors import (
    AuthError,
    BreakerOpen,
    OutcomeUnknown,
    RateLimited,
    Rejected,
    TransportError,
    Unavailable,
)
from btcbot.btcturk.retry import RetryPolicy


def test_full_jitter_bounds_and_spread():
    policy = RetryPolicy(base_delay=0.1, max_delay=1.0, rng=random.Random(7))
    for attempt, ceiling in [(1, 0.1), (2, 0.2), (3, 0.4), (4, 0.8), (5, 1.0), (9, 1.0)]:
        samples = [policy.backoff(attempt) for _ in range(400)]
        assert all(0.0 <= s <= ceiling for s in samples)
        # full jitter: spread over the whole range, not clustered near the ceiling
        assert min(samples) < ceiling * 0.1
        assert max(samples) > ceiling * 0.9


def test_default_rng_is_private_per_instance():
    a, b = RetryPolicy(), RetryPolicy()
    assert a._rng is not b._rng
    assert a._rng is not random._inst  # type: ignore[attr-defined]
    random.seed(1)
    first = [RetryPolicy().backoff(3) for _ in range(5)]
    random.seed(1)
    second = [RetryPolicy().backoff(3) for _ in range(5)]
    assert first != second  # the global seed does not synchronise replicas


@pytest.mark.parametrize(
    "error",
    [TransportError("x"), Unavailable("x", status=503)],
)
def test_retryable_errors_retry_until_max_attempts(error):
    policy = RetryPolicy(max_attempts=3, rng=random.Random(1))
    assert policy.next_delay(error, 1) is not None
    assert policy.next_delay(error, 2) is not None
    assert policy.next_delay(error, 3) is None


@pytest.mark.parametrize(
    "error",
    [
        OutcomeUnknown("lost"),
        AuthError("bad", status=401),
        Rejected("BALANCE_NOT_ENOUGH", message_code="BALANCE_NOT_ENOUGH", status=400),
    ],
)
def test_final_errors_never_retry(error):
    assert RetryPolicy(max_attempts=10).next_delay(error, 1) is None


def test_rate_limited_waits_at_least_retry_after():
    policy = RetryPolicy(base_delay=0.1, max_delay=1.0, rng=random.Random(3))
    delay = policy.next_delay(RateLimited("429", retry_after=2.0), 1)
    assert delay is not None
    assert 2.0 <= delay <= 2.1
    assert RetryPolicy(max_rate_limit_wait=1.0).next_delay(RateLimited("429", retry_after=60.0), 1) is None


def test_breaker_open_long_wait_is_not_retried():
    policy = RetryPolicy(max_delay=1.0)
    assert policy.next_delay(BreakerOpen("g", retry_in=30.0), 1) is None
    assert policy.next_delay(BreakerOpen("g", retry_in=0.0), 1) is not None
