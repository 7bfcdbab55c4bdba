"""Async rate limiter: waits until the endpoint group's :class:`~limits.Budget`, and the shared budget
of its pool if it has one (graph-api), allow a send."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping

from btcbot.btcturk.limits import DEFAULT_LIMITS, DEFAULT_POOLS, SHARED_LIMITS, Budget, EndpointGroup, Window

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]


class RateLimiter:
    """One per process (or per client): every request of a group passes :meth:`acquire` first."""

    def __init__(
        self,
        limits: Mapping[EndpointGroup, tuple[Window, ...]] = DEFAULT_LIMITS,
        *,
        shared: Mapping[str, tuple[Window, ...]] = SHARED_LIMITS,
        pools: Mapping[EndpointGroup, str] = DEFAULT_POOLS,
        margin: float = 0.05,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self._budgets = {group: Budget(windows, margin=margin) for group, windows in limits.items()}
        self._locks = {group: asyncio.Lock() for group in limits}
        self._shared = {pool: Budget(windows, margin=margin) for pool, windows in shared.items()}
        self._shared_locks = {pool: asyncio.Lock() for pool in shared}
        self._pools = {group: pool for group, pool in pools.items() if pool in shared}
        self._clock = clock
        self._sleep = sleep

    async def acquire(self, group: EndpointGroup) -> None:
        """Wait for a free slot of ``group`` (and of its pool) and take it; callers queue in FIFO order."""
        budget = self._budgets[group]
        pool = self._pools.get(group)
        async with self._locks[group]:
            if pool is None:
                while (wait := budget.delay(self._clock())) > 0:
                    await self._sleep(wait)
                budget.record(self._clock())
                return
            # Locks are always taken group first, then pool, so two groups of one pool cannot deadlock.
            shared = self._shared[pool]
            async with self._shared_locks[pool]:
                while (wait := max(budget.delay(self._clock()), shared.delay(self._clock()))) > 0:
                    await self._sleep(wait)
                now = self._clock()
                budget.record(now)
                shared.record(now)

    def block(self, group: EndpointGroup, seconds: float) -> None:
        """Hold every request of ``group`` for ``seconds`` (after a 429 with Retry-After)."""
        self._budgets[group].block_until(self._clock() + seconds)

    def delay(self, group: EndpointGroup) -> float:
        """Seconds the next request of ``group`` would wait now."""
        now = self._clock()
        pool = self._pools.get(group)
        own = self._budgets[group].delay(now)
        return own if pool is None else max(own, self._shared[pool].delay(now))
