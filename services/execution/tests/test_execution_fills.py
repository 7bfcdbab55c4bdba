"""The fill poller: one OrderFilled per exchange trade, across polls, restarts and replicas."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

import msgspec
import pytest

from btcbot.btcturk.errors import Unavailable
from btcbot.contracts import ids, subjects
from btcbot.contracts.messages import OrderAccepted, OrderFilled
from btcbot.execution import orders
from btcbot.execution.journal import Journal
from btcbot.execution.orders import Fill
from btcbot.execution.poller import FillPoller
from btcbot.execution.record import Phase, Record

D = Decimal


def poller(rig: Any, execution: Any = None) -> FillPoller:
    return FillPoller(execution or rig.execution, ("BTCTRY",), interval_s=0.01, lookback_s=3600.0)


async def placed(rig: Any, coid: str = "bbc1", quantity: str = "1") -> str:
    assert await rig.bus.deliver(rig.execution.on_order, rig.submit(coid, quantity)) == "ack"
    return str(next(o.xid for o in rig.exchange.orders.values() if o.coid == coid))


def now_ms(rig: Any) -> int:
    return int(rig.clock[0] // 1_000_000)


async def test_each_trade_is_published_once(rig: Any) -> None:
    xid = await placed(rig)
    p = poller(rig)
    rig.exchange.trade(xid, "t1", "0.4", ts_ms=now_ms(rig))
    assert (await p.poll("BTCTRY")).published == 1
    assert (await p.poll("BTCTRY")).published == 0
    rig.exchange.trade(xid, "t2", "0.6", ts_ms=now_ms(rig) + 1)
    assert (await p.poll("BTCTRY")).published == 1
    fills = rig.bus.of_type(OrderFilled)
    assert [f.id for f in fills] == [ids.fill_id("BTCTRY", "t1", xid), ids.fill_id("BTCTRY", "t2", xid)]
    assert rig.bus.subjects()[-1] == subjects.execution("filled", "BTCTRY")
    first = fills[0]
    assert first.fee == D("0.15")
    assert first.tax == D("0.027")
    assert first.fee_asset == "TRY"
    assert first.base_asset == "BTC"
    assert first.strategy == "mm"
    assert first.side == "buy"
    record = await Journal(rig.store, "probe", 1.0).load("bbc1")
    assert record is not None
    assert record.order.status == orders.Status.FILLED
    assert rig.bus.duplicates == 0


async def test_restart_and_second_replica_do_not_republish(rig: Any) -> None:
    xid = await placed(rig)
    rig.exchange.trade(xid, "t1", "0.5", ts_ms=now_ms(rig))
    await poller(rig).poll("BTCTRY")
    replica = poller(rig, rig.new_execution("replica-2"))
    assert (await replica.poll("BTCTRY")).published == 0
    assert rig.bus.duplicates == 0  # not even attempted: the trade is marked seen
    assert len(rig.bus.of_type(OrderFilled)) == 1


async def test_crash_between_publish_and_mark_publishes_the_same_id(rig: Any) -> None:
    xid = await placed(rig)
    rig.exchange.trade(xid, "t1", "0.5", ts_ms=now_ms(rig))
    p = poller(rig)
    real_mark = rig.execution.journal.mark_trade

    async def crash(symbol: str, trade_id: str, exchange_order_id: str) -> None:
        raise RuntimeError("killed")

    rig.execution.journal.mark_trade = crash
    with pytest.raises(RuntimeError, match="killed"):
        await p.poll("BTCTRY")
    rig.execution.journal.mark_trade = real_mark
    await poller(rig).poll("BTCTRY")
    assert len(rig.bus.of_type(OrderFilled)) == 1  # the order record already had the trade


async def test_trades_of_unknown_orders_are_not_ours(rig: Any) -> None:
    stranger = orders.submitting(orders.from_submit(rig.submit("manual"))).order
    xid = await rig.exchange.submit(stranger)  # placed by hand on the website: no claim of ours
    rig.exchange.trade(xid, "t9", "0.1", ts_ms=now_ms(rig))
    result = await poller(rig).poll("BTCTRY")
    assert result.unknown == 1
    assert rig.bus.published == []


async def test_trade_without_client_id_is_matched_by_exchange_order_id(rig: Any) -> None:
    xid = await placed(rig)
    fill = rig.exchange.trade(xid, "t1", "0.2", ts_ms=now_ms(rig))
    rig.exchange.fills[-1] = Fill(**{**fill.__dict__, "client_order_id": None})
    assert (await poller(rig).poll("BTCTRY")).published == 1


async def test_fill_of_an_order_in_doubt_settles_it(rig: Any) -> None:
    journal = rig.execution.journal
    # The submit handler is between "sending" and its lookup: only the fill tells us the order is there.
    assert await journal.claim("bbc1")
    sending = orders.submitting(orders.from_submit(rig.submit())).order
    await journal.save(Record(sending, Phase.SENDING))
    rig.exchange.script = ["ok"]
    xid = await rig.exchange.submit(sending)
    rig.exchange.trade(xid, "t1", "0.3", ts_ms=now_ms(rig))
    assert (await poller(rig).poll("BTCTRY")).published == 1
    assert [type(m) for _, m in rig.bus.published] == [OrderAccepted, OrderFilled]
    record = await journal.load("bbc1")
    assert record is not None
    assert record.phase == Phase.SENT
    # The redelivered SubmitOrder then neither posts nor duplicates anything.
    posts = len(rig.exchange.posts)
    assert await rig.bus.deliver(rig.execution.on_order, rig.submit(), deliveries=2) == "ack"
    assert len(rig.exchange.posts) == posts
    assert rig.bus.duplicates == 0


async def test_busy_lock_defers_to_the_next_round(rig: Any) -> None:
    xid = await placed(rig)
    rig.exchange.trade(xid, "t1", "0.5", ts_ms=now_ms(rig))
    rig.locks.steal("orders:main:BTCTRY")
    p = poller(rig)
    assert (await p.poll("BTCTRY")).skipped_busy
    rig.locks.held.clear()
    assert (await p.poll("BTCTRY")).published == 1


async def test_cursor_moves_forward_with_an_overlap(rig: Any) -> None:
    xid = await placed(rig)
    p = poller(rig)
    start = p.cursors["BTCTRY"]
    assert start == now_ms(rig) - 3_600_000
    rig.exchange.trade(xid, "t1", "0.5", ts_ms=now_ms(rig) + 10_000)
    await p.poll("BTCTRY")
    assert p.cursors["BTCTRY"] == now_ms(rig) + 10_000 - 5_000


async def test_run_survives_exchange_errors_and_reports_health(rig: Any) -> None:
    xid = await placed(rig)
    rig.exchange.trade(xid, "t1", "0.5", ts_ms=now_ms(rig))
    p = poller(rig)
    real_trades = rig.exchange.trades
    calls = {"n": 0}
    stop = asyncio.Event()

    async def flaky(symbol: str, since_ms: int) -> list[Fill]:
        calls["n"] += 1
        if calls["n"] == 1:
            raise Unavailable("503", status=503)
        if calls["n"] >= 3:
            stop.set()
        found: list[Fill] = await real_trades(symbol, since_ms)
        return found

    rig.exchange.trades = flaky
    await asyncio.wait_for(p.run(stop), 5)
    assert calls["n"] >= 2
    assert p.healthy
    assert len(rig.bus.of_type(OrderFilled)) == 1


async def test_a_self_match_books_both_sides_once(rig: Any) -> None:
    # Our buy crosses our own resting sell: the exchange lists ONE trade id twice, once per order.
    sell_cmd = rig.signed(msgspec.structs.replace(rig.submit("bbsell", "0.5"), side="sell"))
    assert await rig.bus.deliver(rig.execution.on_order, sell_cmd) == "ack"
    sell_xid = next(o.xid for o in rig.exchange.orders.values() if o.coid == "bbsell")
    buy_xid = await placed(rig, "bbbuy", "0.5")
    rig.exchange.trade(sell_xid, "t7", "0.5", ts_ms=now_ms(rig))
    rig.exchange.trade(buy_xid, "t7", "0.5", ts_ms=now_ms(rig))
    p = poller(rig)
    assert (await p.poll("BTCTRY")).published == 2
    assert (await p.poll("BTCTRY")).published == 0
    assert (await poller(rig, rig.new_execution("replica-2")).poll("BTCTRY")).published == 0
    fills = sorted(rig.bus.of_type(OrderFilled), key=lambda f: f.side)
    assert [(f.side, f.client_order_id, f.trade_id) for f in fills] == [
        ("buy", "bbbuy", "t7"),
        ("sell", "bbsell", "t7"),
    ]
    assert [f.id for f in fills] == [ids.fill_id("BTCTRY", "t7", buy_xid), ids.fill_id("BTCTRY", "t7", sell_xid)]
    for coid in ("bbbuy", "bbsell"):
        record = await rig.execution.journal.load(coid)
        assert record is not None
        assert record.order.status == orders.Status.FILLED
    assert await rig.execution.journal.trade_seen("BTCTRY", "t7", buy_xid)
    assert await rig.execution.journal.trade_seen("BTCTRY", "t7", sell_xid)
    assert rig.bus.duplicates == 0


async def test_seen_mark_of_one_side_does_not_hide_the_other(rig: Any) -> None:
    sell_cmd = rig.signed(msgspec.structs.replace(rig.submit("bbsell", "0.5"), side="sell"))
    assert await rig.bus.deliver(rig.execution.on_order, sell_cmd) == "ack"
    sell_xid = next(o.xid for o in rig.exchange.orders.values() if o.coid == "bbsell")
    buy_xid = await placed(rig, "bbbuy", "0.5")
    rig.exchange.trade(buy_xid, "t8", "0.5", ts_ms=now_ms(rig))
    p = poller(rig)
    assert (await p.poll("BTCTRY")).published == 1  # the buy side, listed first (e.g. the sell's answer lagged)
    rig.exchange.trade(sell_xid, "t8", "0.5", ts_ms=now_ms(rig))
    assert (await p.poll("BTCTRY")).published == 1
    assert {f.client_order_id for f in rig.bus.of_type(OrderFilled)} == {"bbbuy", "bbsell"}
