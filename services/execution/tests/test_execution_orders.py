"""The order state machine: every edge, every refusal, and properties over random event sequences."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from decimal import Decimal
from typing import cast

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from btcbot.contracts import ids
from btcbot.contracts.messages import OrderAccepted, OrderCanceled, OrderFilled, OrderRejected, SubmitOrder
from btcbot.execution import orders
from btcbot.execution.orders import TERMINAL, TRANSITIONS, Fill, IllegalTransition, Order, Status

D = Decimal
TS = 1_700_000_000_000_000_000


def submit(quantity: str = "1", order_type: str = "limit", side: str = "buy") -> SubmitOrder:
    return SubmitOrder(
        id="submit:c1",
        ts_ns=TS,
        client_order_id="c1",
        intent_id="i1",
        strategy="s",
        symbol="BTCTRY",
        side=side,  # type: ignore[arg-type]
        order_type=order_type,  # type: ignore[arg-type]
        price=D("100") if order_type == "limit" else None,
        quantity=D(quantity),
    )


def new(quantity: str = "1", order_type: str = "limit", side: str = "buy") -> Order:
    return orders.from_submit(submit(quantity, order_type, side))


def trade(tid: str, qty: str, price: str = "100", xid: str = "X1") -> Fill:
    return Fill(
        trade_id=tid,
        exchange_order_id=xid,
        price=D(price),
        quantity=D(qty),
        fee=D("0.1"),
        tax=D("0.018"),
        base_asset="BTC",
        quote_asset="TRY",
        exchange_ts_ns=TS,
    )


def accepted(quantity: str = "1") -> Order:
    order = orders.submitting(new(quantity)).order
    return orders.accept(order, "X1", TS).order


def at(status: Status) -> Order:
    """An order in the given status, reached through legal transitions."""
    order = new()
    if status == Status.PENDING:
        return order
    order = orders.submitting(order).order
    if status == Status.SUBMITTING:
        return order
    if status == Status.REJECTED:
        return orders.reject(order, "R", "", TS).order
    order = orders.accept(order, "X1", TS).order
    if status == Status.ACCEPTED:
        return order
    if status == Status.FILLED:
        return orders.fill(order, trade("t1", "1"), TS).order
    if status == Status.CANCELED:
        return orders.canceled(order, TS).order
    if status == Status.CANCEL_PENDING:
        return orders.request_cancel(order).order
    return orders.fill(order, trade("t1", "0.4"), TS).order  # PARTIALLY_FILLED


def test_from_submit_copies_the_command() -> None:
    order = new("2")
    assert order.status == Status.PENDING
    assert order.client_order_id == "c1"
    assert order.quantity == D(2)
    assert order.price == D(100)
    assert order.filled_quantity == 0
    assert not order.trade_ids


def test_happy_path_emits_accept_then_fills() -> None:
    order = orders.submitting(new("1")).order
    assert order.status == Status.SUBMITTING
    step = orders.accept(order, "X1", TS)
    assert step.order.status == Status.ACCEPTED
    (event,) = step.events
    assert isinstance(event, OrderAccepted)
    assert event.id == ids.accepted_id("c1")
    assert event.exchange_order_id == "X1"
    step = orders.fill(step.order, trade("t1", "0.25"), TS + 1)
    assert step.order.status == Status.PARTIALLY_FILLED
    (filled,) = step.events
    assert isinstance(filled, OrderFilled)
    assert filled.id == ids.fill_id("BTCTRY", "t1", "X1")
    assert filled.fee == D("0.1")
    assert filled.tax == D("0.018")
    assert filled.fee_asset == "TRY"
    assert filled.base_asset == "BTC"
    assert filled.quote_asset == "TRY"
    step = orders.fill(step.order, trade("t2", "0.75"), TS + 2)
    assert step.order.status == Status.FILLED
    assert step.order.filled_quantity == D(1)
    assert step.order.trade_ids == {"t1", "t2"}


def test_fill_of_a_submitting_order_implies_acceptance() -> None:
    order = orders.submitting(new("1")).order
    step = orders.fill(order, trade("t1", "1", xid="X9"), TS)
    assert [type(e) for e in step.events] == [OrderAccepted, OrderFilled]
    assert step.order.exchange_order_id == "X9"
    assert step.order.status == Status.FILLED


def test_duplicate_trade_is_ignored() -> None:
    order = orders.fill(accepted(), trade("t1", "0.5"), TS).order
    again = orders.fill(order, trade("t1", "0.5"), TS)
    assert again.order == order
    assert again.events == ()


def test_overfill_is_refused() -> None:
    order = orders.fill(accepted(), trade("t1", "0.6"), TS).order
    with pytest.raises(IllegalTransition, match="overfill"):
        orders.fill(order, trade("t2", "0.5"), TS)


def test_fill_for_another_exchange_order_is_refused() -> None:
    with pytest.raises(IllegalTransition, match="belongs to"):
        orders.fill(accepted(), trade("t1", "0.1", xid="OTHER"), TS)


def test_non_positive_fill_is_refused() -> None:
    with pytest.raises(IllegalTransition, match="non-positive"):
        orders.fill(accepted(), trade("t1", "0"), TS)


def test_market_buy_is_sized_in_quote() -> None:
    order = orders.submitting(new("1000", order_type="market", side="buy")).order
    step = orders.fill(order, trade("t1", "5", price="100"), TS)  # 500 of 1000 TRY
    assert step.order.status == Status.PARTIALLY_FILLED
    step = orders.fill(step.order, trade("t2", "5", price="100"), TS)
    # Quote-sized orders complete only when the exchange says Closed.
    assert step.order.status == Status.PARTIALLY_FILLED
    with pytest.raises(IllegalTransition, match="overfill"):
        orders.fill(step.order, trade("t3", "0.01", price="100"), TS)
    assert orders.closed(step.order).order.status == Status.FILLED


def test_closed_limit_order_needs_every_fill() -> None:
    order = orders.fill(accepted(), trade("t1", "0.5"), TS).order
    with pytest.raises(IllegalTransition, match="completely filled"):
        orders.closed(order)
    with pytest.raises(IllegalTransition, match="without any known trade"):
        orders.closed(accepted())


def test_reject_from_pending_and_submitting() -> None:
    for order in (new(), orders.submitting(new()).order):
        step = orders.reject(order, "BALANCE_NOT_ENOUGH", "no money", TS)
        assert step.order.status == Status.REJECTED
        (event,) = step.events
        assert isinstance(event, OrderRejected)
        assert event.reason == "BALANCE_NOT_ENOUGH"
        assert event.id == ids.rejected_id("c1")
        assert orders.reject(step.order, "X", "", TS).events == ()


def test_reject_after_accept_is_refused() -> None:
    with pytest.raises(IllegalTransition):
        orders.reject(accepted(), "R", "", TS)


def test_accept_requires_submitting_and_one_exchange_id() -> None:
    with pytest.raises(IllegalTransition):
        orders.accept(new(), "X1", TS)
    order = accepted()
    assert orders.accept(order, "X1", TS).events == ()
    with pytest.raises(IllegalTransition, match="already accepted"):
        orders.accept(order, "X2", TS)
    with pytest.raises(IllegalTransition, match="empty"):
        orders.accept(orders.submitting(new()).order, "", TS)


def test_cancel_flow_carries_filled_quantity() -> None:
    order = orders.fill(accepted(), trade("t1", "0.3"), TS).order
    order = orders.request_cancel(order).order
    assert order.status == Status.CANCEL_PENDING
    order = orders.fill(order, trade("t2", "0.2"), TS).order
    assert order.status == Status.CANCEL_PENDING
    step = orders.canceled(order, TS, "stale")
    (event,) = step.events
    assert isinstance(event, OrderCanceled)
    assert event.filled_quantity == D("0.5")
    assert event.reason == "stale"
    assert event.id == ids.canceled_id("c1")
    assert event.exchange_order_id == "X1"
    assert orders.canceled(step.order, TS).events == ()


def test_fill_completing_a_cancel_pending_order_fills_it() -> None:
    order = orders.request_cancel(accepted()).order
    assert orders.fill(order, trade("t1", "1"), TS).order.status == Status.FILLED


def test_cancel_refused_returns_to_resting_state() -> None:
    order = orders.request_cancel(accepted()).order
    assert orders.cancel_refused(order).order.status == Status.ACCEPTED
    partial = orders.request_cancel(orders.fill(accepted(), trade("t1", "0.1"), TS).order).order
    assert orders.cancel_refused(partial).order.status == Status.PARTIALLY_FILLED


@pytest.mark.parametrize("status", sorted(TERMINAL))
def test_terminal_states_refuse_every_change(status: Status) -> None:
    order = at(status)
    attempts: list[Callable[[], orders.Step]] = [
        lambda: orders.submitting(order),
        lambda: orders.request_cancel(order),
        lambda: orders.fill(order, trade("new", "0.0001"), TS),
    ]
    if status != Status.REJECTED:
        attempts.append(lambda: orders.reject(order, "R", "", TS))
    if status != Status.CANCELED:
        attempts.append(lambda: orders.canceled(order, TS))
    if status != Status.FILLED:
        attempts.append(lambda: orders.closed(order))
    for attempt in attempts:
        with pytest.raises(IllegalTransition):
            attempt()


@pytest.mark.parametrize("status", list(Status))
def test_at_builds_every_status(status: Status) -> None:
    assert at(status).status == status


def test_illegal_edge_is_refused_by_table() -> None:
    # Forcing a table-less edge through a helper must fail: FILLED has no way out.
    filled = at(Status.FILLED)
    assert TRANSITIONS[Status.FILLED] == frozenset()
    with pytest.raises(IllegalTransition):
        orders.request_cancel(filled)


# ---- properties over random event sequences -------------------------------------------------

ACTIONS = ("submitting", "accept", "accept_other", "reject", "fill", "request_cancel", "cancel_refused",
           "canceled", "closed")  # fmt: skip

action = st.one_of(
    st.sampled_from([a for a in ACTIONS if a != "fill"]).map(lambda a: (a, None)),
    st.tuples(
        st.just("fill"),
        st.tuples(
            st.sampled_from(["t1", "t2", "t3", "t4", "t5", "t6"]),
            st.integers(min_value=-1, max_value=60).map(lambda n: D(n) / 100),
            st.sampled_from(["X1", "X2"]),
        ),
    ),
)


def apply(order: Order, act: tuple[str, object]) -> orders.Step:
    name, arg = act
    if name == "submitting":
        return orders.submitting(order)
    if name == "accept":
        return orders.accept(order, "X1", TS)
    if name == "accept_other":
        return orders.accept(order, "X2", TS)
    if name == "reject":
        return orders.reject(order, "R", "", TS)
    if name == "fill":
        tid, qty, xid = cast(tuple[str, Decimal, str], arg)
        return orders.fill(order, trade(tid, str(qty), xid=xid), TS)
    if name == "request_cancel":
        return orders.request_cancel(order)
    if name == "cancel_refused":
        return orders.cancel_refused(order)
    if name == "canceled":
        return orders.canceled(order, TS)
    return orders.closed(order)


@settings(max_examples=400, deadline=None)
@given(
    quantity=st.integers(min_value=1, max_value=150).map(lambda n: D(n) / 100),
    actions=st.lists(action, max_size=25),
)
def test_random_sequences_keep_invariants(quantity: Decimal, actions: list[tuple[str, object]]) -> None:
    order = replace(new(), quantity=quantity)
    emitted: list[object] = []
    fills_by_trade: dict[str, int] = {}
    for act in actions:
        before = order
        try:
            step = apply(order, act)
        except IllegalTransition as exc:
            refused_in = exc.status
            assert refused_in == before.status  # a refusal leaves the order as it was
            continue
        order = step.order
        emitted.extend(step.events)
        # Only edges of the table, and a terminal state never changes.
        assert order.status == before.status or order.status in TRANSITIONS[before.status]
        if before.is_terminal:
            assert order == before
            assert step.events == ()
        # Never more filled than ordered; the filled quantity is the sum of distinct trades.
        assert order.filled_quantity <= order.quantity
        for event in step.events:
            if isinstance(event, OrderFilled):
                fills_by_trade[event.trade_id] = fills_by_trade.get(event.trade_id, 0) + 1
        assert order.trade_ids == set(fills_by_trade)
    assert all(n == 1 for n in fills_by_trade.values()), "a trade id was booked twice"
    fills = [e for e in emitted if isinstance(e, OrderFilled)]
    assert sum((f.quantity for f in fills), D(0)) == order.filled_quantity
    assert len([e for e in emitted if isinstance(e, OrderAccepted)]) <= 1
    terminal_events = [e for e in emitted if isinstance(e, OrderRejected | OrderCanceled)]
    assert len(terminal_events) <= 1
    if any(isinstance(e, OrderRejected) for e in emitted):
        assert not fills
        assert order.status == Status.REJECTED
    if fills:
        assert all(f.exchange_order_id == order.exchange_order_id for f in fills)
    if order.status == Status.FILLED:
        assert order.filled_quantity == order.quantity


@settings(max_examples=200, deadline=None)
@given(parts=st.lists(st.integers(min_value=1, max_value=50), min_size=1, max_size=8), data=st.data())
def test_replaying_fills_in_any_order_and_twice_is_idempotent(parts: list[int], data: st.DataObject) -> None:
    quantity = D(sum(parts)) / 100
    trades = [trade(f"t{i}", str(D(p) / 100)) for i, p in enumerate(parts)]
    replayed = data.draw(st.permutations(trades + trades))
    order = orders.accept(orders.submitting(replace(new(), quantity=quantity)).order, "X1", TS).order
    events: list[object] = []
    for t in replayed:
        step = orders.fill(order, t, TS)
        order = step.order
        events.extend(step.events)
    assert order.status == Status.FILLED
    assert order.filled_quantity == quantity
    assert len(events) == len(parts)
