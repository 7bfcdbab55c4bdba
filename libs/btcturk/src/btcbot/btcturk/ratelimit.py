"""Async rate limiter: waits until the endpoint group's :class:`~limits.Budget` allows a send."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping

from btcbot.btcturk.limits import DEFAULT_LIMITS, Budget, EndpointGroup, Window

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]


class RateLimiter:
    """One per process (or per client): every request of a group passes :meth:`acquire` first."""

    def __init__(
        self,
        limits: Mapping[EndpointGroup, tuple[Window, ...]] = DEFAULT_LIMITS,
        *,
        margin: float = 0.05,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self._budgets = {group: Budget(windows, margin=margin) for group, windows in limits.items()}
        self._locks = {group: asyncio.Lock() for group in limits}
        self._clock = clock
        self._sleep = sleep

    async def acquire(self, group: EndpointGroup) -> None:
        """Wait for a free slot of ``group`` and take it; callers queue in FIFO order."""
        budget = self._budgets[group]
        async with self._locks[group]:
            while (wait := budget.delay(self._clock())) > 0:
                await self._sleep(wait)
            budget.record(self._clock())

    def block(self, group: EndpointGroup, seconds: float) -> None:
        """Hold every request of ``group`` for ``seconds`` (after a 429 with Retry-After)."""
        self._budgets[group].block_until(self._clock() + seconds)

    def delay(self, group: EndpointGroup) -> float:
        """Seconds the next request of ``group`` would wait now."""
        return self._budgets[group].delay(self._clock())
