"""A self-match end to end: our buy crosses our own resting sell at the simulator, the exchange reports ONE trade
id for both sides, execution's fill poller publishes one OrderFilled per side, and the ledger books both.

Real pieces: the simulator (in-process aiohttp), the BTCTurk REST client, execution's handlers and fill poller
on a real Redis, and the ledger's store on a fresh Postgres database.
"""

from __future__ import annotations

import base64
import time
import uuid
from collections.abc import AsyncIterator
from decimal import ROUND_DOWN, Decimal
from typing import Any

import msgspec
import pytest
import pytest_asyncio
import redis.asyncio as aioredis
from aiohttp.test_utils import TestServer

from btcbot.btcturk.rest import BtcTurkClient
from btcbot.contracts import ids
from btcbot.contracts.messages import OrderAccepted, OrderFilled, SubmitOrder
from btcbot.execution.exchange import BtcTurkExchange
from btcbot.execution.handlers import Execution
from btcbot.execution.journal import Journal
from btcbot.execution.poller import FillPoller
from btcbot.ledger.migrations import migrate
from btcbot.ledger.store import Incoming, Origin, Store
from btcbot.runtime.idempotency import IdempotencyStore
from btcbot.runtime.locks import FencedLock
from btcbot.runtime.memory import InMemoryBus
from btcbot.sim.app import create_app
from btcbot.sim.config import Account, SimConfig

ADMIN_TOKEN = "self-match-admin-token"  # /sim/* needs the simulator's admin token

pytestmark = pytest.mark.integration

D = Decimal
KEY = "self-match-key"
SECRET = base64.b64encode(b"self-match-test-secret-012345678").decode()
FUNDS = {"TRY": D(1_000_000), "BTC": D(2)}


@pytest_asyncio.fixture(loop_scope="session")
async def sim() -> AsyncIterator[str]:
    server = TestServer(
        create_app(SimConfig(accounts=(Account(KEY, SECRET, dict(FUNDS)),), run_market=False, admin_token=ADMIN_TOKEN))
    )
    await server.start_server()
    try:
        yield str(server.make_url("")).rstrip("/")
    finally:
        await server.close()


@pytest_asyncio.fixture(loop_scope="session")
async def execution(sim: str, redis_url: str) -> AsyncIterator[tuple[Execution, InMemoryBus]]:
    redis = aioredis.from_url(redis_url)
    prefix = f"t-selfmatch-{uuid.uuid4().hex[:8]}"
    client = BtcTurkClient(sim, KEY, SECRET, timeout=5.0)
    bus = InMemoryBus()
    ex = Execution(bus=bus, journal=Journal(IdempotencyStore(redis, prefix), "it-1", 600.0),
                   locks=FencedLock(redis, prefix), exchange=BtcTurkExchange(client), account="main", owner="it-1",
                   clock=time.time_ns)  # fmt: skip
    try:
        yield ex, bus
    finally:
        await client.aclose()
        keys = [k async for k in redis.scan_iter(match=f"{prefix}:*")]
        if keys:
            await redis.delete(*keys)
        await redis.aclose()


@pytest_asyncio.fixture(loop_scope="session")
async def store(database_url: str) -> AsyncIterator[Store]:
    await migrate(database_url)
    s = await Store.open(database_url)
    try:
        yield s
    finally:
        await s.close()


def submit(coid: str, side: str, price: Decimal, quantity: str = "0.001") -> SubmitOrder:
    return SubmitOrder(id=ids.submit_id(coid), ts_ns=time.time_ns(), client_order_id=coid, intent_id=f"i-{coid}",
                       strategy="it", symbol="BTCTRY", side=side, order_type="limit", price=price,  # type: ignore[arg-type]
                       quantity=D(quantity))  # fmt: skip


async def test_our_buy_crossing_our_resting_sell_books_both_sides(
    sim: str, execution: tuple[Execution, InMemoryBus], store: Store
) -> None:
    ex, bus = execution
    async with BtcTurkClient(sim, KEY, SECRET) as client:
        book = await client.orderbook("BTCTRY", limit=1)
    bid, ask = book.bids[0][0], book.asks[0][0]
    price = ((bid + ask) / 2).quantize(D(1), rounding=ROUND_DOWN)
    assert bid < price < ask, (bid, ask)
    run = uuid.uuid4().hex[:6]
    sell_coid, buy_coid = f"sm-s-{run}", f"sm-b-{run}"

    # Our sell rests inside the spread (the best ask); our buy at the same price crosses it and nothing else.
    assert await bus.deliver(ex.on_order, submit(sell_coid, "sell", price)) == "ack"
    assert await bus.deliver(ex.on_order, submit(buy_coid, "buy", price)) == "ack"
    xids = {m.client_order_id: m.exchange_order_id for m in bus.of_type(OrderAccepted)}
    assert set(xids) == {sell_coid, buy_coid}

    # The exchange's record: one trade id, listed once per order (REST user trades and /sim/state alike).
    async with BtcTurkClient(sim, KEY, SECRET) as client:
        listed = [t for t in await client.user_trades("BTCTRY") if str(t.order_id) in xids.values()]
    assert len(listed) == 2
    assert len({t.id for t in listed}) == 1
    assert {(str(t.order_id), t.side) for t in listed} == {(xids[sell_coid], "sell"), (xids[buy_coid], "buy")}
    state: dict[str, Any] = msgspec.json.decode(await _get(sim, f"/sim/state?apiKey={KEY}"))
    mine = [t for t in state["trades"] if str(t["orderId"]) in xids.values()]
    assert len(mine) == 2
    assert len({t["tradeId"] for t in mine}) == 1
    trade_id = str(listed[0].id)

    # Execution: one OrderFilled per side, under ids that tell the sides apart; a second poll adds nothing.
    poller = FillPoller(ex, ("BTCTRY",), interval_s=0.1, lookback_s=60.0)
    assert (await poller.poll("BTCTRY")).published == 2
    assert (await poller.poll("BTCTRY")).published == 0
    fills = {f.client_order_id: f for f in bus.of_type(OrderFilled)}
    assert set(fills) == {sell_coid, buy_coid}
    for coid, fill in fills.items():
        assert fill.trade_id == trade_id
        assert fill.id == ids.fill_id("BTCTRY", trade_id, xids[coid])
    assert bus.duplicates == 0

    # Ledger: both fills booked (each delivered twice, sell first), the position flat, no integrity alarm left,
    # and its balances move exactly as the exchange's did.
    await store.seed_balances(FUNDS, time.time_ns())
    origin = Origin("exec.filled.BTCTRY", "EXECUTION", 1)
    for accepted in bus.of_type(OrderAccepted):
        assert await store.apply_order_event(accepted, origin, time.time_ns())
    deliveries = [fills[sell_coid], fills[buy_coid], fills[sell_coid], fills[buy_coid]]
    results = [await store.apply_fill(f, origin, time.time_ns()) for f in deliveries]
    # From a flat position the sell side alone is an oversell (the symbol halts); its own buy cures it at once.
    assert [r.status for r in results] == ["halted", "applied", "duplicate", "duplicate"]
    assert results[1].resumed
    again = await store.apply_batch([Incoming(msgspec.structs.replace(fills[buy_coid], id="fill:other-id"), origin)],
                                    time.time_ns())  # fmt: skip
    assert [r.status for r in again] == ["duplicate_trade"]
    ledger = await store.state()
    assert ledger.positions["BTCTRY"].quantity == 0
    assert ledger.positions["BTCTRY"].fills == 2
    assert ledger.halted == {}
    exchange = {a: D(str(b["total"])) for a, b in state["balances"].items()}
    assert {a: v for a, v in ledger.balances.items() if v or a in exchange} == {
        a: v for a, v in exchange.items() if v or a in ledger.balances
    }


async def _get(base: str, path: str) -> bytes:
    import httpx

    async with httpx.AsyncClient(headers={"X-Sim-Admin-Token": ADMIN_TOKEN}) as http:
        response = await http.get(base + path)
        response.raise_for_status()
        return response.content
