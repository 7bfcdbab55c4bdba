"""Execution against the real BTCTurk client, the exchange simulator and a real Redis (unique key prefix)."""

from __future__ import annotations

import base64
import time
import uuid
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
from aiohttp.test_utils import TestServer

from btcbot.btcturk.rest import BtcTurkClient
from btcbot.contracts import ids
from btcbot.contracts.messages import CancelOrder, OrderAccepted, OrderCanceled, OrderFilled, SubmitOrder
from btcbot.execution.exchange import BtcTurkExchange
from btcbot.execution.handlers import Execution
from btcbot.execution.journal import Journal
from btcbot.execution.poller import FillPoller
from btcbot.runtime.idempotency import IdempotencyStore
from btcbot.runtime.locks import FencedLock
from btcbot.runtime.memory import InMemoryBus
from btcbot.sim.admin import ADMIN_HEADER
from btcbot.sim.app import create_app
from btcbot.sim.config import Account, SimConfig

ADMIN_TOKEN = "test-sim-admin-token"
ADMIN = {ADMIN_HEADER: ADMIN_TOKEN}  # /sim/* needs the simulator's admin token

pytestmark = pytest.mark.integration

KEY = "exec-key"
SECRET = base64.b64encode(b"execution-test-secret-0123456789").decode()
D = Decimal


@pytest.fixture
async def sim() -> AsyncIterator[TestServer]:
    account = Account(KEY, SECRET, {"TRY": D(1_000_000), "BTC": D(2)})
    server = TestServer(create_app(SimConfig(admin_token=ADMIN_TOKEN, accounts=(account,), run_market=False)))
    await server.start_server()
    try:
        yield server
    finally:
        await server.close()


@pytest.fixture
async def redis_client() -> AsyncIterator[aioredis.Redis]:
    client = aioredis.from_url("redis://127.0.0.1:6379/0")
    try:
        await client.ping()
    except Exception:  # pragma: no cover
        pytest.skip("no Redis at 127.0.0.1:6379")
    yield client
    await client.aclose()


def url(server: TestServer) -> str:
    return str(server.make_url("")).rstrip("/")


@pytest.fixture
async def engine(sim: TestServer, redis_client: aioredis.Redis) -> AsyncIterator[tuple[Execution, InMemoryBus]]:
    prefix = f"test-exec-{uuid.uuid4().hex[:8]}"
    client = BtcTurkClient(url(sim), KEY, SECRET, timeout=5.0)
    bus = InMemoryBus()
    execution = Execution(
        bus=bus,
        journal=Journal(IdempotencyStore(redis_client, prefix), "it-1", 600.0),
        locks=FencedLock(redis_client, prefix),
        exchange=BtcTurkExchange(client),
        account="main",
        owner="it-1",
        clock=time.time_ns,
    )
    try:
        yield execution, bus
    finally:
        await client.aclose()
        keys = [k async for k in redis_client.scan_iter(match=f"{prefix}:*")]
        if keys:
            await redis_client.delete(*keys)


def submit(coid: str, price: Decimal, quantity: str = "0.001") -> SubmitOrder:
    return SubmitOrder(id=ids.submit_id(coid), ts_ns=time.time_ns(), client_order_id=coid, intent_id=f"i-{coid}",
                       strategy="it", symbol="BTCTRY", side="buy", order_type="limit", price=price,
                       quantity=D(quantity))  # fmt: skip


async def best(sim: TestServer) -> tuple[Decimal, Decimal]:
    async with BtcTurkClient(url(sim), KEY, SECRET) as client:
        book = await client.orderbook("BTCTRY", limit=1)
    return book.bids[0][0], book.asks[0][0]


async def test_resting_order_is_placed_once_and_canceled(sim: TestServer, engine: Any) -> None:
    execution, bus = engine
    bid, _ = await best(sim)
    cmd = submit("it-rest", (bid * D("0.9")).quantize(D(1)))
    assert await bus.deliver(execution.on_order, cmd) == "ack"
    assert await bus.deliver(execution.on_order, cmd, deliveries=2) == "ack"
    [accepted] = bus.of_type(OrderAccepted)
    cancel = CancelOrder(id="cancel:it-rest:x", ts_ns=time.time_ns(), client_order_id="it-rest", symbol="BTCTRY",
                         reason="test", requested_by="it")  # fmt: skip
    assert await bus.deliver(execution.on_order, cancel) == "ack"
    [canceled] = bus.of_type(OrderCanceled)
    assert canceled.exchange_order_id == accepted.exchange_order_id
    assert canceled.filled_quantity == 0
    async with BtcTurkClient(url(sim), KEY, SECRET) as client:
        mine = [o for o in await client.all_orders("BTCTRY") if o.client_order_id == "it-rest"]
    assert len(mine) == 1


async def test_lost_response_is_resolved_without_a_second_order(sim: TestServer, engine: Any) -> None:
    execution, bus = engine
    async with httpx.AsyncClient(headers=ADMIN) as http:
        (await http.post(url(sim) + "/sim/faults", json={"lose_response_next": 1})).raise_for_status()
    bid, _ = await best(sim)
    assert await bus.deliver(execution.on_order, submit("it-lost", (bid * D("0.9")).quantize(D(1)))) == "ack"
    assert len(bus.of_type(OrderAccepted)) == 1
    async with BtcTurkClient(url(sim), KEY, SECRET) as client:
        mine = [o for o in await client.open_orders("BTCTRY") if o.client_order_id == "it-lost"]
    assert len(mine) == 1


async def test_marketable_order_fills_are_published_once(sim: TestServer, engine: Any) -> None:
    execution, bus = engine
    _, ask = await best(sim)
    assert await bus.deliver(execution.on_order, submit("it-fill", (ask * D("1.01")).quantize(D(1)))) == "ack"
    poller = FillPoller(execution, ("BTCTRY",), interval_s=0.1, lookback_s=60.0)
    await poller.poll("BTCTRY")
    await poller.poll("BTCTRY")
    fills = bus.of_type(OrderFilled)
    assert fills
    assert sum(f.quantity for f in fills) == D("0.001")
    assert all(f.fee > 0 for f in fills)
    assert all(f.fee_asset == "TRY" for f in fills)
    assert len({f.trade_id for f in fills}) == len(fills)
    assert bus.duplicates == 0
    record = await execution.journal.load("it-fill")
    assert record is not None
    assert record.order.status.value == "filled"
