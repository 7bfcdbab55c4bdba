"""The user feed against the simulator's WebSocket (aiohttp TestServer), a real Redis and the in-memory bus:
a resting order filled by another account arrives over the socket first and the next REST poll adds nothing;
an order canceled at the exchange behind execution's back is confirmed by its 452."""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from decimal import Decimal

import pytest
import redis.asyncio as aioredis
from aiohttp.test_utils import TestServer

from btcbot.btcturk.rest import BtcTurkClient
from btcbot.btcturk.ws import BtcTurkWebSocket
from btcbot.contracts import ids
from btcbot.contracts.messages import OrderAccepted, OrderCanceled, OrderFilled, SubmitOrder
from btcbot.execution.exchange import BtcTurkExchange
from btcbot.execution.handlers import Execution
from btcbot.execution.journal import Journal
from btcbot.execution.orders import Status
from btcbot.execution.poller import FillPoller
from btcbot.execution.userfeed import UserFeed
from btcbot.runtime.idempotency import IdempotencyStore
from btcbot.runtime.locks import FencedLock
from btcbot.runtime.memory import InMemoryBus
from btcbot.sim.app import create_app
from btcbot.sim.config import Account, SimConfig

pytestmark = pytest.mark.integration

KEY = "feed-key"
SECRET = base64.b64encode(b"user-feed-test-secret-0123456789").decode()
TAKER = "feed-taker"
TAKER_SECRET = base64.b64encode(b"user-feed-taker-secret-012345678").decode()
D = Decimal


@dataclass
class Live:
    sim: TestServer
    execution: Execution
    bus: InMemoryBus
    poller: FillPoller
    feed: UserFeed


def rest_url(server: TestServer) -> str:
    return str(server.make_url("")).rstrip("/")


@pytest.fixture
async def live(redis_url: str, redis_prefix: str) -> AsyncIterator[Live]:
    accounts = (Account(KEY, SECRET, {"TRY": D(1_000_000), "BTC": D(2)}),
                Account(TAKER, TAKER_SECRET, {"TRY": D(1_000_000), "BTC": D(2)}))  # fmt: skip
    sim = TestServer(create_app(SimConfig(accounts=accounts, run_market=False)))
    await sim.start_server()
    redis = aioredis.from_url(redis_url)
    client = BtcTurkClient(rest_url(sim), KEY, SECRET, timeout=5.0)
    prefix = f"{redis_prefix}:userfeed-{time.time_ns()}"
    bus = InMemoryBus()
    execution = Execution(bus=bus, journal=Journal(IdempotencyStore(redis, prefix), "feed-1", 600.0),
                          locks=FencedLock(redis, prefix), exchange=BtcTurkExchange(client), account="main",
                          owner="feed-1", clock=time.time_ns)  # fmt: skip
    poller = FillPoller(execution, ("BTCTRY",), interval_s=0.5, lookback_s=60.0)
    socket = BtcTurkWebSocket(str(sim.make_url("/ws")).replace("http", "ws", 1), public_key=KEY, private_key=SECRET)
    feed = UserFeed(execution, poller, socket, ws_interval_s=10.0, poll_interval_s=0.5)
    stop = asyncio.Event()
    task = asyncio.create_task(feed.run(stop))
    try:
        await until(lambda: feed.connected)
        yield Live(sim, execution, bus, poller, feed)
    finally:
        stop.set()
        await asyncio.wait_for(task, 5.0)
        await client.aclose()
        await sim.close()
        await redis.aclose()


async def until(check: Callable[[], bool], timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


async def rest_inside_spread(live: Live, coid: str) -> tuple[str, Decimal]:
    """Place a buy one tick above the best bid (the new best bid, below the ask) through the handler."""
    async with BtcTurkClient(rest_url(live.sim), KEY, SECRET) as client:
        book = await client.orderbook("BTCTRY", limit=1)
    price = book.bids[0][0] + 1
    assert price < book.asks[0][0]
    cmd = SubmitOrder(id=ids.submit_id(coid), ts_ns=time.time_ns(), client_order_id=coid, intent_id=f"i-{coid}",
                      strategy="it", symbol="BTCTRY", side="buy", order_type="limit", price=price,
                      quantity=D("0.001"))  # fmt: skip
    assert await live.bus.deliver(live.execution.on_order, cmd) == "ack"
    [accepted] = [m for m in live.bus.of_type(OrderAccepted) if m.client_order_id == coid]
    return accepted.exchange_order_id, price


async def test_a_fill_arrives_by_websocket_first_and_the_poll_does_not_double_it(live: Live) -> None:
    xid, price = await rest_inside_spread(live, "feed-fill")
    assert live.poller.interval_s == 10.0  # the socket is up: polling is only the safety net
    async with BtcTurkClient(rest_url(live.sim), TAKER, TAKER_SECRET) as taker:
        await taker.submit_order("BTCTRY", "sell", "limit", D("0.001"), price=price)
    await until(lambda: bool(live.bus.of_type(OrderFilled)))
    assert live.feed.fills_booked == 1
    [filled] = live.bus.of_type(OrderFilled)
    assert (filled.exchange_order_id, filled.quantity, filled.price) == (xid, D("0.001"), price)
    assert filled.fee > 0
    result = await live.poller.poll("BTCTRY")
    assert result.published == 0
    assert len(live.bus.of_type(OrderFilled)) == 1
    assert live.bus.duplicates == 0
    record = await live.execution.journal.load("feed-fill")
    assert record is not None
    assert record.order.status == Status.FILLED


async def test_an_order_canceled_at_the_exchange_is_confirmed_by_its_delete_event(live: Live) -> None:
    xid, _ = await rest_inside_spread(live, "feed-cancel")
    async with BtcTurkClient(rest_url(live.sim), KEY, SECRET) as operator:
        await operator.cancel_order(int(xid))  # by hand, not through a CancelOrder command
    await until(lambda: bool(live.bus.of_type(OrderCanceled)))
    [canceled] = live.bus.of_type(OrderCanceled)
    assert (canceled.client_order_id, canceled.exchange_order_id, canceled.filled_quantity) == ("feed-cancel", xid, 0)
    assert live.feed.orders_settled == 1
    record = await live.execution.journal.load("feed-cancel")
    assert record is not None
    assert record.order.status == Status.CANCELED
