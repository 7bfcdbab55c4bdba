"""Execution refuses an order that breaks its symbol's exchange rules, before any exchange call."""

from __future__ import annotations

import base64
import time
import uuid
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import httpx
import msgspec
import pytest
import redis.asyncio as aioredis
from aiohttp.test_utils import TestServer

from btcbot.btcturk.models import SymbolInfo
from btcbot.btcturk.rest import BtcTurkClient
from btcbot.contracts import ids
from btcbot.contracts.messages import OrderAccepted, OrderRejected, SubmitOrder
from btcbot.execution import orders
from btcbot.execution.exchange import BtcTurkExchange
from btcbot.execution.handlers import Execution
from btcbot.execution.journal import Journal
from btcbot.execution.rules import ExchangeRules, refusal
from btcbot.runtime.idempotency import IdempotencyStore
from btcbot.runtime.locks import FencedLock
from btcbot.runtime.memory import InMemoryBus
from btcbot.sim.admin import ADMIN_HEADER
from btcbot.sim.app import create_app
from btcbot.sim.config import Account, SimConfig

ADMIN_TOKEN = "test-sim-admin-token"
ADMIN = {ADMIN_HEADER: ADMIN_TOKEN}  # /sim/* needs the simulator's admin token

D = Decimal
KEY = "rules-key"
SECRET = base64.b64encode(b"execution-rules-secret-012345678").decode()

BTCTRY = SymbolInfo(id=1, name="BTCTRY", name_normalized="BTC_TRY", status="TRADING", numerator="BTC",
                    denominator="TRY", numerator_scale=8, denominator_scale=0, has_fraction=False,
                    tick_size=D(1), min_price=D(1), max_price=D(100_000_000),
                    min_exchange_value=D("99.91"))  # fmt: skip


def submit(coid: str, price: str | None, quantity: str, symbol: str = "BTCTRY") -> SubmitOrder:
    return SubmitOrder(id=ids.submit_id(coid), ts_ns=time.time_ns(), client_order_id=coid, intent_id=f"i-{coid}",
                       strategy="it", symbol=symbol, side="buy", order_type="limit",
                       price=None if price is None else D(price), quantity=D(quantity))  # fmt: skip


BAD = [
    ("-1", "0.01", "FAILED_ORDER_PARAMETER"),
    ("0", "0.01", "FAILED_ORDER_PARAMETER"),
    ("NaN", "0.01", "FAILED_ORDER_PARAMETER"),
    ("Infinity", "0.01", "FAILED_ORDER_PARAMETER"),
    ("3000000", "NaN", "FAILED_ORDER_PARAMETER"),
    ("3000000", "0", "FAILED_ORDER_PARAMETER"),
    ("3000000", "1E+400", "FAILED_ORDER_PARAMETER"),
    (None, "0.01", "FAILED_ORDER_PARAMETER"),
    ("3000000.5", "0.01", "invalidPriceScale"),
    ("3000000", "0.000000001", "invalidQuantityScale"),
    ("3000000", "0.00001", "FAILED_MIN_TOTAL_AMOUNT"),
    ("200000000", "0.01", "PRICE_MUST_BE_LESS_THAN_MAXPRICE"),
]


@pytest.mark.parametrize(("price", "quantity", "reason"), BAD)
def test_refusal_names_the_broken_rule(price: str | None, quantity: str, reason: str) -> None:
    order = orders.from_submit(submit("c", price, quantity))
    refused = refusal(order, {"BTCTRY": BTCTRY})
    assert refused is not None
    assert refused.reason == reason


def test_a_valid_order_and_an_unknown_symbol() -> None:
    assert refusal(orders.from_submit(submit("c", "3000000", "0.01")), {"BTCTRY": BTCTRY}) is None
    refused = refusal(orders.from_submit(submit("c", "3000000", "0.01", symbol="XYZTRY")), {"BTCTRY": BTCTRY})
    assert refused is not None
    assert refused.reason == "UNKNOWN_SYMBOL"


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
async def engine(sim: TestServer) -> AsyncIterator[tuple[Execution, InMemoryBus, str]]:
    redis_client = aioredis.from_url("redis://127.0.0.1:6379/0")
    try:
        await redis_client.ping()
    except Exception:  # pragma: no cover
        pytest.skip("no Redis at 127.0.0.1:6379")
    base = str(sim.make_url("")).rstrip("/")
    prefix = f"test-exec-rules-{uuid.uuid4().hex[:8]}"
    client = BtcTurkClient(base, KEY, SECRET, timeout=5.0)
    bus = InMemoryBus()
    execution = Execution(bus=bus, journal=Journal(IdempotencyStore(redis_client, prefix), "it-1", 600.0),
                          locks=FencedLock(redis_client, prefix), exchange=BtcTurkExchange(client), account="main",
                          owner="it-1", clock=time.time_ns, rules=ExchangeRules())  # fmt: skip
    try:
        yield execution, bus, base
    finally:
        await client.aclose()
        keys = [k async for k in redis_client.scan_iter(match=f"{prefix}:*")]
        if keys:
            await redis_client.delete(*keys)
        await redis_client.aclose()


async def order_posts(base: str) -> int:
    async with httpx.AsyncClient(headers=ADMIN) as http:
        log = (await http.get(base + "/sim/requests")).json()
    assert log["first"] == 0  # the whole log is still held, so the count below is complete
    return sum(1 for r in log["requests"] if r["method"] == "POST" and r["path"].endswith("/order"))


@pytest.mark.integration
async def test_rule_breaking_orders_are_rejected_without_an_exchange_call(engine: Any) -> None:
    execution, bus, base = engine
    # exchangeinfo not loaded: nothing is sent and the command waits (nak), never sent blind.
    assert await bus.deliver(execution.on_order, submit("early", "3000000", "0.01")) == "nak"
    assert bus.published == []
    async with BtcTurkClient(base, KEY, SECRET) as client:
        execution.rules.load((await client.exchange_info()).symbols)
    for n, (price, quantity, reason) in enumerate(BAD):
        assert await bus.deliver(execution.on_order, submit(f"bad-{n}", price, quantity)) == "ack"
        [rejected] = [r for r in bus.of_type(OrderRejected) if r.client_order_id == f"bad-{n}"]
        assert rejected.reason == reason, (price, quantity)
        assert rejected.detail.startswith("refused before sending")
    assert await order_posts(base) == 0
    # The same machinery still places a valid order (once), and the early command now goes through.
    assert await bus.deliver(execution.on_order, submit("early", "3000000", "0.01"), deliveries=2) == "ack"
    assert [a.client_order_id for a in bus.of_type(OrderAccepted)] == ["early"]
    assert await order_posts(base) == 1


@pytest.mark.integration
async def test_a_command_that_waited_too_long_for_the_rules_is_rejected_unsent(engine: Any) -> None:
    execution, bus, base = engine
    old = msgspec.structs.replace(submit("waited", "3000000", "0.01"), ts_ns=time.time_ns() - 9 * 10**9)
    assert await bus.deliver(execution.on_order, old, deliveries=5) == "ack"
    [rejected] = bus.of_type(OrderRejected)
    assert rejected.reason == "RULES_NOT_LOADED"
    assert await order_posts(base) == 0
