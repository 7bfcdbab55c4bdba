"""The user WebSocket feed on fakes: 423 fills through the poller's booking path, 451/452 order events,
dedup against REST polling, deferral while the order lock is busy, and the poll rate following the socket."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace
from decimal import Decimal
from typing import Any

import msgspec
import pytest

from btcbot.btcturk.errors import AuthError
from btcbot.btcturk.models import OrderMethod, Side, UserTrade
from btcbot.btcturk.wsmodels import (
    Connected,
    Disconnected,
    OrderEvent,
    OrderEventKind,
    OrderMatch,
    UserTradeEvent,
    WsMessage,
)
from btcbot.contracts.messages import OrderAccepted, OrderCanceled, OrderFilled
from btcbot.execution import orders
from btcbot.execution.orders import Fill, Status
from btcbot.execution.poller import FillPoller
from btcbot.execution.reconcile import ExchangeStatus
from btcbot.execution.record import Phase
from btcbot.execution.userfeed import UserFeed

D = Decimal
NS = 1_000_000_000


class FakeSocket:
    """Yields a script of messages, then waits until closed (like a quiet, live socket)."""

    def __init__(self, *script: WsMessage | Exception) -> None:
        self.script = list(script)
        self.closed = asyncio.Event()
        self.opened = 0

    async def messages(self) -> AsyncIterator[WsMessage]:
        self.opened += 1
        while self.script:
            item = self.script.pop(0)
            if isinstance(item, Exception):
                raise item
            yield item
            await asyncio.sleep(0)
        await self.closed.wait()

    async def aclose(self) -> None:
        self.closed.set()


def user_trade(fill: Fill) -> UserTradeEvent:
    """The 423 the exchange sends for a fill of a buy order."""
    trade = UserTrade(
        id=int(fill.trade_id),
        order_id=int(fill.exchange_order_id),
        timestamp_ms=fill.exchange_ts_ns // 10**6,
        price=fill.price,
        amount=fill.quantity,
        fee=-fill.fee,
        tax=-fill.tax,
        side=Side.BUY,
        numerator=fill.base_asset,
        denominator=fill.quote_asset,
        client_order_id=fill.client_order_id,
    )
    return UserTradeEvent(trade)


def order_event(kind: OrderEventKind, xid: str, coid: str | None, left: str = "1") -> OrderEvent:
    return OrderEvent(kind=kind, order_id=int(xid), pair="BTCTRY", side=Side.BUY, method=OrderMethod.LIMIT,
                      price=D("100"), amount=D("1"), num_left=D(left), client_order_id=coid)  # fmt: skip


def make_feed(rig: Any, socket: FakeSocket | None = None, **kw: float) -> tuple[UserFeed, FillPoller]:
    poller = FillPoller(rig.execution, ("BTCTRY",), interval_s=0.5, lookback_s=60.0)
    feed = UserFeed(rig.execution, poller, socket or FakeSocket(), ws_interval_s=10.0, poll_interval_s=0.5, **kw)
    return feed, poller


async def accepted_order(rig: Any, coid: str = "bbc1") -> str:
    assert await rig.bus.deliver(rig.execution.on_order, rig.submit(coid)) == "ack"
    record = await rig.execution.journal.load(coid)
    assert record is not None
    assert record.order.status == Status.ACCEPTED
    return record.order.exchange_order_id


async def test_a_ws_fill_is_booked_once_and_the_next_poll_finds_nothing_new(rig: Any) -> None:
    xid = await accepted_order(rig)
    feed, poller = make_feed(rig)
    fill = rig.exchange.trade(xid, "501", "0.4", ts_ms=1_800_000_000_000)
    feed.on_message(user_trade(fill))
    feed.on_message(user_trade(fill))  # the same trade twice on the socket
    await feed.drain()
    assert feed.fills_booked == 1
    assert feed.pending == 0
    result = await poller.poll("BTCTRY")
    assert result.published == 0
    [filled] = rig.bus.of_type(OrderFilled)
    assert (filled.trade_id, filled.quantity) == ("501", D("0.4"))
    record = await rig.execution.journal.load("bbc1")
    assert record is not None
    assert record.order.status == Status.PARTIALLY_FILLED
    assert await rig.execution.journal.trade_seen("BTCTRY", "501", xid)


async def test_a_polled_fill_reported_later_by_the_socket_is_not_booked_again(rig: Any) -> None:
    xid = await accepted_order(rig)
    feed, poller = make_feed(rig)
    fill = rig.exchange.trade(xid, "502", "1", ts_ms=1_800_000_000_000)
    assert (await poller.poll("BTCTRY")).published == 1
    feed.on_message(user_trade(fill))
    await feed.drain()
    assert feed.fills_booked == 0
    assert len(rig.bus.of_type(OrderFilled)) == 1
    assert rig.bus.duplicates == 0


async def test_a_fill_waits_while_the_order_lock_is_held_and_is_booked_after(rig: Any) -> None:
    xid = await accepted_order(rig)
    feed, _ = make_feed(rig, retry_delay_s=0.5)
    fill = rig.exchange.trade(xid, "503", "1", ts_ms=1_800_000_000_000)
    rig.locks.steal("orders:main:BTCTRY")  # an order handler holds the lock
    feed.on_message(user_trade(fill))
    await feed.drain()
    assert feed.pending == 1
    assert not rig.bus.of_type(OrderFilled)
    del rig.locks.held["orders:main:BTCTRY"]
    await feed.drain()  # not due yet: the retry waits out its delay
    assert feed.pending == 1
    rig.clock[0] += NS
    await feed.drain()
    assert feed.pending == 0
    [filled] = rig.bus.of_type(OrderFilled)
    assert filled.trade_id == "503"


async def test_a_fill_of_an_order_nobody_here_placed_is_left_to_the_poller(rig: Any) -> None:
    xid = rig.exchange.rest("foreign", "1")
    fill = rig.exchange.trade(xid, "504", "1", ts_ms=1_800_000_000_000)
    feed, _ = make_feed(rig, max_attempts=3, retry_delay_s=0.1)
    feed.on_message(user_trade(fill))
    for _ in range(3):
        await feed.drain()
        rig.clock[0] += NS
    assert feed.pending == 0
    assert not rig.bus.of_type(OrderFilled)


async def test_a_fill_that_beats_the_submit_answer_accepts_the_order_first(rig: Any) -> None:
    rig.exchange.script = ["unknown"]  # the POST died on the way: the record stays "sending"
    assert await rig.bus.deliver(rig.execution.on_order, rig.submit("bbc2")) == "nak"
    xid = rig.exchange.rest("bbc2", "1")  # ... but the exchange has it after all, and it trades
    feed, _ = make_feed(rig)
    feed.on_message(user_trade(rig.exchange.trade(xid, "505", "1", ts_ms=1_800_000_000_000)))
    await feed.drain()
    assert [type(m) for _, m in rig.bus.published] == [OrderAccepted, OrderFilled]
    record = await rig.execution.journal.load("bbc2")
    assert record is not None
    assert (record.phase, record.order.status, record.order.exchange_order_id) == (Phase.SENT, Status.FILLED, xid)


async def test_order_delete_confirms_a_requested_cancel_once(rig: Any) -> None:
    xid = await accepted_order(rig)
    record = await rig.execution.journal.load("bbc1")
    assert record is not None
    # The DELETE went out but its confirmation was not read yet (the handler will retry later).
    await rig.execution.journal.save(replace(record, order=orders.request_cancel(record.order).order))
    rig.exchange.orders[xid].status = ExchangeStatus.CANCELED
    feed, _ = make_feed(rig)
    feed.on_message(order_event(OrderEventKind.DELETE, xid, "bbc1"))
    feed.on_message(order_event(OrderEventKind.DELETE, xid, "bbc1"))
    await feed.drain()
    [canceled] = rig.bus.of_type(OrderCanceled)
    assert (canceled.exchange_order_id, canceled.filled_quantity) == (xid, 0)
    assert rig.bus.duplicates == 0
    record = await rig.execution.journal.load("bbc1")
    assert record is not None
    assert record.order.status == Status.CANCELED
    assert "bbc1" not in await rig.active.members()


async def test_order_delete_without_a_client_id_is_found_by_exchange_id(rig: Any) -> None:
    xid = await accepted_order(rig)
    rig.exchange.orders[xid].status = ExchangeStatus.CANCELED
    feed, _ = make_feed(rig)
    feed.on_message(order_event(OrderEventKind.DELETE, xid, None))
    await feed.drain()
    assert len(rig.bus.of_type(OrderCanceled)) == 1


async def test_order_delete_of_a_filled_order_after_its_trade_changes_nothing(rig: Any) -> None:
    xid = await accepted_order(rig)
    feed, _ = make_feed(rig)
    fill = rig.exchange.trade(xid, "506", "1", ts_ms=1_800_000_000_000)
    feed.on_message(user_trade(fill))
    feed.on_message(order_event(OrderEventKind.DELETE, xid, "bbc1", left="0"))
    await feed.drain()
    assert [type(m) for _, m in rig.bus.published] == [OrderAccepted, OrderFilled]
    assert feed.orders_settled == 0


async def test_order_delete_the_exchange_does_not_show_yet_is_asked_again(rig: Any) -> None:
    xid = await accepted_order(rig)
    feed, _ = make_feed(rig, retry_delay_s=0.1)
    feed.on_message(order_event(OrderEventKind.DELETE, xid, "bbc1"))
    await feed.drain()  # REST still lists the order as open
    assert feed.pending == 1
    assert not rig.bus.of_type(OrderCanceled)
    rig.exchange.orders[xid].status = ExchangeStatus.CANCELED
    rig.clock[0] += NS
    await feed.drain()
    assert feed.pending == 0
    assert len(rig.bus.of_type(OrderCanceled)) == 1


async def test_order_insert_confirms_an_order_whose_answer_was_lost(rig: Any) -> None:
    rig.exchange.script = ["unknown"]
    assert await rig.bus.deliver(rig.execution.on_order, rig.submit("bbc3")) == "nak"
    record = await rig.execution.journal.load("bbc3")
    assert record is not None
    assert record.phase == Phase.SENDING
    xid = rig.exchange.rest("bbc3", "1")
    feed, _ = make_feed(rig)
    feed.on_message(order_event(OrderEventKind.INSERT, xid, "bbc3"))
    await feed.drain()
    [accepted] = rig.bus.of_type(OrderAccepted)
    assert accepted.exchange_order_id == xid
    record = await rig.execution.journal.load("bbc3")
    assert record is not None
    assert (record.phase, record.order.status) == (Phase.SENT, Status.ACCEPTED)
    # The redelivered SubmitOrder now only reconciles: the order is never placed a second time.
    assert await rig.bus.deliver(rig.execution.on_order, rig.submit("bbc3"), deliveries=2) == "ack"
    assert rig.exchange.posts == ["bbc3"]


async def test_order_insert_of_a_known_order_does_nothing(rig: Any) -> None:
    xid = await accepted_order(rig)
    feed, _ = make_feed(rig)
    feed.on_message(order_event(OrderEventKind.INSERT, xid, "bbc1"))
    feed.on_message(order_event(OrderEventKind.UPDATE, xid, "bbc1"))
    await feed.drain()
    assert len(rig.bus.published) == 1
    assert feed.pending == 0


async def test_other_symbols_are_not_this_feeds_business(rig: Any) -> None:
    feed, _ = make_feed(rig)
    feed.on_message(msgspec.structs.replace(order_event(OrderEventKind.DELETE, "77", "x"), pair="ETHTRY"))
    assert feed.pending == 0


async def test_the_poll_rate_follows_the_socket(rig: Any) -> None:
    socket = FakeSocket(Connected(connection=1))
    feed, poller = make_feed(rig, socket)
    stop = asyncio.Event()
    task = asyncio.create_task(feed.run(stop))
    await asyncio.sleep(0.05)
    assert feed.connected
    assert poller.interval_s == 10.0
    feed.on_message(Disconnected(connection=1, reason="gone"))
    assert not feed.connected
    assert poller.interval_s == 0.5
    feed.on_message(Connected(connection=2))
    assert poller.interval_s == 10.0
    stop.set()
    await asyncio.wait_for(task, 2.0)
    assert socket.closed.is_set()
    assert poller.interval_s == 0.5  # stopped: polling alone again


async def test_fills_from_a_running_feed_are_booked(rig: Any) -> None:
    xid = await accepted_order(rig)
    fill = rig.exchange.trade(xid, "507", "1", ts_ms=1_800_000_000_000)
    socket = FakeSocket(Connected(connection=1), user_trade(fill))
    feed, _ = make_feed(rig, socket)
    stop = asyncio.Event()
    task = asyncio.create_task(feed.run(stop))
    for _ in range(100):
        if rig.bus.of_type(OrderFilled):
            break
        await asyncio.sleep(0.01)
    stop.set()
    await asyncio.wait_for(task, 2.0)
    assert len(rig.bus.of_type(OrderFilled)) == 1


async def test_a_refused_login_keeps_polling_fast_and_tries_again(rig: Any) -> None:
    socket = FakeSocket(AuthError("websocket login refused: bad key", code=114), Connected(connection=2))
    feed, _ = make_feed(rig, socket, relogin_delay_s=0.05)
    stop = asyncio.Event()
    task = asyncio.create_task(feed.run(stop))
    for _ in range(100):
        if feed.connected:
            break
        await asyncio.sleep(0.01)
    assert socket.opened == 2
    assert feed.connected
    stop.set()
    await asyncio.wait_for(task, 2.0)


async def test_matches_no_trade_event_covers_make_the_poller_poll_now(rig: Any) -> None:
    match = OrderMatch(order_id=1000, pair="BTCTRY", side=Side.BUY, method=OrderMethod.LIMIT, price=D("100"),
                       amount=D("1"))  # fmt: skip
    socket = FakeSocket(Connected(connection=1), match)
    feed, poller = make_feed(rig, socket, match_grace_s=0.1)
    stop = asyncio.Event()
    task = asyncio.create_task(feed.run(stop))
    await asyncio.sleep(0.05)
    poller._wake.clear()  # the catch-up poll on connect is not what this test is about
    rig.clock[0] += NS
    for _ in range(50):
        if poller._wake.is_set():
            break
        await asyncio.sleep(0.01)
    assert poller._wake.is_set()
    stop.set()
    await asyncio.wait_for(task, 2.0)


@pytest.mark.parametrize("slow", [True, False])
async def test_the_poller_wakes_for_a_nudge_or_a_faster_rate(rig: Any, slow: bool) -> None:
    polls: list[str] = []
    poller = FillPoller(rig.execution, ("BTCTRY",), interval_s=30.0, lookback_s=60.0)

    async def counting(symbol: str) -> object:
        polls.append(symbol)
        return None

    poller.poll = counting  # type: ignore[method-assign,assignment]
    stop = asyncio.Event()
    task = asyncio.create_task(poller.run(stop))
    await asyncio.sleep(0.02)
    assert polls == ["BTCTRY"]
    if slow:
        poller.set_interval(0.01)
    else:
        poller.nudge()
    await asyncio.sleep(0.05)
    assert len(polls) >= 2
    stop.set()
    await asyncio.wait_for(task, 1.0)
