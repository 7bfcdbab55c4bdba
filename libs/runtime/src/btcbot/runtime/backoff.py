"""Exponential backoff with jitter for retry loops (exchange polls, rule reloads).

The jitter comes from a random source owned by the caller (one per process), so replicas polling the same
failing exchange do not retry in lock-step.
"""

from __future__ import annotations

import random


class Backoff:
    """Delay before the next attempt after consecutive failures; a success resets it."""

    def __init__(self, base: float, cap: float, rng: random.Random) -> None:
        if base <= 0 or cap < base:
            raise ValueError("need 0 < base <= cap")
        self._base = base
        self._cap = cap
        self._rng = rng
        self.failures = 0

    def failure(self) -> float:
        """Record a failure; return seconds to wait, uniform in [base/2, min(cap, base * 2**failures)]."""
        self.failures += 1
        ceiling = min(self._cap, self._base * 2 ** (self.failures - 1))
        # A floor of base/2 keeps a persistent failure from turning into a tight loop.
        return self._rng.uniform(min(self._base / 2, ceiling), ceiling)

    def success(self) -> None:
        """Record a success: the next failure starts from the base delay again."""
        self.failures = 0
