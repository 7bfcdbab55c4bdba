from dataclasses import dataclass
from decimal import Decimal

import pytest

from btcbot.contracts.ids import trade_tick_id
from btcbot.marketdata.trades import TradeFilter

D = Decimal


@dataclass(frozen=True)
class Trade:
    trade_id: str
    timestamp_ms: int
    price: Decimal
    amount: Decimal
    side: str | None = "buy"


def test_new_ticks_oldest_first_and_only_once_published():
    f = TradeFilter(memory=10)
    batch = [Trade("3", 30, D("101"), D("0.5"), "sell"), Trade("2", 20, D("100"), D("-1"))]
    ticks = f.new_ticks("BTCTRY", batch, received_ts_ns=99)
    assert [t.trade_id for t in ticks] == ["2", "3"]
    assert ticks[0].id == trade_tick_id("BTCTRY", "2")
    assert ticks[0].quantity == D("1")
    assert ticks[0].taker_side == "buy"
    assert ticks[1].taker_side == "sell"
    assert ticks[0].exchange_ts_ns == 20_000_000
    for t in ticks:
        f.mark_published("BTCTRY", t)
    later = [Trade("4", 40, D("102"), D("1")), *batch]
    assert [t.trade_id for t in f.new_ticks("BTCTRY", later, received_ts_ns=100)] == ["4"]
    # Another symbol has its own memory.
    assert len(f.new_ticks("ETHTRY", batch, received_ts_ns=100)) == 2


def test_unpublished_ticks_come_back_next_time():
    f = TradeFilter()
    batch = [Trade("1", 10, D("1"), D("1"))]
    assert len(f.new_ticks("BTCTRY", batch, 1)) == 1
    assert len(f.new_ticks("BTCTRY", batch, 2)) == 1


def test_trades_without_side_are_skipped_and_duplicates_in_one_answer_collapse():
    f = TradeFilter()
    ticks = f.new_ticks("BTCTRY", [Trade("1", 10, D("1"), D("1"), None), Trade("2", 1, D("1"), D("1"))] * 2, 1)
    assert [t.trade_id for t in ticks] == ["2"]


def test_memory_is_bounded():
    f = TradeFilter(memory=2)
    for i in range(3):
        for t in f.new_ticks("BTCTRY", [Trade(str(i), i, D("1"), D("1"))], 1):
            f.mark_published("BTCTRY", t)
    # "0" fell out of memory; "1" and "2" are remembered.
    got = f.new_ticks("BTCTRY", [Trade(str(i), i, D("1"), D("1")) for i in range(3)], 1)
    assert [t.trade_id for t in got] == ["0"]


def test_memory_must_be_positive():
    with pytest.raises(ValueError, match="memory"):
        TradeFilter(memory=0)
