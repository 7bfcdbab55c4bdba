"""Candle history: bucketing, aggregation to any resolution, week alignment and window overlap."""

from decimal import Decimal

import pytest

from btcbot.sim.candles import DAY_S, WEEK_S, CandleHistory, bucket_start
from btcbot.sim.funding import FundingLedger, select

D = Decimal
# 2025-11-24 00:00:00 UTC, a Monday.
MONDAY_S = 1_763_942_400


def test_bucket_start_aligns_minutes_days_and_monday_weeks():
    assert bucket_start(MONDAY_S + 3 * 60 + 59, 300) == MONDAY_S
    assert bucket_start(MONDAY_S + 86_399, DAY_S) == MONDAY_S
    assert bucket_start(MONDAY_S + 6 * DAY_S + 5, WEEK_S) == MONDAY_S
    assert bucket_start(MONDAY_S - 1, WEEK_S) == MONDAY_S - WEEK_S


def test_minute_bars_aggregate_to_a_coarser_resolution():
    history = CandleHistory()
    trades = [(100, 1, 0), (105, 2, 30), (98, 1, 70), (101, 3, 299), (110, 1, 300)]
    for price, amount, offset in trades:
        history.add(D(price), D(amount), (MONDAY_S + offset) * 1000)
    one, two = history.bars(300, MONDAY_S, MONDAY_S + 600)
    assert (one.start_s, one.open, one.high, one.low, one.close, one.volume) == (MONDAY_S, 100, 105, 98, 101, 7)
    assert one.quote_volume == D(100 + 210 + 98 + 303)
    assert (two.start_s, two.open, two.close, two.volume) == (MONDAY_S + 300, 110, 110, 1)
    minutes = history.bars(60, MONDAY_S, MONDAY_S + 600)
    assert [b.start_s - MONDAY_S for b in minutes] == [0, 60, 240, 300]


def test_window_keeps_bars_that_overlap_it():
    history = CandleHistory()
    for day in range(3):
        history.add(D(100 + day), D(1), (MONDAY_S + day * DAY_S + 10) * 1000)
    assert [b.open for b in history.days(MONDAY_S + DAY_S + 5, MONDAY_S + DAY_S + 6)] == [D(101)]
    assert [b.open for b in history.days(MONDAY_S + DAY_S, None)] == [D(101), D(102)]
    assert history.days(None, MONDAY_S - 1) == []
    (week,) = history.bars(WEEK_S, MONDAY_S, MONDAY_S + WEEK_S - 1)
    assert (week.open, week.close, week.high, week.low, week.volume) == (100, 102, 102, 100, 3)


def test_minute_history_is_bounded_and_days_outlive_it():
    history = CandleHistory(minutes_kept=2)
    for minute in range(3):
        history.add(D(100), D(1), (MONDAY_S + minute * 60) * 1000)
    assert history.oldest_minute_s == MONDAY_S + 60
    (day,) = history.days()
    assert day.volume == 3


def test_unsupported_resolution_is_refused():
    with pytest.raises(ValueError, match="unsupported"):
        CandleHistory().bars(7 * 60, 0, 1)


def test_initial_balances_become_deposits_and_endpoints_split_fiat_from_crypto():
    ledger = FundingLedger(first_id=500)
    ledger.deposit_initial("k", {"TRY": D(1000), "BTC": D("0.5"), "ETH": D(0)}, 1_000)
    ledger.deposit_initial("k", {"BTC": D(1)}, 2_000)
    fiat = select(ledger.of("k"), fiat=True, kinds=set(), currencies=set(), start_ms=0, end_ms=5_000)
    assert [(t.currency, t.amount, t.transfer_id) for t in fiat] == [("TRY", D(1000), 500)]
    crypto = select(ledger.of("k"), fiat=False, kinds={"deposit"}, currencies=set(), start_ms=0, end_ms=5_000)
    assert [(t.currency, t.amount) for t in crypto] == [("BTC", D(1)), ("BTC", D("0.5"))]
    assert select(ledger.of("k"), fiat=False, kinds={"withdrawal"}, currencies=set(), start_ms=0, end_ms=5_000) == []
    assert select(ledger.of("k"), fiat=False, kinds=set(), currencies={"ETH"}, start_ms=0, end_ms=5_000) == []
    assert len(select(ledger.of("k"), fiat=False, kinds=set(), currencies=set(), start_ms=1_500, end_ms=5_000)) == 1
    assert ledger.of("other") == []
