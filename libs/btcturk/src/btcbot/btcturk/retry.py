"""Retry policy: exponential backoff with full jitter, from a per-process random source.

Replicas must not retry in lock-step, so the jitter comes from a ``random.Random()`` seeded
from the OS per instance, never from the shared global generator. Only errors marked
``retryable`` are retried; :class:`OutcomeUnknown` is final by construction.
"""

from __future__ import annotations

import random

from btcbot.btcturk.errors import BreakerOpen, BtcTurkError, RateLimited


class RetryPolicy:
    """Decides whether and how long to wait before attempt ``attempt + 1``."""

    def __init__(
        self,
        *,
        max_attempts: int = 4,
        base_delay: float = 0.2,
        max_delay: float = 5.0,
        max_rate_limit_wait: float = 65.0,
        rng: random.Random | None = None,
    ) -> None:
        if max_attempts < 1 or base_delay <= 0 or max_delay < base_delay:
            raise ValueError("need max_attempts >= 1 and 0 < base_delay <= max_delay")
        self.max_attempts = max_attempts
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.max_rate_limit_wait = max_rate_limit_wait
        self._rng = rng if rng is not None else random.Random()

    def backoff(self, attempt: int) -> float:
        """Full jitter: uniform in [0, min(max_delay, base_delay * 2**(attempt - 1))]."""
        ceiling = min(self.max_delay, self.base_delay * 2 ** max(0, attempt - 1))
        return self._rng.uniform(0.0, ceiling)

    def next_delay(self, error: BtcTurkError, attempt: int) -> float | None:
        """Seconds to wait before retrying after failed attempt number ``attempt`` (1-based), or None."""
        if not error.retryable or attempt >= self.max_attempts:
            return None
        if isinstance(error, RateLimited):
            if error.retry_after > self.max_rate_limit_wait:
                return None
            # The limiter already blocks the group until Retry-After; jitter spreads the wake-ups.
            return error.retry_after + self.backoff(1)
        if isinstance(error, BreakerOpen) and error.retry_in > self.max_delay:
            # Waiting out a long open period here would only hide the outage from the caller.
            return None
        return self.backoff(attempt)


NO_RETRY = RetryPolicy(max_attempts=1)
