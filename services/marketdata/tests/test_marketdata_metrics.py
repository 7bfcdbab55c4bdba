"""Marketdata's book age for /metrics (pure)."""

from __future__ import annotations

from btcbot.marketdata.metrics import book_ages


def test_book_age_is_seconds_since_the_newest_receipt_and_never_negative() -> None:
    ages = book_ages({"BTCTRY": 1_000_000_000, "ETHTRY": 3_000_000_000}, 2_500_000_000)
    assert ages == {"BTCTRY": 1.5, "ETHTRY": 0.0}
