"""Risk's handlers with reservations on a real Redis: approvals reserve, order events release, verdicts agree."""

from __future__ import annotations

import asyncio
import secrets
from decimal import Decimal
from typing import Any

import pytest
import redis.asyncio as aioredis
import structlog

from btcbot.contracts import ids, subjects
from btcbot.contracts.codec import encode
from btcbot.contracts.messages import (
    Balance,
    KillSwitch,
    OrderAccepted,
    OrderCanceled,
    OrderDenied,
    OrderFilled,
    OrderIntent,
    OrderRejected,
    PortfolioSnapshot,
    Position,
    SubmitOrder,
)
from btcbot.risk.control import RiskState
from btcbot.risk.handlers import RawControl, RiskHandlers
from btcbot.risk.limits import RiskLimits
from btcbot.risk.rules import SymbolRules
from btcbot.runtime.bus import Delivery
from btcbot.runtime.idempotency import IdempotencyStore
from btcbot.runtime.memory import InMemoryBus
from btcbot.runtime.reservations import CHECKS, RedisReservations, ReserveLimits

pytestmark = pytest.mark.integration

D = Decimal
NOW = 1_700_000_000 * 10**9
SEC = 10**9
RULES = {
    "BTCTRY": SymbolRules("BTCTRY", True, price_scale=0, quantity_scale=8, tick_size=D(1), min_notional=D("99.91"))
}
FREE = ReserveLimits(max_open_per_symbol=100, max_open_total=100, cooldown_ms=0, deny_unknown_outcome=False)


def intent(book: str, side: str = "buy", qty: str = "0.0001", price: str = "3000000", ts: int = NOW) -> OrderIntent:
    return OrderIntent(id=ids.intent_id("s", "BTCTRY", book), ts_ns=ts, strategy="s", symbol="BTCTRY", side=side,  # type: ignore[arg-type]
                       order_type="limit", price=D(price), quantity=D(qty), reason="t", book_id=book)  # fmt: skip


def snapshot(btc: str = "0", cash: str = "100000", exec_seq: int = 1, ts: int = NOW) -> PortfolioSnapshot:
    positions = (
        (
            Position(
                symbol="BTCTRY",
                quantity=D(btc),
                avg_cost=D(3000000),
                realized_pnl=D(0),
                unrealized_pnl=D(0),
                mark=D(3000000),
            ),
        )
        if D(btc)
        else ()
    )
    return PortfolioSnapshot(
        id=f"p{exec_seq}", ts_ns=ts, account="main", quote_asset="TRY", balances=(Balance(asset="TRY", total=D(cash)),),
        positions=positions, exposure=D(0), realized_pnl=D(0), unrealized_pnl=D(0), fees=D(0), equity=D(0),
        peak_equity=D(0), drawdown=D(0), fills=0, exec_seq=exec_seq,
    )  # fmt: skip


class Rig:
    """One risk replica on the in-memory bus, sharing Redis (verdicts and reservations) under `prefix`."""

    def __init__(self, client: aioredis.Redis, prefix: str, limits: ReserveLimits, clock: list[int]) -> None:
        self.bus = InMemoryBus()
        self.state = RiskState("main")
        self.state.set_rules(RULES, NOW)
        self.store = RedisReservations(client, prefix)
        self.h = RiskHandlers(self.state, RiskLimits(max_order_notional=D(10**6)), self.bus, lambda: clock[0],
                              structlog.get_logger("test"), verdicts=IdempotencyStore(client, prefix), owner="r",
                              reservations=self.store, reserve_limits=limits)  # fmt: skip

    async def send(self, i: OrderIntent, deliveries: int = 1) -> SubmitOrder | OrderDenied | str:
        before = len(self.bus.published)
        outcome = await self.bus.deliver(self.h.on_intent, i, deliveries=deliveries)
        if outcome != "ack":
            return outcome
        [(_, message)] = self.bus.published[before:] or [(None, "duplicate")]
        return message  # type: ignore[return-value]

    async def event(self, message: Any, seq: int) -> None:
        await self.h.on_execution(message, Delivery(subject="exec", stream="EXECUTION", sequence=seq))

    async def portfolio(self, snap: PortfolioSnapshot) -> None:
        await self.h.on_portfolio(snap, Delivery(subject="portfolio.main"))


@pytest.fixture
async def client(redis_url: str):  # type: ignore[no-untyped-def]
    c = aioredis.from_url(redis_url)
    yield c
    await c.aclose()


@pytest.fixture
def prefix(redis_prefix: str) -> str:
    return f"{redis_prefix}:{secrets.token_hex(3)}"


def accepted(i: OrderIntent) -> OrderAccepted:
    coid = ids.client_order_id(i.id)
    return OrderAccepted(id=f"a-{coid}", ts_ns=NOW, client_order_id=coid, exchange_order_id="1", intent_id=i.id,
                         strategy="s", symbol="BTCTRY", side=i.side, order_type="limit", price=i.price,
                         quantity=i.quantity)  # fmt: skip


def rejected(i: OrderIntent, reason: str = "BALANCE_NOT_ENOUGH", ts: int = NOW) -> OrderRejected:
    coid = ids.client_order_id(i.id)
    return OrderRejected(id=f"r-{coid}", ts_ns=ts, client_order_id=coid, intent_id=i.id, strategy="s",
                         symbol="BTCTRY", reason=reason)  # fmt: skip


def filled(i: OrderIntent, trade: str, qty: str) -> OrderFilled:
    coid = ids.client_order_id(i.id)
    return OrderFilled(id=f"f-{trade}", ts_ns=NOW, client_order_id=coid, exchange_order_id="1", strategy="s",
                       symbol="BTCTRY", side=i.side, trade_id=trade, price=i.price or D(0), quantity=D(qty),
                       fee=D(0), fee_asset="TRY")  # fmt: skip


async def test_default_limits_one_open_order_then_a_cooldown(client: aioredis.Redis, prefix: str) -> None:
    clock = [NOW]
    rig = Rig(client, prefix, ReserveLimits(), clock)
    await rig.portfolio(snapshot())
    first = intent("b1")
    submit = await rig.send(first)
    assert isinstance(submit, SubmitOrder)
    assert submit.checks[-len(CHECKS) :] == CHECKS
    assert (await rig.store.open_orders()) == [(submit.client_order_id, "BTCTRY")]
    unknown = await rig.send(intent("b2"))
    assert isinstance(unknown, OrderDenied)
    assert unknown.reason == "OUTCOME_UNKNOWN"
    await rig.event(accepted(first), 2)
    # A restarted replica (new objects, same Redis) sees the same reservation.
    again = Rig(client, prefix, ReserveLimits(), clock)
    await again.portfolio(snapshot())
    one_open = await again.send(intent("b3"))
    assert isinstance(one_open, OrderDenied)
    assert one_open.reason == "OPEN_ORDERS_SYMBOL"
    await rig.event(rejected(first), 3)
    assert await rig.store.open_orders() == []
    cooling = await again.send(intent("b4"))
    assert isinstance(cooling, OrderDenied)
    assert (cooling.reason, cooling.detail) == ("COOLDOWN", "BTCTRY buy approved 0 ms ago, cooldown 60000 ms")
    clock[0] = NOW + 60 * SEC
    assert isinstance(await again.send(intent("b5", ts=clock[0])), SubmitOrder)


async def test_buys_stop_at_the_budget_and_the_cash_reserve(client: aioredis.Redis, prefix: str) -> None:
    limits = ReserveLimits(max_open_per_symbol=100, max_open_total=100, cooldown_ms=0, deny_unknown_outcome=False,
                           budget=180_000, symbol_cap=10**9, cash_reserve=30_000)  # fmt: skip
    rig = Rig(client, prefix, limits, [NOW])
    await rig.portfolio(snapshot(cash="1500"))
    verdicts = [await rig.send(intent(f"b{n}", qty="0.0001")) for n in range(5)]  # 300 TRY each
    reasons = [v.reason if isinstance(v, OrderDenied) else "ok" for v in verdicts]
    # 1500 TRY cash keeps 300: four buys of 300 fit, the fifth would spend the reserve.
    assert reasons == ["ok", "ok", "ok", "ok", "CASH_RESERVE"]
    await rig.portfolio(snapshot(cash="100000", exec_seq=2))
    more = [await rig.send(intent(f"c{n}", qty="0.0001")) for n in range(3)]
    assert [v.reason if isinstance(v, OrderDenied) else "ok" for v in more] == ["ok", "ok", "EXPOSURE_BUDGET"]
    last = more[-1]
    assert isinstance(last, OrderDenied)
    assert last.detail == "buy of 300.00 > 0.00 left in the exposure budget"
    summary = await rig.store.summary()
    assert summary["reserved"] == {"BTCTRY": {"buy_notional": "1800.00", "sell_quantity": "0.00000000"}}


async def test_no_oversell_even_on_a_stale_snapshot(client: aioredis.Redis, prefix: str) -> None:
    rig = Rig(client, prefix, FREE, [NOW])
    await rig.portfolio(snapshot(btc="0.001", exec_seq=5))
    sell = intent("s1", side="sell", qty="0.0008")
    assert isinstance(await rig.send(sell), SubmitOrder)
    denied = await rig.send(intent("s2", side="sell", qty="0.0003"))
    assert isinstance(denied, OrderDenied)
    assert (denied.reason, denied.detail) == (
        "OVERSELL",
        "sell 0.00030000 > 0.00020000 held and not already being sold",
    )
    await rig.event(accepted(sell), 6)
    await rig.event(filled(sell, "t1", "0.0008"), 7)
    # The ledger lags (Postgres down): its snapshot still says 0.001. The fill still counts.
    await rig.portfolio(snapshot(btc="0.001", exec_seq=6, ts=NOW + 1))
    lagging = await rig.send(intent("s3", side="sell", qty="0.0003"))
    assert isinstance(lagging, OrderDenied)
    assert lagging.reason == "OVERSELL"
    await rig.portfolio(snapshot(btc="0.0002", exec_seq=7, ts=NOW + 2))
    assert isinstance(await rig.send(intent("s4", side="sell", qty="0.0002")), SubmitOrder)
    assert isinstance(await rig.send(intent("s5", side="sell", qty="0.00000001")), OrderDenied)


async def test_a_replica_with_an_older_snapshot_waits(client: aioredis.Redis, prefix: str) -> None:
    a, b = Rig(client, prefix, FREE, [NOW]), Rig(client, prefix, FREE, [NOW])
    await a.portfolio(snapshot(exec_seq=10))
    await b.portfolio(snapshot(exec_seq=9))
    assert isinstance(await a.send(intent("x1")), SubmitOrder)
    assert await b.send(intent("x2")) == "nak"
    assert b.bus.published == []
    await b.portfolio(snapshot(exec_seq=10, ts=NOW + 1))
    assert isinstance(await b.send(intent("x2"), deliveries=2), SubmitOrder)


async def test_cancels_and_fills_release(client: aioredis.Redis, prefix: str) -> None:
    rig = Rig(client, prefix, FREE, [NOW])
    await rig.portfolio(snapshot(exec_seq=1))
    one, two = intent("b1"), intent("b2")
    await rig.send(one)
    await rig.send(two)
    await rig.event(accepted(one), 2)
    coid_one, coid_two = ids.client_order_id(one.id), ids.client_order_id(two.id)
    await rig.event(OrderCanceled(id="c1", ts_ns=NOW, client_order_id=coid_one, exchange_order_id="1",
                                  symbol="BTCTRY", filled_quantity=D(0)), 3)  # fmt: skip
    await rig.event(filled(two, "t1", "0.00004"), 4)
    await rig.event(filled(two, "t1", "0.00004"), 4)  # redelivered
    held = await rig.store.held()
    assert coid_one not in held
    assert (held[coid_two].state, held[coid_two].fqty) == ("open", 4000)
    await rig.event(filled(two, "t2", "0.00006"), 5)
    assert (await rig.store.held())[coid_two].state == "done"
    assert await rig.store.open_orders() == []
    await rig.portfolio(snapshot(exec_seq=5, ts=NOW + 1))
    await rig.send(intent("b3"))
    assert coid_two not in await rig.store.held()


async def test_three_min_total_rejects_cool_the_symbol(client: aioredis.Redis, prefix: str) -> None:
    rig = Rig(client, prefix, FREE, [NOW])
    await rig.portfolio(snapshot())
    for n in range(3):
        i = intent(f"m{n}")
        await rig.send(i)
        await rig.event(rejected(i, "FAILED_MIN_TOTAL_AMOUNT", ts=NOW + n * SEC), 2 + n)
    denied = await rig.send(intent("m9"))
    assert isinstance(denied, OrderDenied)
    assert denied.reason == "MIN_TOTAL_COOLDOWN"


async def test_a_denial_never_keeps_a_reservation(client: aioredis.Redis, prefix: str) -> None:
    a, b = Rig(client, prefix, FREE, [NOW]), Rig(client, prefix, FREE, [NOW])
    for rig in (a, b):
        await rig.portfolio(snapshot())
    i = intent("k1")
    coid = ids.client_order_id(i.id)
    # An earlier life of replica b reserved, then died before recording its verdict.
    assert (await b.store.reserve(b.h._reserve_request(i, NOW), FREE)).outcome == "approved"  # type: ignore[arg-type]
    kill = KillSwitch(id="k", ts_ns=NOW, engaged=True, reason="r", operator="o")
    await a.h.on_control(RawControl(id="k", ts_ns=NOW, data=encode(kill)), Delivery(subjects.CONTROL_KILL, sequence=1))
    denied = await a.send(i)
    assert isinstance(denied, OrderDenied)
    assert coid not in await a.store.held()
    # Replica b, redelivered the same intent, repeats the denial and reserves nothing.
    assert await b.send(i, deliveries=2) == denied
    assert coid not in await b.store.held()


async def test_two_replicas_racing_on_one_intent_agree(client: aioredis.Redis, prefix: str) -> None:
    a, b = Rig(client, prefix, ReserveLimits(), [NOW]), Rig(client, prefix, ReserveLimits(), [NOW])
    for rig in (a, b):
        await rig.portfolio(snapshot())
    i = intent("race")
    first, second = await asyncio.gather(a.send(i), b.send(i))
    assert isinstance(first, SubmitOrder)
    assert first == second
    assert await a.store.open_orders() == [(first.client_order_id, "BTCTRY")]


async def test_redis_down_means_the_intent_waits() -> None:
    dead = aioredis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.5)
    try:
        bus = InMemoryBus()
        state = RiskState("main")
        state.set_rules(RULES, NOW)
        h = RiskHandlers(state, RiskLimits(), bus, lambda: NOW, structlog.get_logger("test"),
                         reservations=RedisReservations(dead, "x"))  # fmt: skip
        await h.on_portfolio(snapshot(), Delivery("p"))
        assert await bus.deliver(h.on_intent, intent("d1")) == "nak"
        assert bus.published == []
    finally:
        await dead.aclose()


async def test_an_execution_event_with_a_bad_amount_is_poison(client: aioredis.Redis, prefix: str) -> None:
    rig = Rig(client, prefix, FREE, [NOW])
    i = intent("p1")
    bad = filled(i, "t1", "NaN")
    assert await rig.bus.deliver(rig.h.on_execution, bad) == "dead"
    assert await rig.store.held() == {}
