"""Rolling 24-hour ticker statistics per pair, kept as one-minute buckets."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from decimal import Decimal

MINUTE_MS = 60_000
DAY_MS = 24 * 60 * MINUTE_MS


@dataclass
class Bucket:
    """Trades of one minute."""

    minute: int
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal
    quote_volume: Decimal


@dataclass(frozen=True)
class DayStats:
    """What the ticker reports for the last 24 hours."""

    last: Decimal
    open: Decimal
    high: Decimal
    low: Decimal
    volume: Decimal
    average: Decimal


class RollingStats:
    """Open/high/low/last/volume/VWAP over the trailing 24 hours."""

    def __init__(self) -> None:
        self._buckets: deque[Bucket] = deque()
        self.last: Decimal | None = None

    def add(self, price: Decimal, amount: Decimal, ts_ms: int) -> None:
        """Record one trade."""
        minute = ts_ms // MINUTE_MS
        self.last = price
        if self._buckets and self._buckets[-1].minute >= minute:
            bucket = self._buckets[-1]
            bucket.high = max(bucket.high, price)
            bucket.low = min(bucket.low, price)
            bucket.close = price
            bucket.volume += amount
            bucket.quote_volume += amount * price
        else:
            self._buckets.append(Bucket(minute, price, price, price, price, amount, amount * price))
        self._trim(ts_ms)

    def _trim(self, now_ms: int) -> None:
        oldest = (now_ms - DAY_MS) // MINUTE_MS
        while self._buckets and self._buckets[0].minute <= oldest:
            self._buckets.popleft()

    def day(self, now_ms: int) -> DayStats | None:
        """Stats over the last 24 hours, or None if the pair never traded."""
        if self.last is None:
            return None
        self._trim(now_ms)
        if not self._buckets:
            last = self.last
            return DayStats(last, last, last, last, Decimal(0), last)
        volume = sum((b.volume for b in self._buckets), Decimal(0))
        quote = sum((b.quote_volume for b in self._buckets), Decimal(0))
        return DayStats(
            last=self.last,
            open=self._buckets[0].open,
            high=max(b.high for b in self._buckets),
            low=min(b.low for b in self._buckets),
            volume=volume,
            average=quote / volume if volume else self.last,
        )
