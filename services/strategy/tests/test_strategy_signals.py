from decimal import Decimal

from btcbot.contracts import ids
from btcbot.contracts.messages import (
    BookSnapshot,
    CancelOrder,
    Level,
    OrderAccepted,
    OrderCanceled,
    OrderFilled,
    OrderIntent,
    OrderRejected,
    PortfolioSnapshot,
    Position,
)
from btcbot.strategy.signals import STRATEGY, Hold, ProfitParams, ProfitV1, round_down, spread_bps

D = Decimal
S = 1_000_000_000
T0 = 1_700_000_000 * S


def book(bid="1000000", ask="1000100", *, at=T0, stale=False, seq=1, symbol="BTCTRY", empty=False):
    exchange_ts = at
    return BookSnapshot(
        id=ids.book_id(symbol, exchange_ts, seq),
        ts_ns=at,
        symbol=symbol,
        sequence=seq,
        bids=() if empty else (Level(D(bid), D("1")),),
        asks=(Level(D(ask), D("1")),),
        exchange_ts_ns=exchange_ts,
        received_ts_ns=at,
        stale=stale,
    )


def portfolio(qty="0", cost="0", *, at=T0, symbol="BTCTRY"):
    positions = (
        ()
        if D(qty) == 0
        else (Position(symbol=symbol, quantity=D(qty), avg_cost=D(cost), realized_pnl=D(0), unrealized_pnl=D(0)),)
    )
    return PortfolioSnapshot(
        id=f"p:{at}",
        ts_ns=at,
        account="main",
        quote_asset="TRY",
        balances=(),
        positions=positions,
        exposure=D(0),
        realized_pnl=D(0),
        unrealized_pnl=D(0),
        fees=D(0),
        equity=D(0),
        peak_equity=D(0),
        drawdown=D(0),
        fills=0,
    )


def fill(intent: OrderIntent, qty, trade="t1", price=None):
    return OrderFilled(
        id=ids.fill_id(intent.symbol, trade, "1"),
        ts_ns=T0,
        client_order_id=ids.client_order_id(intent.id),
        exchange_order_id="1",
        strategy=STRATEGY,
        symbol=intent.symbol,
        side=intent.side,
        trade_id=trade,
        price=price or intent.price,
        quantity=D(qty),
        fee=D(0),
        fee_asset="TRY",
    )


def accepted(intent: OrderIntent):
    coid = ids.client_order_id(intent.id)
    return OrderAccepted(
        id=ids.accepted_id(coid),
        ts_ns=T0,
        client_order_id=coid,
        exchange_order_id="1",
        intent_id=intent.id,
        strategy=STRATEGY,
        symbol=intent.symbol,
        side=intent.side,
        order_type="limit",
        price=intent.price,
        quantity=intent.quantity,
    )


def rejected(intent: OrderIntent):
    coid = ids.client_order_id(intent.id)
    return OrderRejected(
        id=ids.rejected_id(coid),
        ts_ns=T0,
        client_order_id=coid,
        intent_id=intent.id,
        strategy=STRATEGY,
        symbol=intent.symbol,
        reason="X",
    )


def engine(**kw) -> ProfitV1:
    e = ProfitV1(("BTCTRY", "ETHTRY"), ProfitParams(**kw))
    e.on_portfolio(portfolio())
    return e


def test_helpers():
    assert round_down(D("0.123456789"), 8) == D("0.12345678")
    assert spread_bps(D("99"), D("101")) == D("200")


def test_entry_when_flat_and_spread_tight():
    e = engine()
    b = book()
    d = e.on_book(b, T0)
    assert isinstance(d, OrderIntent)
    assert d.id == ids.intent_id(STRATEGY, "BTCTRY", b.id)
    assert (d.side, d.order_type, d.price) == ("buy", "limit", D("1000100"))
    assert d.quantity == round_down(D(1000) / D("1000100"), 8)
    assert d.quantity * d.price <= D(1000)
    assert d.book_id == b.id
    assert d.reason.startswith("entry")
    assert d.ts_ns == T0


def test_no_entry_on_wide_spread_stale_empty_or_old_book():
    e = engine(max_spread_bps=D(30))
    assert isinstance(e.on_book(book("1000000", "1004000"), T0), Hold)
    assert e.on_book(book(stale=True), T0) == Hold("book is stale")
    assert e.on_book(book(at=T0), T0 + 6 * S) == Hold("book is stale")
    assert e.on_book(book(empty=True), T0) == Hold("book is empty on one side")
    assert isinstance(e.on_book(book("1000100", "1000100"), T0), Hold)
    assert isinstance(e.on_book(book(), T0), OrderIntent)


def test_no_action_before_the_first_portfolio_unless_configured():
    e = ProfitV1(("BTCTRY",), ProfitParams())
    assert e.on_book(book(), T0) == Hold("no portfolio snapshot yet")
    e2 = ProfitV1(("BTCTRY",), ProfitParams(require_portfolio=False))
    assert isinstance(e2.on_book(book(), T0), OrderIntent)


def test_unknown_symbol_is_ignored():
    e = engine()
    assert isinstance(e.on_book(book(symbol="XRPTRY"), T0), Hold)


def test_one_order_in_flight_until_filled_completely():
    e = engine(cooldown_ns=0)
    intent = e.on_book(book(seq=1), T0)
    assert isinstance(intent, OrderIntent)
    assert isinstance(e.on_book(book(seq=2), T0 + 1), Hold)
    assert e.on_accepted(accepted(intent))
    half = intent.quantity / 2
    assert e.on_filled(fill(intent, half, "a"), T0 + 2)
    assert e.state("BTCTRY").inflight is not None
    # A redelivered fill is counted once.
    e.on_filled(fill(intent, half, "a"), T0 + 2)
    assert e.state("BTCTRY").inflight is not None
    e.on_filled(fill(intent, intent.quantity - half, "b"), T0 + 3)
    assert e.state("BTCTRY").inflight is None


def test_waits_for_the_ledger_after_fills_then_takes_profit():
    e = engine(cooldown_ns=0, portfolio_wait_ns=10 * S)
    buy = e.on_book(book(seq=1), T0)
    assert isinstance(buy, OrderIntent)
    e.on_filled(fill(buy, buy.quantity), T0 + 1)
    # The ledger has not booked the fill yet: the position still reads flat, so no second buy.
    assert e.on_book(book(seq=2, at=T0 + 2), T0 + 2) == Hold("waiting for the ledger to book the last fills")
    e.on_portfolio(portfolio(str(buy.quantity), "1000100", at=T0 + 3))
    assert e.state("BTCTRY").awaiting_since_ns is None
    held = e.on_book(book("1000200", "1000300", seq=3, at=T0 + 4), T0 + 4)
    assert isinstance(held, Hold)
    assert held.reason.startswith("holding")
    # Take profit at avg cost * 1.0005 = 1000600.05: a bid of 1000600 is not enough, 1000610 is.
    assert isinstance(e.on_book(book("1000600", "1000700", seq=4, at=T0 + 5), T0 + 5), Hold)
    sell = e.on_book(book("1000610", "1000700", seq=5, at=T0 + 6), T0 + 6)
    assert isinstance(sell, OrderIntent)
    assert (sell.side, sell.price, sell.quantity) == ("sell", D("1000610"), buy.quantity)
    assert sell.reduce_only
    assert sell.reason.startswith("take profit")


def test_ledger_snapshot_before_fill_event_needs_no_wait():
    e = engine(cooldown_ns=0)
    buy = e.on_book(book(seq=1), T0)
    assert isinstance(buy, OrderIntent)
    e.on_portfolio(portfolio(str(buy.quantity), "1000100", at=T0 + 1))
    e.on_filled(fill(buy, buy.quantity), T0 + 2)
    assert e.state("BTCTRY").awaiting_since_ns is None


def test_ledger_wait_times_out():
    e = engine(cooldown_ns=0, portfolio_wait_ns=10 * S)
    buy = e.on_book(book(seq=1), T0)
    assert isinstance(buy, OrderIntent)
    e.on_filled(fill(buy, buy.quantity), T0)
    assert isinstance(e.on_book(book(seq=2, at=T0 + 9 * S), T0 + 9 * S), Hold)
    assert isinstance(e.on_book(book(seq=3, at=T0 + 10 * S), T0 + 10 * S), OrderIntent)


def test_stop_loss_only_when_configured():
    e = engine(cooldown_ns=0)
    e.on_portfolio(portfolio("0.001", "1000000", at=T0 + 1))
    assert isinstance(e.on_book(book("900000", "900100"), T0), Hold)
    e = engine(cooldown_ns=0, stop_loss_bps=D(100))
    e.on_portfolio(portfolio("0.001", "1000000", at=T0 + 1))
    assert isinstance(e.on_book(book("990100", "990200"), T0), Hold)
    d = e.on_book(book("990000", "990100", seq=2), T0)
    assert isinstance(d, OrderIntent)
    assert d.side == "sell"
    assert d.reason.startswith("stop loss")


def test_dust_position_counts_as_flat():
    e = engine(dust_notional=D(100))
    e.on_portfolio(portfolio("0.00005", "1000000", at=T0 + 1))  # 50 TRY
    d = e.on_book(book(), T0)
    assert isinstance(d, OrderIntent)
    assert d.side == "buy"


def test_cooldown_between_intents():
    e = engine(cooldown_ns=5 * S)
    first = e.on_book(book(seq=1), T0)
    assert isinstance(first, OrderIntent)
    e.on_rejected(rejected(first), T0 + 1)
    assert e.on_book(book(seq=2, at=T0 + S), T0 + S) == Hold("cooling down after the last intent")
    assert isinstance(e.on_book(book(seq=3, at=T0 + 5 * S), T0 + 5 * S), OrderIntent)


def test_unanswered_intent_expires_but_accepted_order_does_not():
    e = engine(cooldown_ns=0, intent_timeout_ns=10 * S, order_ttl_ns=60 * S)
    first = e.on_book(book(seq=1), T0)
    assert isinstance(first, OrderIntent)
    assert isinstance(e.on_book(book(seq=2, at=T0 + 9 * S), T0 + 9 * S), Hold)
    second = e.on_book(book(seq=3, at=T0 + 10 * S), T0 + 10 * S)
    assert isinstance(second, OrderIntent)
    assert second.id != first.id
    # Events of the expired order no longer match what is in flight.
    assert not e.on_rejected(rejected(first), T0 + 11 * S)
    assert e.on_accepted(accepted(second))
    assert isinstance(e.on_book(book(seq=4, at=T0 + 30 * S), T0 + 30 * S), Hold)


def test_resting_order_is_canceled_after_ttl_once():
    e = engine(cooldown_ns=0, order_ttl_ns=60 * S)
    intent = e.on_book(book(seq=1), T0)
    assert isinstance(intent, OrderIntent)
    e.on_accepted(accepted(intent))
    coid = ids.client_order_id(intent.id)
    cancel = e.on_book(book(seq=2, at=T0 + 60 * S), T0 + 60 * S)
    assert isinstance(cancel, CancelOrder)
    assert cancel.client_order_id == coid
    assert cancel.id == ids.cancel_command_id(coid, "ttl")
    assert isinstance(e.on_book(book(seq=3, at=T0 + 61 * S), T0 + 61 * S), Hold)
    canceled = OrderCanceled(
        id=ids.canceled_id(coid),
        ts_ns=T0,
        client_order_id=coid,
        exchange_order_id="1",
        symbol="BTCTRY",
        filled_quantity=D(0),
    )
    assert e.on_canceled(canceled, T0 + 62 * S)
    assert e.state("BTCTRY").inflight is None
    assert e.state("BTCTRY").awaiting_since_ns is None


def test_partially_filled_cancel_waits_for_the_ledger():
    e = engine(cooldown_ns=0)
    intent = e.on_book(book(seq=1), T0)
    assert isinstance(intent, OrderIntent)
    coid = ids.client_order_id(intent.id)
    canceled = OrderCanceled(
        id=ids.canceled_id(coid),
        ts_ns=T0,
        client_order_id=coid,
        exchange_order_id="1",
        symbol="BTCTRY",
        filled_quantity=D("0.0001"),
    )
    e.on_canceled(canceled, T0 + 1)
    assert e.state("BTCTRY").awaiting_since_ns == T0 + 1


def test_forget_undoes_an_unpublished_intent():
    e = engine(cooldown_ns=10 * S)
    intent = e.on_book(book(seq=1), T0)
    assert isinstance(intent, OrderIntent)
    e.forget(intent)
    again = e.on_book(book(seq=1), T0)
    assert again == intent


def test_older_portfolio_snapshots_are_ignored():
    e = engine()
    assert e.on_portfolio(portfolio("1", "10", at=T0 + 10))
    assert not e.on_portfolio(portfolio("0", "0", at=T0 + 5))
    assert e.state("BTCTRY").quantity == D("1")


def test_symbols_are_independent():
    e = engine(cooldown_ns=10 * S)
    assert isinstance(e.on_book(book(symbol="BTCTRY"), T0), OrderIntent)
    assert isinstance(e.on_book(book(symbol="BTCTRY", seq=2), T0), Hold)
    assert isinstance(e.on_book(book(symbol="ETHTRY", seq=2), T0), OrderIntent)


def test_a_large_position_is_sold_in_slices_within_the_order_limit():
    e = engine(cooldown_ns=0, max_order_notional=D(5000))
    e.on_portfolio(portfolio("0.01", "1000000", at=T0 + 1))  # worth ~10000 TRY
    d = e.on_book(book("1001000", "1001100"), T0)
    assert isinstance(d, OrderIntent)
    assert d.side == "sell"
    assert d.quantity == round_down(D(5000) / D("1001000"), 8)
    assert d.quantity * d.price <= D(5000)


def test_resting_order_is_canceled_when_the_mid_drifts_away_then_replaced_after_confirmation():
    e = engine(cooldown_ns=0, order_ttl_ns=600 * S, max_drift_bps=D(50))
    intent = e.on_book(book(seq=1), T0)  # buy at the ask, 1000100
    assert isinstance(intent, OrderIntent)
    e.on_accepted(accepted(intent))
    coid = ids.client_order_id(intent.id)
    # 40 bps away: still within the limit.
    assert isinstance(e.on_book(book("1003900", "1004100", seq=2, at=T0 + S), T0 + S), Hold)
    cancel = e.on_book(book("1010000", "1010200", seq=3, at=T0 + 2 * S), T0 + 2 * S)  # ~100 bps
    assert isinstance(cancel, CancelOrder)
    assert cancel.reason == "drift"
    assert cancel.id == ids.cancel_command_id(coid, "drift")
    # No replacement until the cancel is confirmed.
    assert isinstance(e.on_book(book("1010000", "1010200", seq=4, at=T0 + 3 * S), T0 + 3 * S), Hold)
    e.on_canceled(
        OrderCanceled(
            id=ids.canceled_id(coid),
            ts_ns=T0,
            client_order_id=coid,
            exchange_order_id="1",
            symbol="BTCTRY",
            filled_quantity=D(0),
        ),
        T0 + 4 * S,
    )
    replacement = e.on_book(book("1010000", "1010200", seq=5, at=T0 + 5 * S), T0 + 5 * S)
    assert isinstance(replacement, OrderIntent)
    assert replacement.price == D("1010200")


def test_drift_cancel_can_be_switched_off():
    e = engine(cooldown_ns=0, order_ttl_ns=600 * S, max_drift_bps=None)
    intent = e.on_book(book(seq=1), T0)
    assert isinstance(intent, OrderIntent)
    e.on_accepted(accepted(intent))
    assert isinstance(e.on_book(book("2000000", "2000100", seq=2, at=T0 + S), T0 + S), Hold)
