"""Reconciliation diffing, trade matching, and the claim record round trip."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from btcbot.contracts.messages import OrderAccepted, OrderCanceled, OrderFilled, SubmitOrder
from btcbot.execution import orders
from btcbot.execution.orders import Fill, IllegalTransition, Order, Status
from btcbot.execution.reconcile import ExchangeOrder, ExchangeStatus, Verdict, reconcile
from btcbot.execution.record import CorruptRecord, Phase, Record, from_fields, has_order, to_fields

D = Decimal
TS = 1_700_000_000_000_000_000


def order(quantity: str = "1", order_type: str = "limit") -> Order:
    cmd = SubmitOrder(
        id="submit:c1", ts_ns=TS, client_order_id="c1", intent_id="i1", strategy="s", symbol="BTCTRY",
        side="sell", order_type=order_type,  # type: ignore[arg-type]
        price=D("100") if order_type == "limit" else None, quantity=D(quantity),
    )  # fmt: skip
    return orders.from_submit(cmd)


def fill(tid: str, qty: str, xid: str = "X1", ts: int = 0, coid: str | None = "c1") -> Fill:
    return Fill(tid, xid, D("100"), D(qty), D("0.1"), D("0.02"), "BTC", "TRY", ts, coid)


def seen(status: ExchangeStatus = ExchangeStatus.OPEN, filled: str = "0", xid: str = "X1") -> ExchangeOrder:
    return ExchangeOrder(xid, "c1", status, D(filled))


def kinds(result: object) -> list[type]:
    return [type(e) for e in result.events]  # type: ignore[attr-defined]


def test_not_found_changes_nothing() -> None:
    mine = orders.submitting(order()).order
    result = reconcile(mine, None, [], TS)
    assert result.verdict == Verdict.NOT_FOUND
    assert result.order == mine
    assert result.events == ()


def test_found_open_order_is_accepted() -> None:
    result = reconcile(orders.submitting(order()).order, seen(), [], TS)
    assert result.verdict == Verdict.SYNCED
    assert kinds(result) == [OrderAccepted]
    assert result.order.status == Status.ACCEPTED
    assert result.order.exchange_order_id == "X1"


def test_pending_order_found_at_exchange_is_adopted() -> None:
    result = reconcile(order(), seen(), [], TS)
    assert result.order.status == Status.ACCEPTED
    assert kinds(result) == [OrderAccepted]


def test_missing_fills_then_cancel_in_that_order() -> None:
    trades = [fill("t2", "0.2", ts=2), fill("t1", "0.1", ts=1), fill("other", "0.5", xid="X9")]
    result = reconcile(orders.submitting(order()).order, seen(ExchangeStatus.CANCELED, "0.3"), trades, TS)
    assert result.verdict == Verdict.SYNCED
    assert kinds(result) == [OrderAccepted, OrderFilled, OrderFilled, OrderCanceled]
    assert [e.trade_id for e in result.events if isinstance(e, OrderFilled)] == ["t1", "t2"]
    canceled = result.events[-1]
    assert isinstance(canceled, OrderCanceled)
    assert canceled.filled_quantity == D("0.3")
    assert result.order.status == Status.CANCELED


def test_only_the_missing_events_are_produced() -> None:
    first = reconcile(orders.submitting(order()).order, seen(filled="0.1"), [fill("t1", "0.1")], TS)
    again = reconcile(first.order, seen(filled="0.1"), [fill("t1", "0.1")], TS)
    assert again.events == ()
    assert again.order == first.order


def test_fills_not_visible_yet_make_it_incomplete() -> None:
    mine = orders.accept(orders.submitting(order()).order, "X1", TS).order
    result = reconcile(mine, seen(ExchangeStatus.CANCELED, "0.5"), [fill("t1", "0.2")], TS)
    assert result.verdict == Verdict.INCOMPLETE
    assert kinds(result) == [OrderFilled]
    assert result.order.status == Status.PARTIALLY_FILLED  # not canceled before every fill is in


def test_closed_order_becomes_filled() -> None:
    mine = orders.submitting(order()).order
    result = reconcile(mine, seen(ExchangeStatus.CLOSED, "1"), [fill("t1", "0.6"), fill("t2", "0.4")], TS)
    assert result.order.status == Status.FILLED
    assert kinds(result) == [OrderAccepted, OrderFilled, OrderFilled]


def test_closed_market_order_short_of_its_size_is_filled() -> None:
    mine = orders.submitting(order("1", order_type="market")).order
    result = reconcile(mine, seen(ExchangeStatus.CLOSED, "0.7"), [fill("t1", "0.7")], TS)
    assert result.order.status == Status.FILLED


def test_different_exchange_order_is_a_conflict() -> None:
    mine = orders.accept(orders.submitting(order()).order, "X1", TS).order
    with pytest.raises(IllegalTransition, match="X2"):
        reconcile(mine, seen(xid="X2"), [], TS)


def test_rejected_order_found_at_exchange_is_a_conflict() -> None:
    mine = orders.reject(order(), "R", "", TS).order
    with pytest.raises(IllegalTransition):
        reconcile(mine, seen(), [], TS)


@settings(max_examples=150, deadline=None)
@given(
    parts=st.lists(st.integers(min_value=1, max_value=9), min_size=1, max_size=6),
    visible=st.integers(min_value=0, max_value=6),
    status=st.sampled_from(list(ExchangeStatus)),
)
def test_reconcile_is_idempotent_and_never_cancels_early(parts: list[int], visible: int,
                                                         status: ExchangeStatus) -> None:  # fmt: skip
    total = D(sum(parts)) / 10
    # A limit order closes only when completely filled, so a closed one is exactly its fills.
    size = total if status == ExchangeStatus.CLOSED else total + 1
    mine = orders.submitting(order(str(size))).order
    trades = [fill(f"t{i}", str(D(p) / 10), ts=i) for i, p in enumerate(parts)][:visible]
    first = reconcile(mine, seen(status, str(total)), trades, TS)
    second = reconcile(first.order, seen(status, str(total)), trades, TS)
    assert second.events == ()
    complete = visible >= len(parts)
    assert first.verdict == (Verdict.SYNCED if complete else Verdict.INCOMPLETE)
    if first.order.status == Status.CANCELED:
        assert first.order.filled_quantity == total
    if status == ExchangeStatus.CLOSED and complete:
        assert first.order.status == Status.FILLED
    fills = [e for e in first.events if isinstance(e, OrderFilled)]
    assert len(fills) == min(visible, len(parts))


def test_record_round_trip() -> None:
    mine = orders.fill(orders.accept(orders.submitting(order()).order, "X1", TS).order, fill("t1", "0.25"), TS)
    record = Record(mine.order, Phase.SENT, lookups=2)
    fields = to_fields(record)
    assert has_order(fields)
    assert from_fields("c1", fields) == record
    market = Record(order(order_type="market"), Phase.CLAIMED)
    assert from_fields("c1", to_fields(market)) == market


def test_corrupt_record_names_the_problem() -> None:
    fields = to_fields(Record(order(), Phase.CLAIMED))
    assert not has_order({"owner": "x", "state": "claimed"})
    with pytest.raises(CorruptRecord, match="quantity"):
        from_fields("c1", {k: v for k, v in fields.items() if k != "quantity"})
    with pytest.raises(CorruptRecord, match="side"):
        from_fields("c1", {**fields, "side": "long"})
    with pytest.raises(CorruptRecord):
        from_fields("c1", {**fields, "filled_quantity": "lots"})
