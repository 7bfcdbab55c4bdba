"""Under an injected "accepted but response lost", execution ends with exactly one order at the exchange,
and its events say so: the real handler stack, the real BTCTurk client against the in-process simulator,
and a real Redis claim store and fenced lock under a key prefix of this test session."""

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
from btcbot.contracts.messages import OrderAccepted, OrderFilled, OrderRejected, SubmitOrder
from btcbot.execution.exchange import BtcTurkExchange
from btcbot.execution.handlers import Execution, Policy
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

KEY = "lost-response-key"
SECRET = base64.b64encode(b"lost-response-secret-0123456789a").decode()
D = Decimal
ORDER_PATH = "/api/v1/order"


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
async def rig(sim: TestServer, redis_url: str, redis_prefix: str) -> AsyncIterator[tuple[Execution, InMemoryBus]]:
    redis = aioredis.from_url(redis_url)
    client = BtcTurkClient(base(sim), KEY, SECRET, timeout=5.0)
    prefix = f"{redis_prefix}:lost-{uuid.uuid4().hex[:8]}"
    bus = InMemoryBus()
    execution = Execution(
        bus=bus,
        journal=Journal(IdempotencyStore(redis, prefix), "lost-1", 600.0),
        locks=FencedLock(redis, prefix),
        exchange=BtcTurkExchange(client),
        account="main",
        owner="lost-1",
        clock=time.time_ns,
        policy=Policy(lookup_delay_s=0.05),
    )
    try:
        yield execution, bus
    finally:
        await client.aclose()
        await redis.aclose()


def base(server: TestServer) -> str:
    return str(server.make_url("")).rstrip("/")


def submit(coid: str, price: Decimal) -> SubmitOrder:
    return SubmitOrder(id=ids.submit_id(coid), ts_ns=time.time_ns(), client_order_id=coid, intent_id=f"i-{coid}",
                       strategy="it", symbol="BTCTRY", side="buy", order_type="limit", price=price,
                       quantity=D("0.001"))  # fmt: skip


async def order_posts(admin: httpx.AsyncClient) -> int:
    """POSTs of an order that actually reached the simulator."""
    log = (await admin.get("/sim/requests")).json()["requests"]
    return sum(1 for r in log if r["method"] == "POST" and r["path"] == ORDER_PATH)


@pytest.mark.parametrize("marketable", [False, True], ids=["resting", "filled"])
async def test_lost_response_ends_with_exactly_one_order_and_events_that_say_so(
    sim: TestServer, rig: Any, marketable: bool
) -> None:
    execution, bus = rig
    coid = f"bblost{'fill' if marketable else 'rest'}{uuid.uuid4().hex[:10]}"
    async with httpx.AsyncClient(headers=ADMIN, base_url=base(sim)) as admin:
        async with BtcTurkClient(base(sim), KEY, SECRET) as client:
            book = await client.orderbook("BTCTRY", limit=1)
        price = (book.asks[0][0] * D("1.01") if marketable else book.bids[0][0] * D("0.9")).quantize(D(1))
        (await admin.post("/sim/faults", json={"lose_response_next": 1})).raise_for_status()
        posts_before = await order_posts(admin)

        cmd = submit(coid, price)
        first = await bus.deliver(execution.on_order, cmd, subject="order.submit.BTCTRY")
        # The fault was spent on our POST: the exchange took the order and the answer never came.
        assert (await admin.get("/sim/faults")).json()["lose_response_next"] == 0
        assert first in ("ack", "nak")
        # JetStream redelivers after a nak, or after an ack that got lost; either way the claim holds.
        second = await bus.deliver(execution.on_order, cmd, subject="order.submit.BTCTRY", deliveries=2)
        assert second == "ack"
        third = await bus.deliver(execution.on_order, cmd, subject="order.submit.BTCTRY", deliveries=3)
        assert third == "ack"

        assert await order_posts(admin) - posts_before == 1, "an outcome-unknown submit was sent again"
        state = (await admin.get("/sim/state", params={"apiKey": KEY})).json()
        mine = [o for o in state["orders"] if o["clientId"] == coid]
        assert len(mine) == 1
        [order] = mine

        if marketable:
            poller = FillPoller(execution, ("BTCTRY",), interval_s=0.1, lookback_s=60.0)
            await poller.poll("BTCTRY")
            await poller.poll("BTCTRY")

    accepted = bus.of_type(OrderAccepted)
    assert [a.client_order_id for a in accepted] == [coid]
    assert accepted[0].exchange_order_id == str(order["id"])
    assert bus.of_type(OrderRejected) == []
    assert bus.duplicates == 0
    fills = bus.of_type(OrderFilled)
    sim_trades = [t for t in state["trades"] if t["clientId"] == coid]
    if marketable:
        assert order["status"] in ("Closed", "Partial")
        assert sorted(f.trade_id for f in fills) == sorted(str(t["tradeId"]) for t in sim_trades)
        assert sum((f.quantity for f in fills), D(0)) == D(order["filled"])
        assert all(f.client_order_id == coid for f in fills)
    else:
        assert order["status"] == "Untouched"
        assert fills == []
        assert sim_trades == []
