"""Pure accounting: weighted average cost, realized PnL net of fees, balances, valuation, order independence."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from btcbot.contracts.messages import OrderFilled
from btcbot.ledger.positions import (
    Fill,
    Oversell,
    PositionState,
    apply_fill,
    balance_deltas,
    bot_pnl,
    canonical,
    day_start_ns,
    drawdown,
    fill_from_event,
    opening_position,
    opening_shortfall,
    parse_amounts,
    replay,
    split_symbol,
    trade_sort_key,
    value,
    watermark,
)

D = Decimal


def fill(
    trade_id: str,
    side: str,
    price: str,
    quantity: str,
    fee: str = "0",
    *,
    symbol: str = "BTCTRY",
    ts: int = 0,
    fee_asset: str = "TRY",
    tax: str = "0",
    order: str = "",
) -> Fill:
    base, quote = split_symbol(symbol)
    return Fill(
        symbol=symbol,
        trade_id=trade_id,
        side=side,  # type: ignore[arg-type]
        price=D(price),
        quantity=D(quantity),
        fee=D(fee),
        fee_asset=fee_asset,
        tax=D(tax),
        ts_ns=ts or int(trade_id) * 1_000_000_000,
        base_asset=base,
        quote_asset=quote,
        exchange_order_id=order,
    )


def test_buys_average_their_cost_including_quote_fees() -> None:
    p = PositionState("BTCTRY")
    p = apply_fill(p, fill("1", "buy", "100", "2", "1")).position
    p = apply_fill(p, fill("2", "buy", "200", "2", "3")).position
    assert p.quantity == D(4)
    assert p.cost == D(604)
    assert p.avg_cost == D(151)
    assert p.fees == D(4)
    assert p.realized_pnl == 0


def test_sell_realizes_against_average_cost_net_of_its_fee() -> None:
    p = apply_fill(PositionState("BTCTRY"), fill("1", "buy", "100", "4", "4")).position  # avg 101
    out = apply_fill(p, fill("2", "sell", "150", "1", "1.5"))
    assert out.realized == D("150") - D("1.5") - D("101")
    assert out.position.quantity == D(3)
    assert out.position.avg_cost == D(101)
    assert out.position.fees == D("5.5")


def test_full_close_leaves_no_cost_residue() -> None:
    p = PositionState("BTCTRY")
    for f in (fill("1", "buy", "3", "1"), fill("2", "buy", "7", "2"), fill("3", "sell", "5", "1")):
        p = apply_fill(p, f).position
    closed = apply_fill(p, fill("4", "sell", "5", "2")).position
    assert closed.quantity == 0
    assert closed.cost == 0
    assert closed.avg_cost == 0
    # Bought 17 for 3 units, sold 15: lost 2 overall (thirds of 17 carry 28 significant digits).
    assert abs(closed.realized_pnl - D(-2)) < D("1e-24")


def test_oversell_raises_and_is_never_capped() -> None:
    p = apply_fill(PositionState("BTCTRY"), fill("1", "buy", "100", "1")).position
    with pytest.raises(Oversell) as caught:
        apply_fill(p, fill("2", "sell", "100", "1.5"))
    assert caught.value.held == D(1)
    assert caught.value.delivered == D("1.5")
    with pytest.raises(Oversell):
        apply_fill(PositionState("BTCTRY"), fill("1", "sell", "100", "0.1"))


def test_fee_in_base_asset_reduces_quantity_and_is_valued_at_fill_price() -> None:
    out = apply_fill(PositionState("BTCTRY"), fill("1", "buy", "100", "1", "0.01", fee_asset="BTC"))
    assert out.position.quantity == D("0.99")
    assert out.position.cost == D(100)
    assert out.fee_value == D(1)
    with pytest.raises(Oversell):
        apply_fill(out.position, fill("2", "sell", "100", "0.99", "0.01", fee_asset="BTC"))


def test_tax_and_negative_wire_signs_count_as_costs() -> None:
    # BTCTurk reports fee and tax as negative numbers.
    f = fill("1", "buy", "100", "1", "-0.5", tax="-0.09")
    assert f.charge == D("0.59")
    assert apply_fill(PositionState("BTCTRY"), f).position.cost == D("100.59")


def test_balance_deltas_move_base_quote_and_fee_asset() -> None:
    assert balance_deltas(fill("1", "buy", "100", "2", "1", tax="0.18")) == {"BTC": D(2), "TRY": D("-201.18")}
    assert balance_deltas(fill("2", "sell", "100", "2", "1")) == {"BTC": D(-2), "TRY": D(199)}
    assert balance_deltas(fill("3", "buy", "100", "2", "0.002", fee_asset="BTC")) == {
        "BTC": D("1.998"),
        "TRY": D(-200),
    }


def test_trade_ids_sort_numerically_at_equal_times() -> None:
    assert trade_sort_key(5, "9") < trade_sort_key(5, "10")
    assert trade_sort_key(5, "0010") == trade_sort_key(5, "10")
    assert trade_sort_key(4, "99") < trade_sort_key(5, "1")
    assert trade_sort_key(5, "999") < trade_sort_key(5, "abc")


def test_canonical_keeps_the_first_copy_of_a_trade() -> None:
    a = fill("1", "buy", "100", "1")
    again = fill("1", "buy", "999", "9")
    assert canonical([a, again]) == [a]


def test_a_self_match_is_two_fills_buy_first() -> None:
    # Our buy crossed our own resting sell: one trade id, two orders. Both sides count, and the buy is folded
    # first, so a flat position does not look oversold by its own match.
    sell = fill("5", "sell", "100", "1", "0.1", order="900")
    buy = fill("5", "buy", "100", "1", "0.2", order="901")
    assert canonical([sell, buy, sell]) == [buy, sell]
    assert trade_sort_key(5, "5", "buy", "999") < trade_sort_key(5, "5", "sell", "1")
    assert trade_sort_key(5, "5", "sell", "9") < trade_sort_key(5, "5", "sell", "10")
    assert trade_sort_key(5, "0") == trade_sort_key(5, "000")  # a stored, zero-stripped id reloads to the same key
    state = replay([sell, buy]).positions["BTCTRY"]
    assert (state.quantity, state.cost, state.fills) == (D(0), D(0), 2)
    assert state.realized_pnl == D("-0.3")  # the two fees: a self-match only costs what it paid


def test_split_symbol_and_errors() -> None:
    assert split_symbol("BTCTRY") == ("BTC", "TRY")
    assert split_symbol("ETHUSDT") == ("ETH", "USDT")
    assert split_symbol("ETHBTC") == ("ETH", "BTC")
    with pytest.raises(ValueError, match="cannot split"):
        split_symbol("FOOBAR")


def test_fill_from_event_falls_back_to_symbol_assets_and_message_time() -> None:
    event = OrderFilled(
        id="fill:BTCTRY:7",
        ts_ns=42,
        client_order_id="bb1",
        exchange_order_id="9",
        strategy="s",
        symbol="BTCTRY",
        side="sell",
        trade_id="7",
        price=D(1),
        quantity=D(2),
        fee=D("0.1"),
        fee_asset="",
    )
    f = fill_from_event(event)
    assert (f.base_asset, f.quote_asset, f.fee_asset, f.ts_ns) == ("BTC", "TRY", "TRY", 42)
    assert fill_from_event(msgspec_replace(event, exchange_ts_ns=7)).ts_ns == 7


def msgspec_replace(event: OrderFilled, **changes: object) -> OrderFilled:
    import msgspec

    return msgspec.structs.replace(event, **changes)


def test_parse_amounts() -> None:
    assert parse_amounts("TRY=1000000, btc=1.5,") == {"TRY": D(1000000), "BTC": D("1.5")}
    assert parse_amounts("") == {}
    for bad in ("TRY", "TRY=abc", "TRY=-1", "TRY=NaN", "=1"):
        with pytest.raises(ValueError, match=r"TRY|ASSET"):
            parse_amounts(bad)


def test_value_uses_marks_then_average_cost_and_flags_unpriced_assets() -> None:
    p = apply_fill(PositionState("BTCTRY"), fill("1", "buy", "100", "2")).position
    balances = {"TRY": D(800), "BTC": D(2), "XRP": D(5)}
    marked = value({"BTCTRY": p}, balances, {"BTCTRY": D(150)}, "TRY")
    assert marked.equity == D(800) + D(300)
    assert marked.unrealized == {"BTCTRY": D(100)}
    assert marked.exposure == D(300)
    assert not marked.complete
    assert marked.unpriced == ("XRP",)
    at_cost = value({"BTCTRY": p}, {"TRY": D(800), "BTC": D(2)}, {}, "TRY")
    assert at_cost.equity == D(1000)
    assert at_cost.unrealized_total == 0
    assert at_cost.complete


def test_drawdown_is_a_fraction_of_the_peak() -> None:
    assert drawdown(D(1000), D(900)) == D("0.1")
    assert drawdown(D(1000), D(1100)) == 0
    assert drawdown(D(0), D(-5)) == 0


def test_replay_reports_daily_pnl_per_utc_day() -> None:
    day1 = 1_700_000_000 * 10**9  # 2023-11-14
    day2 = day1 + 86_400 * 10**9
    result = replay(
        [
            fill("1", "buy", "100", "2", "1", ts=day1),
            fill("2", "sell", "110", "1", "1", ts=day1 + 1),
            fill("3", "sell", "90", "1", "1", ts=day2),
        ]
    )
    daily = result.daily()
    assert daily[(date(2023, 11, 14), "BTCTRY")] == (D("110") - D(1) - D("100.5"), D(2))
    assert daily[(date(2023, 11, 15), "BTCTRY")] == (D("90") - D(1) - D("100.5"), D(1))


# --- order independence -------------------------------------------------------------------------------------

SYMBOLS = ("BTCTRY", "ETHTRY")


@st.composite
def histories(draw: st.DrawFn) -> list[Fill]:
    """A consistent history (never oversold in canonical order), with equal exchange times to break by id."""
    held = dict.fromkeys(SYMBOLS, D(0))
    out: list[Fill] = []
    for i in range(draw(st.integers(1, 30))):
        symbol = draw(st.sampled_from(SYMBOLS))
        price = D(draw(st.integers(1, 10**7))) / 100
        if held[symbol] > 0 and draw(st.booleans()):
            side = "sell"
            quantity = held[symbol] * draw(st.sampled_from([D("0.25"), D("0.5"), D("0.3"), D(1)]))
        else:
            side = "buy"
            quantity = D(draw(st.integers(1, 10**6))) / 10**4
        held[symbol] += quantity if side == "buy" else -quantity
        fee = (price * quantity * D("0.0009")).quantize(D("0.00000001"))
        ts = (i // 3) * 1_000_000_000 + 1  # groups of three trades share an exchange time
        trade = str(i + 1)
        out.append(fill(trade, side, str(price), str(quantity), str(fee), symbol=symbol, ts=ts, order=f"{i}a"))
        if side == "buy" and draw(st.booleans()):
            # A self-match: our own sell order took part in the same trade (same trade id, its own order id).
            held[symbol] -= quantity
            out.append(fill(trade, "sell", str(price), str(quantity), str(fee), symbol=symbol, ts=ts, order=f"{i}b"))
    return out


def reference(fills: list[Fill]) -> dict[str, tuple[Decimal, Decimal, Decimal, Decimal]]:
    """Average-cost accounting written the textbook way: (quantity, avg cost, realized, fees) per symbol."""
    state: dict[str, list[Decimal]] = {}
    for f in fills:  # the generator emits them in canonical order already
        qty, avg, realized, fees = state.setdefault(f.symbol, [D(0), D(0), D(0), D(0)])
        if f.side == "buy":
            avg = (avg * qty + f.price * f.quantity + f.fee) / (qty + f.quantity)
            qty += f.quantity
        else:
            realized += (f.price - avg) * f.quantity - f.fee
            qty -= f.quantity
            if qty == 0:
                avg = D(0)
        state[f.symbol] = [qty, avg, realized, fees + f.fee]
    return {s: (v[0], v[1], v[2], v[3]) for s, v in state.items()}


def close(a: Decimal, b: Decimal) -> bool:
    return abs(a - b) <= D("1e-12") * max(D(1), abs(a), abs(b))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_replay_is_a_function_of_the_set_of_fills(data: st.DataObject) -> None:
    fills = data.draw(histories())
    shuffled = data.draw(st.permutations(fills))
    duplicates = data.draw(st.lists(st.sampled_from(fills), max_size=10))
    delivered = data.draw(st.permutations(shuffled + duplicates))

    expected = replay(fills)
    got = replay(delivered)
    assert got.positions == expected.positions
    assert got.daily() == expected.daily()

    for symbol, (qty, avg, realized, fees) in reference(fills).items():
        p = got.positions[symbol]
        assert p.quantity == qty
        assert close(p.avg_cost, avg)
        assert close(p.realized_pnl, realized)
        assert p.fees == fees
        assert p.fills == sum(1 for f in fills if f.symbol == symbol)


@settings(max_examples=100, deadline=None)
@given(data=st.data())
def test_equity_change_is_realized_plus_unrealized(data: st.DataObject) -> None:
    fills = data.draw(histories())
    marks = {s: D(data.draw(st.integers(1, 10**7))) / 100 for s in SYMBOLS}
    opening = D(10**9)
    balances: dict[str, Decimal] = {"TRY": opening}
    for f in data.draw(st.permutations(fills)):
        for asset, delta in balance_deltas(f).items():
            balances[asset] = balances.get(asset, D(0)) + delta
    result = replay(fills)
    valuation = value(result.positions, balances, marks, "TRY")
    realized = sum((p.realized_pnl for p in result.positions.values()), D(0))
    assert valuation.complete
    assert close(valuation.equity - opening, realized + valuation.unrealized_total)


# --- opening holdings, bot PnL, the watermark ------------------------------------------------------------------


def test_selling_opening_holdings_is_no_oversell_and_realizes_only_its_fee() -> None:
    p = opening_position("BTCTRY", D(2))
    assert (p.quantity, p.own, p.avg_cost) == (D(2), D(0), D(0))
    out = apply_fill(p, fill("1", "sell", "100", "1.5", "0.3"))
    assert out.position.quantity == D("0.5")
    assert out.position.opening == D("0.5")
    assert out.realized == D("-0.3")  # no bot PnL on holdings the bot did not buy, only the fee it paid
    with pytest.raises(Oversell):
        apply_fill(out.position, fill("2", "sell", "100", "0.6"))


def test_bot_sells_draw_on_its_own_quantity_first() -> None:
    p = opening_position("BTCTRY", D(1))
    p = apply_fill(p, fill("1", "buy", "100", "2")).position  # own 2 at 100
    assert (p.quantity, p.own, p.avg_cost) == (D(3), D(2), D(100))
    out = apply_fill(p, fill("2", "sell", "110", "2.5"))
    # 2 from its own (realizes 2 * 10), 0.5 from the opening holding (realizes nothing).
    assert out.realized == D(20)
    assert (out.position.quantity, out.position.opening, out.position.cost) == (D("0.5"), D("0.5"), D(0))


def test_valuation_counts_only_the_bot_s_own_quantity_and_flags_missing_marks() -> None:
    p = apply_fill(opening_position("BTCTRY", D(5)), fill("1", "buy", "100", "1")).position
    v = value({"BTCTRY": p}, {"TRY": D(0), "BTC": D(6)}, {"BTCTRY": D(120)}, "TRY")
    assert v.unrealized == {"BTCTRY": D(20)}
    assert v.exposure == D(120)
    assert v.equity == D(720)
    assert v.missing_marks == ()
    assert value({"BTCTRY": p}, {"TRY": D(0)}, {}, "TRY").missing_marks == ("BTCTRY",)


def test_bot_pnl_peak_drawdown_and_day() -> None:
    p = apply_fill(PositionState("BTCTRY"), fill("1", "buy", "100", "1", "1")).position  # cost 101
    v = value({"BTCTRY": p}, {}, {"BTCTRY": D(90)}, "TRY")
    bot = bot_pnl(v, {"BTCTRY": p}, previous_peak=D(5), day_start_pnl=D(-3), day_fees=D(1))
    assert bot.pnl == D(-11)
    assert bot.peak == D(5)
    assert bot.drawdown == D(16)
    assert bot.day_pnl == D(-8)
    assert bot.day_fees == D(1)
    first = bot_pnl(v, {"BTCTRY": p}, previous_peak=None, day_start_pnl=None, day_fees=D(0))
    assert (first.peak, first.drawdown, first.day_pnl) == (D(0), D(11), D(-11))


def test_day_start_follows_the_offset() -> None:
    ts = 1_700_000_000 * 1_000_000_000  # 2023-11-14 22:13:20 UTC
    assert day_start_ns(ts, 0) == 1_699_920_000 * 1_000_000_000
    assert day_start_ns(ts, 180) == (1_700_006_400 - 3 * 3600) * 1_000_000_000  # Istanbul: already the 15th


def test_watermark_extends_the_ack_floor_through_consecutive_applied_sequences() -> None:
    assert watermark(0, []) == (0, ())
    assert watermark(4, [5, 6, 8, 9, 3]) == (6, (8, 9))
    assert watermark(10, [5, 11, 11, 12]) == (12, ())
    assert watermark(0, [2, 3]) == (0, (2, 3))


def test_opening_shortfall_is_what_the_fills_need_beyond_the_known_holding() -> None:
    fills = [fill("1", "sell", "100", "2"), fill("2", "buy", "100", "1"), fill("3", "sell", "100", "3")]
    assert opening_shortfall(fills, "BTCTRY") == D(4)
    assert opening_shortfall(fills, "BTCTRY", D(1)) == D(3)
    replay(fills, {"BTCTRY": D(4)})  # no oversell now


@st.composite
def with_opening(draw: st.DrawFn) -> tuple[list[Fill], dict[str, Decimal]]:
    """A history that may sell opening holdings: sells up to everything held, own quantity or not."""
    opening = {s: D(draw(st.integers(0, 10**4))) / 100 for s in SYMBOLS}
    held = dict(opening)
    out: list[Fill] = []
    for i in range(draw(st.integers(1, 25))):
        symbol = draw(st.sampled_from(SYMBOLS))
        price = D(draw(st.integers(1, 10**6))) / 100
        if held[symbol] > 0 and draw(st.booleans()):
            side, quantity = "sell", held[symbol] * draw(st.sampled_from([D("0.25"), D("0.5"), D(1)]))
        else:
            side, quantity = "buy", D(draw(st.integers(1, 10**5))) / 10**3
        held[symbol] += quantity if side == "buy" else -quantity
        fee = (price * quantity * D("0.001")).quantize(D("0.00000001"))
        out.append(fill(str(i + 1), side, str(price), str(quantity), str(fee), symbol=symbol, order=f"{i}"))
    return out, opening


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(history=with_opening(), data=st.data())
def test_opening_holdings_replay_as_a_function_of_the_set_and_never_carry_bot_pnl(
    history: tuple[list[Fill], dict[str, Decimal]], data: st.DataObject
) -> None:
    fills, opening = history
    delivered = data.draw(st.permutations(fills + data.draw(st.lists(st.sampled_from(fills), max_size=5))))
    expected = replay(fills, opening)  # never an oversell: the account sold only what it held
    assert replay(delivered, opening).positions == expected.positions
    marks = {s: D(data.draw(st.integers(1, 10**6))) / 100 for s in SYMBOLS}
    for symbol, p in expected.positions.items():
        assert 0 <= p.opening <= opening[symbol]
        assert p.quantity >= p.opening
        # The bot's PnL equals the PnL of the same fills with the opening holdings replaced by bot-free stock:
        # only the trading, net of fees, on what the bot bought, plus proceeds of opening stock at their price.
        mine = [f for f in fills if f.symbol == symbol]
        sold_opening = opening[symbol] - p.opening
        bought = sum((f.quantity for f in mine if f.side == "buy"), D(0))
        sold = sum((f.quantity for f in mine if f.side == "sell"), D(0))
        assert close(p.own, bought - (sold - sold_opening))
    # Mark-to-market moves of opening holdings never show in the bot's PnL.
    v1 = value(expected.positions, {}, marks, "TRY")
    v2 = value(expected.positions, {}, {s: m * 2 for s, m in marks.items()}, "TRY")
    own_value = sum((p.own * marks[s] for s, p in expected.positions.items()), D(0))
    assert close(v2.unrealized_total - v1.unrealized_total, own_value)
