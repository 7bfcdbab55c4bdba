"""The bot's PnL as readers show it: hand-computed figures, opening holdings never counted as PnL."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from btcbot.ledger.botpnl import Holding, at_scale, count_trades, position_pnl, totals, unrealized

D = Decimal


def holding(quantity: str, opening: str, cost: str, realized: str = "0", fees: str = "0") -> Holding:
    return Holding("BTCTRY", "BTC", D(quantity), D(opening), D(cost), D(realized), D(fees), 2)


def test_unrealized_counts_only_what_the_bot_bought() -> None:
    # 3 BTC held, 1 of them from before the bot: the bot's 2 cost 2002 (1001 each). At 1100: 2200 - 2002 = 198.
    h = holding("3", "1", "2002")
    assert h.own_quantity == D(2)
    assert h.avg_cost == D(1001)
    assert unrealized(h, D(1100)) == D(198)
    # Below cost the bot is down; the opening BTC's own move (1 x 100) is in neither figure.
    assert unrealized(h, D(900)) == D(-202)


def test_only_opening_holdings_left_is_no_pnl_and_no_average_cost() -> None:
    h = holding("1", "1", "0", realized="98")
    assert h.avg_cost is None
    assert unrealized(h, D(5000)) == 0
    (row,) = position_pnl([h], {"BTCTRY": D(5000)})
    assert row.total == D(98)


def test_without_a_mark_unrealized_is_zero_and_totals_add_up() -> None:
    a = holding("2", "0", "2002", realized="98", fees="3")
    b = Holding("ETHTRY", "ETH", D("0.5"), D(0), D(60), D("-1.5"), D("0.5"), 3)
    rows = position_pnl([a, b], {"BTCTRY": D(1050)})
    bot = totals(rows)
    assert bot.realized == D("96.5")
    assert bot.unrealized == D(98)  # 2 x 1050 - 2002; ETHTRY has no mark
    assert bot.fees == D("3.5")
    assert bot.pnl == D("194.5")


def test_amounts_are_shown_at_their_assets_scale() -> None:
    avg = D(2002) / D(3)  # 27 significant digits
    assert at_scale(avg, "TRY") == D("667.33")
    assert str(at_scale(D("0.000123456789"), "BTC")) == "0.00012346"
    assert str(at_scale(D(0), "TRY")) == "0.00"


def test_trades_are_counted_by_side() -> None:
    counts = count_trades(["buy", "sell", "buy", "buy"])
    assert (counts.count, counts.buys, counts.sells) == (4, 3, 1)


amounts = st.decimals(min_value=0, max_value=10**6, places=8, allow_nan=False, allow_infinity=False)


@given(own=amounts, opening=amounts, extra=amounts, cost=amounts, mark=amounts)
def test_opening_holdings_never_move_the_bots_pnl(
    own: Decimal, opening: Decimal, extra: Decimal, cost: Decimal, mark: Decimal
) -> None:
    before = Holding("BTCTRY", "BTC", own + opening, opening, cost, D(0), D(0), 1)
    more = Holding("BTCTRY", "BTC", own + opening + extra, opening + extra, cost, D(0), D(0), 1)
    assert unrealized(before, mark) == unrealized(more, mark)
    assert before.avg_cost == more.avg_cost
