"""The loop that turns the exchange watch into alarms of the kill chain (publish once per transition, log)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

import structlog

from btcbot.execution.watch import BREAKER_OPEN, REPEATED_FAILURES, ExchangeWatch
from btcbot.runtime.alarms import AlarmLatch, raise_or_clear
from btcbot.runtime.bus import Publisher

SOURCE = "execution"


class AlarmPublisher:
    """Evaluates the watch and publishes what changed; `step` is one evaluation, `run` loops."""

    def __init__(
        self, watch: ExchangeWatch, bus: Publisher, clock: Callable[[], int], log: structlog.stdlib.BoundLogger
    ) -> None:
        self.watch = watch
        self.bus = bus
        self.clock = clock
        self.log = log
        self.latches = {kind: AlarmLatch(SOURCE, kind) for kind in (BREAKER_OPEN, REPEATED_FAILURES)}

    async def step(self) -> None:
        """Publish every condition whose state differs from what was last published."""
        now = self.clock()
        for condition in self.watch.conditions(now):
            try:
                await raise_or_clear(self.bus, self.latches[condition.kind], self.log, condition.active,
                                     cause=condition.cause, now_ns=now, detail=condition.detail)  # fmt: skip
            except Exception as exc:  # NATS away: the latch did not move, the next step tries again
                self.log.warning("alarm.publish_failed", kind=condition.kind, error=f"{type(exc).__name__}: {exc}")

    async def run(self, stop: asyncio.Event, interval_s: float = 1.0) -> None:
        """Evaluate every `interval_s` until stop is set."""
        while not stop.is_set():
            await self.step()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), interval_s)
