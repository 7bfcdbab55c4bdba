"""Matching engine: priority, partial fills, fees and tax, held funds, market orders, cancels."""

from __future__ import annotations

import random
from decimal import Decimal

import pytest

from btcbot.sim.book import Order
from btcbot.sim.config import KNOWN_SYMBOLS, Fees
from btcbot.sim.engine import Fill, MatchingEngine, OrderEvent, OrderRequest, Rejected

D = Decimal
FEES = Fees(maker=D("0.001"), taker=D("0.002"), tax_ratio=D("0.18"))
T0 = 1_000_000


def make_engine(fees: Fees = FEES) -> MatchingEngine:
    engine = MatchingEngine([KNOWN_SYMBOLS["BTCTRY"]], fees, first_order_id=1, first_trade_id=100)
    for name in ("alice", "bob", "carol"):
        engine.open_account(name, {"TRY": D(10_000_000), "BTC": D(10)})
    return engine


def limit(account: str, side: str, price: int | str, qty: str, cid: str = "c") -> OrderRequest:
    return OrderRequest(account, cid, "BTCTRY", side, "limit", D(qty), D(price))  # type: ignore[arg-type]


def market(account: str, side: str, qty: str) -> OrderRequest:
    return OrderRequest(account, "m", "BTCTRY", side, "market", D(qty))  # type: ignore[arg-type]


def placed(engine: MatchingEngine, req: OrderRequest, now: int = T0) -> Order:
    result = engine.place(req, now)
    assert isinstance(result, Order), result
    return result


def fills(engine: MatchingEngine) -> list[Fill]:
    return [e for e in engine.drain_events() if isinstance(e, Fill)]


def test_price_then_time_priority() -> None:
    engine = make_engine()
    first = placed(engine, limit("alice", "sell", 101, "1"))
    second = placed(engine, limit("bob", "sell", 100, "1"))
    third = placed(engine, limit("carol", "sell", 100, "1"))
    engine.drain_events()
    taker = placed(engine, limit("alice", "buy", 101, "2.5"))
    got = fills(engine)
    # Better price first (100 before 101), then arrival order within a price (bob before carol).
    assert [(f.maker.order_id, f.price, f.amount) for f in got] == [
        (second.order_id, D(100), D(1)),
        (third.order_id, D(100), D(1)),
        (first.order_id, D(101), D("0.5")),
    ]
    assert taker.status == "Closed"
    assert first.status == "Partial"
    assert first.left == D("0.5")
    assert [t.trade_id for t in got] == [100, 101, 102]


def test_partial_fill_rests_remainder_and_book_depth() -> None:
    engine = make_engine()
    placed(engine, limit("bob", "sell", 100, "0.4"))
    buy = placed(engine, limit("alice", "buy", 100, "1"))
    assert buy.status == "Partial"
    assert buy.left == D("0.6")
    assert buy.filled_base == D("0.4")
    bids, asks = engine.books["BTCTRY"].depth(10)
    assert bids == [(D(100), D("0.6"))]
    assert asks == []
    assert [o.order_id for o in engine.open_orders("alice")] == [buy.order_id]


def test_fees_and_tax_settle_in_quote_currency() -> None:
    engine = make_engine()
    placed(engine, limit("bob", "sell", 1000, "2"))
    placed(engine, limit("alice", "buy", 1000, "2"))
    (fill,) = fills(engine)
    # notional 2000: maker 0.1% = 2 (+18% tax 0.36); taker 0.2% = 4 (+0.72)
    assert (fill.maker.fee, fill.maker.tax) == (D(2), D("0.36"))
    assert (fill.taker.fee, fill.taker.tax) == (D(4), D("0.72"))
    alice, bob = engine.wallet("alice"), engine.wallet("bob")
    assert alice.balance("BTC").total == D(12)
    assert alice.balance("TRY").total == D(10_000_000) - D(2000) - D("4.72")
    assert alice.balance("TRY").locked == 0
    assert bob.balance("BTC").total == D(8)
    assert bob.balance("TRY").total == D(10_000_000) + D(2000) - D("2.36")
    trade = engine.trades_of("alice")[0]
    assert (trade.side, trade.is_maker, trade.fee, trade.tax) == ("buy", False, D(4), D("0.72"))


def test_limit_buy_holds_notional_plus_fee_headroom_until_cancel() -> None:
    engine = make_engine()
    order = placed(engine, limit("alice", "buy", 1000, "1"))
    # headroom = max(maker, taker) * (1 + tax) = 0.002 * 1.18
    assert engine.wallet("alice").balance("TRY").locked == D(1000) * (1 + D("0.00236"))
    sell = placed(engine, limit("bob", "sell", 2000, "3"))
    assert engine.wallet("bob").balance("BTC").locked == D(3)
    assert engine.cancel("alice", order.order_id, T0 + 5) is order
    assert order.status == "Canceled"
    assert order.updated_ms == T0 + 5
    assert engine.wallet("alice").balance("TRY").locked == 0
    engine.cancel("bob", sell.order_id, T0)
    assert engine.wallet("bob").balance("BTC").locked == 0


def test_price_improvement_is_refunded_when_the_order_completes() -> None:
    engine = make_engine()
    placed(engine, limit("bob", "sell", 900, "1"))
    buy = placed(engine, limit("alice", "buy", 1000, "1"))
    assert buy.status == "Closed"
    wallet = engine.wallet("alice").balance("TRY")
    assert wallet.locked == 0
    assert wallet.total == D(10_000_000) - D(900) - D("1.8") - D("0.324")


def test_insufficient_funds_codes() -> None:
    engine = make_engine()
    engine.open_account("poor", {"TRY": D(1000), "BTC": D("0.5")})
    assert engine.place(limit("poor", "buy", 1000, "2"), T0) == Rejected("BALANCE_NOT_ENOUGH")
    assert engine.place(limit("poor", "sell", 1000, "0.6"), T0) == Rejected("BALANCE_NOT_ENOUGH")
    placed(engine, limit("poor", "sell", 5000, "0.4"))
    # 0.2 BTC exists but 0.4 of it is held by the open order
    assert engine.place(limit("poor", "sell", 5000, "0.2"), T0) == Rejected("FAILED_ORDER_WITH_OPEN_ORDERS")
    # exactly 1000 TRY cannot buy 1000 TRY of notional: the fee headroom is held too
    assert engine.place(limit("poor", "buy", 1000, "1"), T0) == Rejected("BALANCE_NOT_ENOUGH")


def test_market_buy_spends_quote_across_levels() -> None:
    engine = make_engine()
    placed(engine, limit("bob", "sell", 100, "1"))
    placed(engine, limit("bob", "sell", 102, "5"))
    engine.drain_events()
    order = placed(engine, market("alice", "buy", "304"))
    got = fills(engine)
    assert [(f.price, f.amount) for f in got] == [(D(100), D(1)), (D(102), D(2))]
    assert order.filled_quote == D(304)
    assert order.status == "Closed"
    assert order.left == 0
    assert engine.wallet("alice").balance("TRY").locked == 0
    assert engine.wallet("alice").balance("BTC").total == D(13)


def test_market_buy_leftover_smaller_than_one_step_is_closed() -> None:
    engine = make_engine()
    placed(engine, limit("bob", "sell", 3, "5"))
    order = placed(engine, market("alice", "buy", "10"))
    assert order.filled_base == D("3.33333333")
    assert order.left == D("0.00000001")
    assert order.status == "Closed"


def test_market_order_stops_at_five_percent_band() -> None:
    engine = make_engine()
    placed(engine, limit("bob", "sell", 100, "1"))
    placed(engine, limit("bob", "sell", 105, "1"))
    placed(engine, limit("bob", "sell", 106, "1"))
    order = placed(engine, market("alice", "buy", "1000"))
    assert order.filled_base == D(2)
    assert order.status == "Canceled"
    assert order.left == D(1000 - 205)
    assert engine.books["BTCTRY"].best_ask() == D(106)
    assert engine.wallet("alice").balance("TRY").locked == 0

    placed(engine, limit("carol", "buy", 200, "1"))
    placed(engine, limit("carol", "buy", 190, "1"))
    placed(engine, limit("carol", "buy", 189, "1"))
    sell = placed(engine, market("alice", "sell", "3"))
    assert sell.filled_base == D(2)
    assert sell.status == "Canceled"
    assert engine.wallet("alice").balance("BTC").locked == 0


def test_market_order_without_liquidity_is_rejected() -> None:
    engine = make_engine()
    assert engine.place(market("alice", "buy", "1000"), T0) == Rejected("FAILED_MARKET_ORDER")
    assert engine.orders_of("alice") == []


def test_cancel_errors() -> None:
    engine = make_engine()
    order = placed(engine, limit("alice", "buy", 100, "1"))
    assert engine.cancel("bob", order.order_id, T0) == Rejected("NO_ORDER_MATCHES_YOUR_REQUEST")
    assert engine.cancel("alice", 999_999, T0) == Rejected("NO_ORDER_MATCHES_YOUR_REQUEST")
    placed(engine, limit("bob", "sell", 100, "1"))
    assert order.status == "Closed"
    assert engine.cancel("alice", order.order_id, T0) == Rejected("ORDER_COULD_NOT_BE_CANCELED")


def test_events_tell_the_order_lifecycle() -> None:
    engine = make_engine()
    maker = placed(engine, limit("bob", "sell", 100, "1", cid="m1"))
    taker = placed(engine, limit("alice", "buy", 100, "1", cid="t1"))
    events = engine.drain_events()
    summary = [
        (e.kind, e.order.order_id, e.order.status) if isinstance(e, OrderEvent) else ("fill", e.trade_id, "")
        for e in events
    ]
    assert summary == [
        ("insert", maker.order_id, "Untouched"),
        ("insert", taker.order_id, "Untouched"),
        ("fill", 100, ""),
        ("delete", maker.order_id, "Closed"),
        ("delete", taker.order_id, "Closed"),
    ]
    assert engine.drain_events() == []


def test_duplicate_client_ids_are_accepted() -> None:
    engine = make_engine()
    a = placed(engine, limit("alice", "buy", 100, "1", cid="same"))
    b = placed(engine, limit("alice", "buy", 100, "1", cid="same"))
    assert a.order_id != b.order_id
    assert [o.client_id for o in engine.orders_of("alice")] == ["same", "same"]


def test_account_without_history_forgets_finished_orders() -> None:
    engine = make_engine()
    engine.open_account("crowd", {"TRY": D(10**9), "BTC": D(10**3)}, keep_history=False)
    rest = placed(engine, limit("crowd", "sell", 100, "1"))
    assert engine.order(rest.order_id) is rest
    placed(engine, limit("alice", "buy", 100, "1"))
    assert engine.order(rest.order_id) is None
    assert engine.trades_of("crowd") == []
    assert len(engine.trades_of("alice")) == 1


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_flow_conserves_assets_and_holds(seed: int) -> None:
    """Whatever happens, assets only leave as fees and held funds equal what open orders reserve."""
    engine = make_engine()
    rng = random.Random(seed)
    accounts = ["alice", "bob", "carol"]
    fees_paid = D(0)
    for step in range(400):
        account = rng.choice(accounts)
        roll = rng.random()
        if roll < 0.15:
            open_ = engine.open_orders(account)
            if open_:
                engine.cancel(account, rng.choice(open_).order_id, T0 + step)
        elif roll < 0.3:
            side = rng.choice(["buy", "sell"])
            qty = str(rng.randint(100, 5000)) if side == "buy" else f"0.{rng.randint(1, 99):02d}"
            engine.place(market(account, side, qty), T0 + step)
        else:
            side = rng.choice(["buy", "sell"])
            engine.place(limit(account, side, rng.randint(950, 1050), f"0.{rng.randint(1, 99):02d}"), T0 + step)
        for event in engine.drain_events():
            if isinstance(event, Fill):
                fees_paid += event.maker.fee + event.maker.tax + event.taker.fee + event.taker.tax
        for name in accounts:
            wallet = engine.wallet(name)
            open_orders = engine.open_orders(name)
            assert wallet.balance("TRY").locked == sum((o.reserved for o in open_orders if o.side == "buy"), D(0))
            assert wallet.balance("BTC").locked == sum((o.reserved for o in open_orders if o.side == "sell"), D(0))
            assert wallet.balance("BTC").locked == sum((o.left for o in open_orders if o.side == "sell"), D(0))
            for asset in ("TRY", "BTC"):
                assert 0 <= wallet.balance(asset).locked <= wallet.balance(asset).total
    total_try = sum((engine.wallet(n).balance("TRY").total for n in accounts), D(0))
    total_btc = sum((engine.wallet(n).balance("BTC").total for n in accounts), D(0))
    assert total_btc == D(30)
    assert total_try == D(30_000_000) - fees_paid
    assert fees_paid > 0
