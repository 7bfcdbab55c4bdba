"""The reservation script on a real Redis: it does what the Python model does, and it holds under concurrency."""

from __future__ import annotations

import asyncio
import secrets
from typing import Any

import pytest
import redis.asyncio as aioredis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from btcbot.runtime.errors import DependencyUnavailable
from btcbot.runtime.reservations import RedisReservations, ReservationModel, ReserveLimits, ReserveRequest

pytestmark = pytest.mark.integration

COIDS = ("c1", "c2", "c3", "c4", "c5", "c6")
SYMBOLS = ("BTCTRY", "ETHTRY")
small = st.integers(0, 12)

reserve_op = st.tuples(
    st.just("reserve"),
    st.sampled_from(COIDS),
    st.sampled_from(SYMBOLS),
    st.sampled_from(("buy", "sell")),
    st.integers(1, 6),  # quantity
    st.integers(0, 6),  # notional
    st.integers(-1, 3),  # time step (ms * 1000; replicas clocks differ)
    st.integers(-1, 2),  # snapshot step (may go back: stale)
    small,  # position
    small,  # symbol value
    small,  # exposure
    st.integers(0, 60),  # cash
)
event_op = st.one_of(
    st.tuples(st.sampled_from(("accepted", "rejected", "release")), st.sampled_from(COIDS)),
    st.tuples(st.just("canceled"), st.sampled_from(COIDS), st.integers(0, 4), st.integers(0, 3)),
    st.tuples(
        st.just("filled"),
        st.sampled_from((*COIDS, "ghost")),
        st.sampled_from(SYMBOLS),
        st.sampled_from(("buy", "sell")),
        st.sampled_from(("t1", "t2", "t3", "t4")),
        st.integers(1, 4),
        st.integers(0, 4),
        st.integers(0, 3),
    ),
    st.tuples(
        st.just("min_total"), st.sampled_from(SYMBOLS), st.sampled_from(("r1", "r2", "r3", "r4")), st.integers(0, 3)
    ),
)
# Mostly permissive, so that orders are approved and later checks are reached.
limits_st = st.builds(
    ReserveLimits,
    max_open_per_symbol=st.integers(1, 6),
    max_open_total=st.integers(1, 8),
    cooldown_ms=st.sampled_from((0, 0, 0, 1000, 2500)),
    cash_reserve=st.integers(0, 5),
    symbol_cap=st.integers(0, 40),
    budget=st.integers(0, 60),
    deny_unknown_outcome=st.sampled_from((False, False, True)),
)


async def _replay(url: str, limits: ReserveLimits, ops: list[tuple[Any, ...]]) -> None:
    client = aioredis.from_url(url)
    store = RedisReservations(client, f"t-res-{secrets.token_hex(6)}")
    model = ReservationModel()
    now, snap = 10_000, 0
    try:
        for op in ops:
            kind = op[0]
            if kind == "reserve":
                _, coid, symbol, side, qty, notional, dt, dsnap, position, value, exposure, cash = op
                now += dt * 1000
                snap = max(0, snap + dsnap)
                req = ReserveRequest(coid=coid, symbol=symbol, side=side, quantity=qty, notional=notional,
                                     now_ms=now, snap_seq=snap, position=position, symbol_value=value,
                                     exposure=exposure, cash=cash)  # fmt: skip
                assert await store.reserve(req, limits) == await model.reserve(req, limits), op
            elif kind in ("accepted", "rejected"):
                await getattr(store, kind)(op[1])
                await getattr(model, kind)(op[1])
            elif kind == "release":
                assert await store.release_denied(op[1]) == await model.release_denied(op[1])
            elif kind == "canceled":
                await store.canceled(op[1], op[2], snap + op[3])
                await model.canceled(op[1], op[2], snap + op[3])
            elif kind == "filled":
                _, coid, symbol, side, trade, qty, notional, dseq = op
                await store.filled(coid, symbol, side, trade, qty, notional, snap + dseq)
                await model.filled(coid, symbol, side, trade, qty, notional, snap + dseq)
            else:
                _, symbol, event, back = op
                args = (symbol, event, now - back * 1000, 2500, 2, 5000)
                assert await store.min_total_reject(*args) == await model.min_total_reject(*args), op
        assert await store.held() == model.held
        assert await store.summary() == await model.summary()
        assert await store.open_orders() == await model.open_orders()
    finally:
        keys = [k async for k in client.scan_iter(match=f"{store.prefix}*", count=500)]
        if keys:
            await client.delete(*keys)
        await client.aclose()


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(limits=limits_st, ops=st.lists(st.one_of(reserve_op, reserve_op, event_op), min_size=15, max_size=50))
def test_the_script_decides_and_books_exactly_as_the_model(redis_url: str, limits: ReserveLimits, ops: Any) -> None:
    asyncio.run(_replay(redis_url, limits, ops))


@pytest.fixture
async def store(redis_url: str, redis_prefix: str):  # type: ignore[no-untyped-def]
    client = aioredis.from_url(redis_url)
    yield RedisReservations(client, f"{redis_prefix}:{secrets.token_hex(3)}")
    await client.aclose()


async def test_concurrent_reserves_never_pass_the_budget_together(redis_url: str, store: RedisReservations) -> None:
    limits = ReserveLimits(max_open_per_symbol=1000, max_open_total=1000, cooldown_ms=0, cash_reserve=0,
                           symbol_cap=10**9, budget=100_000, deny_unknown_outcome=False)  # fmt: skip

    def ask(i: int) -> ReserveRequest:
        return ReserveRequest(coid=f"c{i}", symbol="BTCTRY", side="buy", quantity=1, notional=3_000 + i,
                              now_ms=1, snap_seq=0, position=0, symbol_value=0, exposure=1_000, cash=10**9)  # fmt: skip

    # Four clients (as four replicas would be), fifty requests each, all at once.
    clients = [aioredis.from_url(redis_url) for _ in range(4)]
    stores = [RedisReservations(c, store.prefix.removesuffix(":res")) for c in clients]
    try:
        answers = await asyncio.gather(*(stores[i % 4].reserve(ask(i), limits) for i in range(200)))
    finally:
        for c in clients:
            await c.aclose()
    approved = [i for i, a in enumerate(answers) if a.outcome == "approved"]
    total = sum(3_000 + i for i in approved)
    assert 1_000 + total <= 100_000
    assert 100_000 - 1_000 - total < 3_000 + 199  # it filled the budget as far as orders fit
    assert {a.reason for a in answers if a.outcome == "denied"} == {"EXPOSURE_BUDGET"}
    held = await store.held()
    assert sorted(held) == sorted(f"c{i}" for i in approved)
    # A redelivered intent gets the same answer.
    assert [await store.reserve(ask(i), limits) for i in range(200)] == answers


async def test_redis_down_is_dependency_unavailable() -> None:
    client = aioredis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.5)
    store = RedisReservations(client, "nowhere")
    req = ReserveRequest(coid="c", symbol="BTCTRY", side="buy", quantity=1, notional=1, now_ms=1, snap_seq=0,
                         position=0, symbol_value=0, exposure=0, cash=0)  # fmt: skip
    try:
        with pytest.raises(DependencyUnavailable):
            await store.reserve(req, ReserveLimits())
        with pytest.raises(DependencyUnavailable):
            await store.accepted("c")
        with pytest.raises(DependencyUnavailable):
            await store.summary()
    finally:
        await client.aclose()


async def test_every_key_a_reservation_writes_expires_after_the_retention(store: RedisReservations) -> None:
    """A run's prefix must not leave keys in Redis forever; each write refreshes the retention (7 days)."""
    from btcbot.runtime.reservations import KEY_RETENTION_MS

    limits = ReserveLimits(cooldown_ms=60_000, symbol_cap=10**12, budget=10**12, cash_reserve=0)
    ask = ReserveRequest(coid="c1", symbol="BTCTRY", side="buy", quantity=5, notional=1_000, now_ms=1, snap_seq=1,
                         position=0, symbol_value=0, exposure=0, cash=10**9)  # fmt: skip
    assert (await store.reserve(ask, limits)).outcome == "approved"
    await store.accepted("c1")
    await store.filled("c1", "BTCTRY", "buy", "t1", 2, 400, 2)
    await store.min_total_reject("BTCTRY", "r1", 1, 1_000, 1, 60_000)
    denied = ReserveRequest(**{**ask.__dict__, "coid": "c2", "now_ms": 2, "snap_seq": 2})
    assert (await store.reserve(denied, limits)).outcome == "denied"
    client = store._redis  # the store's own connection
    keys = [k async for k in client.scan_iter(match=f"{store.prefix}*", count=500)]
    assert len(keys) >= 6  # hwm, ids, last, o:c1, f:c1, cool, deny:c2, mt:BTCTRY
    ttls = {k.decode(): await client.pttl(k) for k in keys}
    assert all(ttl > 0 for ttl in ttls.values()), ttls
    assert all(ttl <= KEY_RETENTION_MS for ttl in ttls.values())
