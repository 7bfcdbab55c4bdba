from decimal import Decimal

import msgspec

from btcbot.contracts import ids
from btcbot.contracts.messages import (
    Balance,
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
from btcbot.strategy.positions import Known, Unknown
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


def portfolio(qty="0", cost="0", *, at=T0, symbol="BTCTRY", exec_seq=0, above=(), opening="0"):
    positions = (
        ()
        if D(qty) == 0
        else (
            Position(
                symbol=symbol,
                quantity=D(qty),
                avg_cost=D(cost),
                realized_pnl=D(0),
                unrealized_pnl=D(0),
                opening_quantity=D(opening),
            ),
        )
    )
    return PortfolioSnapshot(
        id=f"p:{at}",
        ts_ns=at,
        account="main",
        quote_asset="TRY",
        balances=(Balance(asset="TRY", total=D("1000000")),),
        positions=positions,
        exposure=D(0),
        realized_pnl=D(0),
        unrealized_pnl=D(0),
        fees=D(0),
        equity=D(0),
        peak_equity=D(0),
        drawdown=D(0),
        fills=0,
        exec_seq=exec_seq,
        exec_seqs_above=tuple(above),
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
    # The original's entry: min(free TRY, 100 TRY) at the ask.
    assert d.quantity == round_down(D(100) / D("1000100"), 8)
    assert d.quantity * d.price <= D(100)
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
    assert e.on_book(book(), T0) == Hold("position unknown (NO_SNAPSHOT): no portfolio snapshot yet")
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


def live(**kw) -> ProfitV1:
    """The service's engine: the position is the snapshot plus the fills seen after its watermark."""
    e = ProfitV1(("BTCTRY", "ETHTRY"), ProfitParams(**kw), track_fills=True)
    e.start_at(10)
    e.on_portfolio(portfolio(exec_seq=10))
    return e


def test_a_fill_counts_at_once_then_takes_profit_without_waiting_for_the_ledger():
    e = live(cooldown_ns=0)
    buy = e.on_book(book(seq=1), T0)
    assert isinstance(buy, OrderIntent)
    e.on_execution_seen(11)
    e.saw_fill(fill(buy, buy.quantity), 11)
    e.on_filled(fill(buy, buy.quantity), T0 + 1)
    # The ledger has not booked the fill yet (its snapshot reflects up to 10): the fill counts anyway.
    held = e.on_book(book("1000200", "1000300", seq=3, at=T0 + 4), T0 + 4)
    assert isinstance(held, Hold)
    # Take profit at avg cost * 1.003 = 1003100.3: a bid of 1003100 is not enough, 1003110 is.
    assert isinstance(e.on_book(book("1003100", "1003200", seq=4, at=T0 + 5), T0 + 5), Hold)
    sell = e.on_book(book("1003110", "1003200", seq=5, at=T0 + 6), T0 + 6)
    assert isinstance(sell, OrderIntent)
    # A quarter of the position, rounded down to 8 decimals.
    assert (sell.side, sell.price, sell.quantity) == ("sell", D("1003110"), round_down(buy.quantity / 4, 8))
    assert sell.reduce_only
    # The ledger's snapshot catches up (reflects 11): the fill is not counted twice.
    e.on_portfolio(portfolio(str(buy.quantity), "1000100", exec_seq=11))
    assert e.position("BTCTRY") == Known(buy.quantity, D("1000100"))


def test_a_stale_snapshot_never_sells_the_same_position_twice():
    """The incident: the ledger stops publishing (Postgres down) after a sell filled; no second sell, ever."""
    e = live(cooldown_ns=0, sell_fraction=D(1))  # the whole position in one sell, as in the incident
    e.on_portfolio(portfolio("0.002", "1000000", exec_seq=20))
    sell = e.on_book(book("1004000", "1004100", seq=1), T0)
    assert isinstance(sell, OrderIntent)
    assert sell.side == "sell"
    assert sell.quantity == D("0.002")
    # Deliveries 11..20 came before; 21 is the sell's fill.
    for seq in range(11, 21):
        e.on_execution_seen(seq)
    e.on_execution_seen(21)
    e.saw_fill(fill(sell, sell.quantity), 21)
    e.on_filled(fill(sell, sell.quantity), T0 + 1)
    for minute in range(1, 30):  # no new snapshot for half an hour: still flat, so it buys, never sells
        d = e.on_book(book("1001000", "1001100", seq=minute + 1, at=T0 + minute * 60 * S), T0 + minute * 60 * S)
        assert not (isinstance(d, OrderIntent) and d.side == "sell")
        if isinstance(d, OrderIntent):
            e.on_rejected(rejected(d), T0 + minute * 60 * S)


def test_no_trading_while_the_position_cannot_be_known():
    e = ProfitV1(("BTCTRY",), ProfitParams(), track_fills=True)
    assert e.on_book(book(), T0).reason.startswith("position unknown (NO_SNAPSHOT)")  # type: ignore[union-attr]
    e.on_portfolio(portfolio(exec_seq=5))
    assert e.on_book(book(), T0).reason.startswith("position unknown (NO_COVERAGE)")  # type: ignore[union-attr]
    # Our consumer starts after 9: fills 6..9 could be anywhere until the ledger reflects them.
    e.start_at(9)
    assert e.on_book(book(), T0).reason.startswith("position unknown (EXECUTION_GAP)")  # type: ignore[union-attr]
    e.on_portfolio(portfolio(exec_seq=9))
    assert isinstance(e.on_book(book(), T0), OrderIntent)


def test_a_gap_in_deliveries_stops_trading_until_the_ledger_passes_it():
    e = live(cooldown_ns=0)
    assert e.on_execution_seen(11)
    assert not e.on_execution_seen(14)  # 12 and 13 never came
    assert isinstance(e.position("BTCTRY"), Unknown)
    e.on_portfolio(portfolio(exec_seq=13))
    assert e.position("BTCTRY") == Known(D(0), D(0))


def test_an_uncountable_fill_blocks_its_symbol_until_the_ledger_reflects_it():
    e = live()
    bad = OrderFilled(
        id="f-bad", ts_ns=T0, client_order_id="x", exchange_order_id="9", strategy="other", symbol="BTCTRY",
        side="buy", trade_id="t9", price=D("NaN"), quantity=D(1), fee=D(0), fee_asset="TRY",
    )  # fmt: skip
    e.on_execution_seen(11)
    e.saw_fill(bad, 11)
    assert e.position("BTCTRY").code == "UNCOUNTABLE_FILL"  # type: ignore[union-attr]
    assert isinstance(e.position("ETHTRY"), Known)
    e.on_portfolio(portfolio(exec_seq=11))
    assert isinstance(e.position("BTCTRY"), Known)


def test_a_snapshot_of_fills_applied_out_of_order_is_not_taken():
    """After an outage the ledger drains redeliveries out of order: a sell booked before its buy draws on the
    opening holdings, so that snapshot's own quantity plus the pending buy would count the buy twice."""
    e = live()
    buy = OrderIntent(
        id="i", ts_ns=T0, strategy=STRATEGY, symbol="BTCTRY", side="buy", order_type="limit",
        price=D(100), quantity=D(1), reason="", book_id="b",
    )  # fmt: skip
    sell = OrderIntent(
        id="j", ts_ns=T0, strategy=STRATEGY, symbol="BTCTRY", side="sell", order_type="limit",
        price=D(100), quantity=D(1), reason="", book_id="b",
    )  # fmt: skip
    for seq, intent, trade in ((11, buy, "t11"), (12, sell, "t12"), (13, buy, "t13")):
        e.on_execution_seen(seq)
        e.saw_fill(fill(intent, "1", trade=trade), seq)
    assert e.position("BTCTRY") == Known(D(1), D(100))
    # The ledger booked 12 and 13 but not 11 yet: own 1 (13), opening 4 of 5 (the sell drew on it).
    assert not e.on_portfolio(portfolio("5", "100", exec_seq=10, above=(12, 13), opening="4"))
    assert e.position("BTCTRY") == Known(D(1), D(100))
    # A second copy of a fill (another message id, same trade) never counts again.
    e.on_execution_seen(14)
    assert not e.saw_fill(fill(buy, "1", trade="t11"), 14)
    assert e.position("BTCTRY") == Known(D(1), D(100))
    # In order again: the snapshot is taken and nothing is counted twice.
    assert e.on_portfolio(portfolio("1", "100", exec_seq=14, opening="0"))
    assert e.position("BTCTRY") == Known(D(1), D(100))


def test_opening_holdings_are_not_the_strategy_s_to_trade():
    e = live()
    e.on_portfolio(portfolio("5", "0", exec_seq=10, opening="5"))
    assert e.position("BTCTRY") == Known(D(0), D(0))
    assert e.on_book(book(), T0).side == "buy"  # type: ignore[union-attr]


def test_older_snapshots_by_watermark_are_ignored_whatever_their_clock():
    e = live()
    assert e.on_portfolio(portfolio("1", "10", at=T0, exec_seq=12))
    # Dated an hour ahead but reflecting less of the stream: ignored.
    assert not e.on_portfolio(portfolio("0", "0", at=T0 + 3600 * S, exec_seq=11))
    assert e.position("BTCTRY") == Known(D(1), D(10))


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


def test_forget_undoes_an_unpublished_intent():
    e = engine(cooldown_ns=10 * S)
    intent = e.on_book(book(seq=1), T0)
    assert isinstance(intent, OrderIntent)
    e.forget(intent)
    again = e.on_book(book(seq=1), T0)
    assert again == intent


def test_symbols_are_independent():
    e = engine(cooldown_ns=10 * S)
    assert isinstance(e.on_book(book(symbol="BTCTRY"), T0), OrderIntent)
    assert isinstance(e.on_book(book(symbol="BTCTRY", seq=2), T0), Hold)
    assert isinstance(e.on_book(book(symbol="ETHTRY", seq=2), T0), OrderIntent)


def test_a_large_position_is_sold_in_slices_within_the_order_limit():
    e = engine(cooldown_ns=0, max_order_notional=D(2000))
    e.on_portfolio(portfolio("0.01", "1000000", at=T0 + 1))  # worth ~10000 TRY: a quarter is ~2500
    d = e.on_book(book("1004000", "1004100"), T0)
    assert isinstance(d, OrderIntent)
    assert d.side == "sell"
    assert d.quantity == round_down(D(2000) / D("1004000"), 8)
    assert d.quantity * d.price <= D(2000)


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


def test_an_unsigned_rejection_naming_our_order_leaves_it_in_flight():
    # Execution refused a forged command that reused our client order id: our own order is still out there.
    e = engine(cooldown_ns=0, intent_timeout_ns=60 * S)
    first = e.on_book(book(seq=1), T0)
    assert isinstance(first, OrderIntent)
    forged = msgspec.structs.replace(rejected(first), reason="UNSIGNED", id="rejected:x:UNSIGNED:1")
    assert not e.on_rejected(forged, T0 + 1)
    assert isinstance(e.on_book(book(seq=2, at=T0 + S), T0 + S), Hold)
    assert e.on_rejected(rejected(first), T0 + 2)
