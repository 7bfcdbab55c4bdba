"""Fees in a third asset valued at the mark at fill time; trading days at a configurable UTC offset."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from btcbot.ledger.positions import (
    Fill,
    PositionState,
    apply_fill,
    daily_pnl,
    day_of,
    fee_rate_from_marks,
    needs_fee_rate,
    parse_utc_offset,
    replay,
)

D = Decimal
S = 1_000_000_000


def fill(
    trade: str, side: str, price: str, qty: str, fee: str, fee_asset: str, *, rate: str | None = None, ts: int = 0
) -> Fill:
    return Fill("BTCTRY", trade, side, D(price), D(qty), D(fee), fee_asset, D(0), ts or int(trade) * S, "BTC", "TRY",
                None if rate is None else D(rate))  # fmt: skip


def test_a_third_asset_fee_counts_at_its_rate_in_cost_and_pnl() -> None:
    buy = fill("1", "buy", "100", "2", "1", "USDT", rate="40")  # 1 USDT at 40 TRY
    sell = fill("2", "sell", "150", "2", "0.5", "USDT", rate="42")
    assert needs_fee_rate(buy)
    bought = apply_fill(PositionState("BTCTRY"), buy)
    assert (bought.position.cost, bought.fee_value) == (D(240), D(40))
    sold = apply_fill(bought.position, sell)
    assert sold.realized == D(300) - D(21) - D(240)
    assert sold.position.fees == D(61)
    assert sell.rate_used == D(42)


def test_without_a_rate_a_third_asset_fee_has_no_quote_value() -> None:
    buy = fill("1", "buy", "100", "2", "1", "USDT")
    outcome = apply_fill(PositionState("BTCTRY"), buy)
    assert (outcome.position.cost, outcome.fee_value, buy.rate_used) == (D(200), D(0), None)


def test_quote_and_base_fees_keep_their_rates() -> None:
    assert fill("1", "buy", "100", "2", "1", "TRY").rate_used == D(1)
    assert fill("1", "buy", "100", "2", "0.01", "BTC").rate_used == D(100)
    assert not needs_fee_rate(fill("1", "buy", "100", "2", "1", "TRY"))


def test_fee_rate_from_marks_prefers_the_direct_pair_then_the_inverse() -> None:
    assert fee_rate_from_marks("USDT", "TRY", {"USDTTRY": D(40), "TRYUSDT": D("0.02")}) == (D(40), "USDTTRY")
    assert fee_rate_from_marks("USDT", "TRY", {"TRYUSDT": D("0.025")}) == (D(40), "TRYUSDT")
    assert fee_rate_from_marks("USDT", "TRY", {"BTCTRY": D(1)}) is None


def test_days_start_at_midnight_at_the_offset() -> None:
    late = (date(2025, 1, 1) - date(1970, 1, 1)).days * 86_400 * S + 22 * 3600 * S  # 2025-01-01 22:00 UTC
    assert day_of(late) == date(2025, 1, 1)
    assert day_of(late, 180) == date(2025, 1, 2)  # 01:00 in Istanbul
    assert day_of(late, -300) == date(2025, 1, 1)
    buy = fill("1", "buy", "100", "1", "0", "TRY", ts=late - 3 * 3600 * S)  # 19:00 UTC, 22:00 Istanbul
    sell = fill("2", "sell", "110", "1", "0", "TRY", ts=late)
    outcomes = replay([buy, sell]).outcomes
    assert daily_pnl(outcomes, 0) == {(date(2025, 1, 1), "BTCTRY"): (D(10), D(0))}
    assert daily_pnl(outcomes, 180) == {
        (date(2025, 1, 1), "BTCTRY"): (D(0), D(0)),
        (date(2025, 1, 2), "BTCTRY"): (D(10), D(0)),
    }


@pytest.mark.parametrize(("text", "minutes"), [("+03:00", 180), ("-05:30", -330), ("0", 0), ("+3", 180)])
def test_parse_utc_offset(text: str, minutes: int) -> None:
    assert parse_utc_offset(text) == minutes


@pytest.mark.parametrize("text", ["+15:00", "3:60", "abc", "+03:xx"])
def test_parse_utc_offset_refuses_nonsense(text: str) -> None:
    with pytest.raises(ValueError, match="offset"):
        parse_utc_offset(text)
