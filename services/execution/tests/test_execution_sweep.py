"""The sweeper: start-up reconciliation with the exchange and the periodic sweep of unsettled orders."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal
from typing import Any

import pytest

from btcbot.btcturk.errors import Rejected
from btcbot.contracts import ids
from btcbot.contracts.messages import OrderAccepted, OrderCanceled, OrderFilled, OrderRejected
from btcbot.execution import orders
from btcbot.execution.journal import Journal
from btcbot.execution.orders import Status
from btcbot.execution.reconcile import ExchangeStatus
from btcbot.execution.record import Phase, Record
from btcbot.execution.tasks import Sweeper, UnknownOrders

D = Decimal
S = 1_000_000_000


def sweeper(rig: Any, unknown: UnknownOrders = "adopt", ttl_s: float = 0.0, execution: Any = None) -> Sweeper:
    return Sweeper(execution or rig.execution, ("BTCTRY",), interval_s=1.0, settle_s=20.0, lookback_s=3600.0,
                   unknown_orders=unknown, order_ttl_s=ttl_s)  # fmt: skip


async def record_of(rig: Any, coid: str = "bbc1") -> Record:
    found = await Journal(rig.store, "probe", 1.0).load(coid)
    assert found is not None
    return found


async def deliver(rig: Any, message: Any, deliveries: int = 1, execution: Any = None) -> str:
    handler = (execution or rig.execution).on_order
    return str(await rig.bus.deliver(handler, message, deliveries=deliveries, max_deliver=8))


async def crashed_while_sending(rig: Any, coid: str = "bbc1", arrived: bool = True) -> None:
    """A replica wrote "sending", POSTed (the order reached the exchange or not) and died before the answer."""
    cmd = rig.submit(coid)
    pending = orders.from_submit(cmd)
    await rig.execution.journal.claim(coid)
    record = Record(orders.submitting(pending).order, Phase.SENDING, created_ns=cmd.ts_ns)
    await rig.execution.journal.save(record)
    if arrived:
        rig.exchange.script.append("lost")
        with pytest.raises(Exception, match="read timeout"):
            await rig.exchange.submit(record.order)


async def test_sweep_resolves_an_order_left_sending_by_a_dead_replica(rig: Any) -> None:
    await crashed_while_sending(rig)
    sweep = sweeper(rig, execution=rig.new_execution("replica-2"))
    report = await sweep.sweep()
    assert report.counts["recent"] == 1  # a handler may still be acting on it: left alone
    assert rig.bus.published == []
    rig.clock[0] += 21 * S
    report = await sweep.sweep()
    assert report.counts["resolved"] == 1
    [accepted] = rig.bus.of_type(OrderAccepted)
    assert accepted.id == ids.accepted_id("bbc1")
    record = await record_of(rig)
    assert (record.phase, record.order.status) == (Phase.SENT, Status.ACCEPTED)
    assert rig.exchange.posts == ["bbc1"]  # the sweep never posts
    # The redelivered SubmitOrder finds the outcome recorded and neither posts nor republishes.
    assert await deliver(rig, rig.submit(), deliveries=2) == "ack"
    assert rig.exchange.posts == ["bbc1"]
    assert len(rig.bus.of_type(OrderAccepted)) == 1


async def test_sweep_returns_an_order_that_never_arrived_to_claimed_and_the_redelivery_places_it(rig: Any) -> None:
    await crashed_while_sending(rig, arrived=False)
    sweep = sweeper(rig)
    for _ in range(3):  # policy.lookups = 2: two misses, then the third look decides
        rig.clock[0] += 21 * S
        await sweep.sweep()
    record = await record_of(rig)
    assert (record.phase, record.order.status) == (Phase.CLAIMED, Status.PENDING)
    assert rig.exchange.posts == []
    assert rig.bus.published == []
    assert await deliver(rig, rig.submit(ts_ns=rig.clock[0]), deliveries=2) == "ack"
    assert rig.exchange.posts == ["bbc1"]
    assert len(rig.bus.of_type(OrderAccepted)) == 1


async def test_sweep_expires_a_claimed_order_whose_command_is_too_old(rig: Any) -> None:
    await crashed_while_sending(rig, arrived=False)
    record = await record_of(rig)
    await rig.execution.journal.save(Record(replace(record.order, status=Status.PENDING), Phase.CLAIMED))
    rig.clock[0] += 60 * S
    assert (await sweeper(rig).sweep()).counts["unsent"] == 1
    rig.clock[0] += 61 * S  # past max_order_age (120 s) since the command was made
    assert (await sweeper(rig).sweep()).counts["expired"] == 1
    [rejected] = rig.bus.of_type(OrderRejected)
    assert rejected.reason == "EXPIRED"
    assert await rig.active.members() == []
    assert await deliver(rig, rig.submit(), deliveries=5) == "ack"
    assert rig.exchange.posts == []


async def test_sweep_reads_back_an_order_that_left_the_book(rig: Any) -> None:
    assert await deliver(rig, rig.submit(quantity="2")) == "ack"
    assert await rig.active.members() == ["bbc1"]
    rig.exchange.trade("1000", "t1", "0.5")
    rig.exchange.orders["1000"].status = ExchangeStatus.CANCELED  # canceled by someone else
    rig.clock[0] += 21 * S
    report = await sweeper(rig).sweep()
    assert report.counts["synced"] == 1
    assert [f.trade_id for f in rig.bus.of_type(OrderFilled)] == ["t1"]
    [canceled] = rig.bus.of_type(OrderCanceled)
    assert canceled.filled_quantity == D("0.5")
    assert await rig.active.members() == []
    assert (await sweeper(rig).sweep()).counts == {}


async def test_sweep_leaves_a_resting_order_alone_and_cancels_it_after_the_ttl(rig: Any) -> None:
    assert await deliver(rig, rig.submit()) == "ack"
    rig.clock[0] += 21 * S
    assert (await sweeper(rig, ttl_s=30).sweep()).counts == {"resting": 1}
    assert rig.exchange.cancels == []
    rig.clock[0] += 10 * S
    assert (await sweeper(rig, ttl_s=30).sweep()).counts == {"ttl_canceled": 1}
    assert rig.exchange.cancels == ["1000"]
    [canceled] = rig.bus.of_type(OrderCanceled)
    assert canceled.reason == "ttl"
    assert await rig.active.members() == []


async def test_sweep_skips_an_order_whose_lock_is_held(rig: Any) -> None:
    await crashed_while_sending(rig)
    rig.clock[0] += 21 * S
    await rig.locks.acquire("orders:main:BTCTRY", "replica-1", 15.0)
    assert (await sweeper(rig).sweep()).counts == {"later": 1}
    assert rig.bus.published == []


def place_unknown(rig: Any, coid: str, quantity: str = "1") -> str:
    """An order at the exchange that this execution never placed (a manual order, or a wiped journal)."""
    return str(rig.exchange.rest(coid, quantity))


@pytest.mark.parametrize("policy", ["adopt", "cancel", "report"])
async def test_startup_handles_an_unknown_open_order_by_policy(rig: Any, policy: UnknownOrders) -> None:
    xid = place_unknown(rig, "manual-1", "2")
    rig.exchange.trade(xid, "t9", "0.5")
    report = await sweeper(rig, unknown=policy).startup()
    fills = rig.bus.of_type(OrderFilled)
    if policy == "report":
        assert report.counts["unknown_reported"] == 1
        assert rig.bus.published == []
        assert await Journal(rig.store, "probe", 1.0).load("manual-1") is None
        return
    assert report.counts["unknown_adopted"] == 1
    [accepted] = rig.bus.of_type(OrderAccepted)
    assert (accepted.client_order_id, accepted.exchange_order_id, accepted.strategy) == ("manual-1", xid, "adopted")
    assert [f.trade_id for f in fills] == ["t9"]
    record = await record_of(rig, "manual-1")
    if policy == "cancel":
        assert rig.exchange.cancels == [xid]
        assert record.order.status == Status.CANCELED
        assert len(rig.bus.of_type(OrderCanceled)) == 1
    else:
        assert rig.exchange.cancels == []
        assert record.order.status == Status.PARTIALLY_FILLED
        assert await rig.active.members() == ["manual-1"]  # the sweep follows it from now on
    # A second start (or the other replica) finds it known and emits nothing more.
    published = len(rig.bus.published)
    again = await sweeper(rig, unknown=policy, execution=rig.new_execution()).startup()
    assert "unknown_adopted" not in again.counts
    assert len(rig.bus.published) == published


async def test_startup_adopts_the_fills_of_an_unknown_closed_order(rig: Any) -> None:
    xid = place_unknown(rig, "", "1")
    now_ms = rig.clock[0] // 1_000_000
    rig.exchange.trade(xid, "t1", "0.4", ts_ms=now_ms - 2000)
    rig.exchange.trade(xid, "t2", "0.6", ts_ms=now_ms - 1000)
    assert rig.exchange.orders[xid].status == ExchangeStatus.CLOSED
    report = await sweeper(rig).startup()
    assert report.counts["unknown_adopted"] == 1
    assert [f.trade_id for f in rig.bus.of_type(OrderFilled)] == ["t1", "t2"]
    record = await record_of(rig, f"x{xid}")
    assert record.order.status == Status.FILLED
    assert await rig.execution.journal.trade_seen("BTCTRY", "t1", xid)


async def test_startup_knows_our_own_orders_whatever_their_phase(rig: Any) -> None:
    await crashed_while_sending(rig)  # at the exchange, our record still says "sending"
    assert await deliver(rig, rig.submit("bbc2")) == "ack"
    rig.exchange.trade("1001", "t1", "1", ts_ms=rig.clock[0] // 1_000_000)
    report = await sweeper(rig).startup()
    assert report.counts["open_orders"] == 1
    assert report.counts["recent_trades"] == 1
    assert not any(k.startswith("unknown") for k in report.counts)
    assert len(rig.bus.of_type(OrderAccepted)) == 1  # only bbc2's, from its own submit


async def test_journal_active_set_holds_exactly_the_unsettled_orders(rig: Any) -> None:
    assert await deliver(rig, rig.submit("bbc1")) == "ack"
    rig.exchange.script.append(Rejected("balance", message_code="BALANCE_NOT_ENOUGH"))
    assert await deliver(rig, rig.submit("bbc2")) == "ack"
    assert await rig.active.members() == ["bbc1"]
    rig.exchange.trade("1000", "t1", "1")
    rig.clock[0] += 21 * S
    await sweeper(rig).sweep()
    assert await rig.active.members() == []
