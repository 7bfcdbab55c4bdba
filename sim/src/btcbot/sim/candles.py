"""Candle history per pair, built from the simulator's own trades, for graph-api ohlcs and klines.

One-minute bars are kept for a bounded time (a week by default) and daily bars far longer; any
resolution of minutes that divides a day is aggregated from the minute bars, days and weeks from
the daily bars. Times are in seconds, like graph-api. Pure: trade times come in.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal

MINUTE_S = 60
DAY_S = 86_400
WEEK_S = 7 * DAY_S
# 1970-01-01 was a Thursday; weeks start on Monday, as in TradingView's weekly bars.
_WEEK_OFFSET_S = 4 * DAY_S


@dataclass
class Bar:
    """Trades of one period starting at `start_s`; `quote_volume` is the sum of price x amount."""

    start_s: int
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal
    quote_volume: Decimal

    @classmethod
    def first(cls, start_s: int, price: Decimal, amount: Decimal) -> Bar:
        """A bar opened by one trade."""
        return cls(start_s, price, price, price, price, amount, price * amount)

    def add(self, price: Decimal, amount: Decimal) -> None:
        """Record one more trade of this period."""
        self.high = max(self.high, price)
        self.low = min(self.low, price)
        self.close = price
        self.volume += amount
        self.quote_volume += price * amount

    @property
    def average(self) -> Decimal:
        """Volume-weighted average price."""
        return self.quote_volume / self.volume if self.volume else self.close


def bucket_start(time_s: int, resolution_s: int) -> int:
    """Start of the period of `resolution_s` seconds holding `time_s` (weeks start on Monday)."""
    if resolution_s == WEEK_S:
        return time_s - (time_s - _WEEK_OFFSET_S) % WEEK_S
    return time_s - time_s % resolution_s


def aggregate(bars: Iterable[Bar], resolution_s: int) -> list[Bar]:
    """Merge consecutive bars (oldest first) into bars of `resolution_s` seconds."""
    merged: list[Bar] = []
    for bar in bars:
        start = bucket_start(bar.start_s, resolution_s)
        if merged and merged[-1].start_s == start:
            last = merged[-1]
            last.high = max(last.high, bar.high)
            last.low = min(last.low, bar.low)
            last.close = bar.close
            last.volume += bar.volume
            last.quote_volume += bar.quote_volume
        else:
            merged.append(Bar(start, bar.open, bar.high, bar.low, bar.close, bar.volume, bar.quote_volume))
    return merged


def overlapping(bars: Iterable[Bar], resolution_s: int, from_s: int | None, to_s: int | None) -> list[Bar]:
    """The bars whose period overlaps [from_s, to_s]; a missing bound is open."""
    return [
        b for b in bars if (from_s is None or b.start_s + resolution_s > from_s) and (to_s is None or b.start_s <= to_s)
    ]


class CandleHistory:
    """Minute and daily bars of one pair."""

    def __init__(self, *, minutes_kept: int = 7 * 1440, days_kept: int = 3650) -> None:
        self._minutes: deque[Bar] = deque(maxlen=minutes_kept)
        self._days: deque[Bar] = deque(maxlen=days_kept)

    @property
    def oldest_minute_s(self) -> int | None:
        """Start of the oldest minute bar still kept."""
        return self._minutes[0].start_s if self._minutes else None

    def add(self, price: Decimal, amount: Decimal, ts_ms: int) -> None:
        """Record one trade; a time before the last bar counts in the last bar."""
        time_s = ts_ms // 1000
        for bars, size in ((self._minutes, MINUTE_S), (self._days, DAY_S)):
            start = bucket_start(time_s, size)
            if bars and bars[-1].start_s >= start:
                bars[-1].add(price, amount)
            else:
                bars.append(Bar.first(start, price, amount))

    def days(self, from_s: int | None = None, to_s: int | None = None) -> list[Bar]:
        """Daily bars overlapping the window, oldest first."""
        return overlapping(aggregate(self._days, DAY_S), DAY_S, from_s, to_s)

    def bars(self, resolution_s: int, from_s: int, to_s: int) -> list[Bar]:
        """Bars of `resolution_s` seconds (minutes dividing a day, a day or a week) overlapping the window."""
        if resolution_s >= DAY_S:
            source: Iterable[Bar] = self._days
        elif DAY_S % resolution_s == 0 and resolution_s % MINUTE_S == 0:
            source = self._minutes
        else:
            raise ValueError(f"unsupported resolution {resolution_s}s")
        if resolution_s not in (DAY_S, WEEK_S) and resolution_s > DAY_S:
            raise ValueError(f"unsupported resolution {resolution_s}s")
        return overlapping(aggregate(source, resolution_s), resolution_s, from_s, to_s)
