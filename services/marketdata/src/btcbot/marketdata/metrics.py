"""Marketdata's figures for /metrics: books published (and how many stale), the newest book's age, reconnects."""

from __future__ import annotations

from btcbot.contracts.messages import BookSnapshot
from btcbot.runtime.metrics import instruments

SERVICE = "marketdata"

# symbol -> received time of the newest book this process published (process-wide, like the instruments).
_newest: dict[str, int] = {}


def book_published(snapshot: BookSnapshot) -> None:
    """Count a published book and remember its receipt time for btcbot_book_age_seconds."""
    inst = instruments()
    labels = {"symbol": snapshot.symbol}
    inst.books.add(1, labels)
    inst.stale_books.add(1 if snapshot.stale else 0, labels)  # 0 keeps the series for the stale ratio
    if snapshot.received_ts_ns > _newest.get(snapshot.symbol, 0):
        _newest[snapshot.symbol] = snapshot.received_ts_ns


def book_ages(newest: dict[str, int], now_ns: int) -> dict[str, float]:
    """Seconds since each symbol's newest published book was received (never negative)."""
    return {symbol: max(0.0, (now_ns - ts) / 1e9) for symbol, ts in newest.items()}


def report_book_ages(now_ns: int) -> None:
    """Set btcbot_book_age_seconds{symbol} (called on a short period)."""
    gauge = instruments().book_age
    for symbol, age in book_ages(_newest, now_ns).items():
        gauge.set(age, {"symbol": symbol})


def ws_started() -> None:
    """btcbot_ws_reconnects_total{service="marketdata"} at 0 while the feed runs (a series from the start)."""
    instruments().ws_reconnects.add(0, {"service": SERVICE})


def ws_reconnected() -> None:
    """btcbot_ws_reconnects_total{service="marketdata"} += 1."""
    instruments().ws_reconnects.add(1, {"service": SERVICE})
