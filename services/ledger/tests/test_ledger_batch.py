"""Batch ingestion: many messages per transaction, same books as one by one, exactly once; the batcher; and
the batched consumer loop on a real JetStream consumer."""

from __future__ import annotations

import asyncio
import random
import secrets
from collections.abc import AsyncIterator, Sequence
from decimal import Decimal

import asyncpg
import pytest
import pytest_asyncio

from btcbot.contracts import ids
from btcbot.contracts.codec import Codec
from btcbot.contracts.messages import OrderAccepted, OrderFilled
from btcbot.contracts.streams import EXECUTION, ConsumerSpec
from btcbot.ledger.handlers import Ledger
from btcbot.ledger.positions import fill_from_event, replay
from btcbot.ledger.store import FillResult, Incoming, Origin, Store
from btcbot.ledger.tasks import Batcher, run_batched
from btcbot.runtime.consumer import Consumer
from btcbot.runtime.errors import DependencyUnavailable
from btcbot.runtime.jetstream import NatsPublisher, connect, provision
from btcbot.runtime.memory import InMemoryBus

D = Decimal
S = 1_000_000_000
NOW = 1_750_000_000 * S
TABLES = (
    "orders, order_events, fills, positions, balances, applied_messages, equity_snapshots, daily_pnl, ledger_alerts"
)


@pytest_asyncio.fixture(loop_scope="session")
async def store(ledger_db: str) -> AsyncIterator[Store]:
    conn = await asyncpg.connect(ledger_db)
    try:
        await conn.execute(f"TRUNCATE {TABLES}")
    finally:
        await conn.close()
    s = await Store.open(ledger_db, min_size=1, max_size=3)
    yield s
    await s.close()


def fill_event(symbol: str, trade: int, side: str, price: str, qty: str, fee: str, fee_asset: str) -> OrderFilled:
    return OrderFilled(
        id=ids.fill_id(symbol, str(trade), str(trade % 5)),
        ts_ns=NOW,
        client_order_id=f"bb-{trade % 5}",
        exchange_order_id=str(trade % 5),
        strategy="test",
        symbol=symbol,
        side=side,  # type: ignore[arg-type]
        trade_id=str(trade),
        price=D(price),
        quantity=D(qty),
        fee=D(fee),
        fee_asset=fee_asset,
        tax=(D(fee) * D("0.18")).quantize(D("0.00000001")),
        exchange_ts_ns=NOW + trade * S,
    )


def random_history(rng: random.Random, n: int) -> list[OrderFilled]:
    """Fills that never oversell in exchange order; fees in the quote, the base or a third asset."""
    events: list[OrderFilled] = []
    held = {"BTCTRY": D(0), "ETHTRY": D(0)}
    for trade in range(1, n + 1):
        symbol = rng.choice(sorted(held))
        base = symbol.removesuffix("TRY")
        qty = D(rng.randint(1, 40)) / 10
        side = "sell" if held[symbol] >= qty + 1 and rng.random() < 0.4 else "buy"
        fee_asset = rng.choice(["TRY", "TRY", "USDT", base]) if side == "buy" else rng.choice(["TRY", "USDT"])
        fee = str(D(rng.randint(1, 300)) / 100) if fee_asset != base else "0.001"
        held[symbol] += qty - (D("0.001") + D("0.00018") if fee_asset == base else 0) if side == "buy" else -qty
        events.append(fill_event(symbol, trade, side, str(rng.randint(90, 130)), str(qty), fee, fee_asset))
    return events


RATES = {"USDT": (D("38.5"), "book:USDTTRY:1:1")}


def incoming(event: OrderFilled, seq: int) -> Incoming:
    rate = RATES.get(event.fee_asset) if event.fee_asset == "USDT" else None
    return Incoming(event, Origin(f"exec.filled.{event.symbol}", "EXECUTION", seq), rate)


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_batches_of_any_size_and_order_give_the_reference_books(store: Store, ledger_db: str, seed: int) -> None:
    rng = random.Random(seed)
    events = random_history(rng, 60)
    accepted = [
        OrderAccepted(
            id=ids.accepted_id(f"bb-{k}"),
            ts_ns=NOW,
            client_order_id=f"bb-{k}",
            exchange_order_id=str(k),
            strategy="test",
            symbol="BTCTRY",
            side="buy",
            order_type="limit",
            price=D(100),
            quantity=D(1000),
            intent_id=f"i{k}",
        )
        for k in range(5)
    ]
    # Every message twice, shuffled, cut into batches of random sizes (duplicates inside one batch too).
    deliveries = [incoming(e, i) for i, e in enumerate(events)] * 2 + [Incoming(a, Origin("x")) for a in accepted]
    rng.shuffle(deliveries)
    conn = await asyncpg.connect(ledger_db)
    try:
        await conn.execute(f"TRUNCATE {TABLES}")
        position = 0
        statuses: list[str] = []
        while position < len(deliveries):
            size = rng.randint(1, 40)
            results = await store.apply_batch(deliveries[position : position + size], NOW)
            statuses += [r.status for r in results]
            position += size
        assert statuses.count("applied") + statuses.count("halted") == len(events) + len(accepted)
        assert statuses.count("duplicate") == len(events)
        expected = replay(
            fill_from_event(e, fee_rate=RATES["USDT"][0] if e.fee_asset == "USDT" else None) for e in events
        )
        rows = {r["symbol"]: r for r in await conn.fetch("SELECT * FROM positions")}
        halted = {s for s, r in rows.items() if r["halted_reason"]}
        # Out-of-order arrival may halt a symbol for a while; once every fill is in, none is halted.
        assert halted == set()
        for symbol, want in expected.positions.items():
            row = rows[symbol]
            assert (row["quantity"], row["cost"], row["realized_pnl"], row["fees"], row["fills"]) == (
                want.quantity,
                want.cost,
                want.realized_pnl,
                want.fees,
                want.fills,
            )
        daily = {
            (r["day"], r["symbol"]): (r["realized"], r["fees"]) for r in await conn.fetch("SELECT * FROM daily_pnl")
        }
        assert daily == expected.daily()
        balances = {r["asset"]: r["total"] for r in await conn.fetch("SELECT asset, total FROM balances")}
        want_balances: dict[str, Decimal] = {}
        for e in events:
            f = fill_from_event(e)
            sign = 1 if f.side == "buy" else -1
            for asset, delta in ((f.base_asset, sign * f.quantity), (f.quote_asset, -sign * f.notional)):
                want_balances[asset] = want_balances.get(asset, D(0)) + delta
            want_balances[f.fee_asset] = want_balances.get(f.fee_asset, D(0)) - f.charge
        assert balances == want_balances
        assert await conn.fetchval("SELECT count(*) FROM applied_messages") == len(events) + len(accepted)
        assert not await conn.fetchval("SELECT count(*) FROM fills WHERE flagged_unknown_order")
        # The fees view carries currency, tax and the rate each fee was valued at.
        usdt = await conn.fetch("SELECT DISTINCT rate, rate_source FROM fees WHERE currency = 'USDT'")
        assert [(r["rate"], r["rate_source"]) for r in usdt] in ([], [(D("38.5"), "book:USDTTRY:1:1")])
    finally:
        await conn.close()


async def test_a_changed_day_offset_rebuilds_daily_pnl(store: Store, ledger_db: str) -> None:
    pair = [
        fill_event("BTCTRY", 1, "buy", "100", "1", "0", "TRY"),
        fill_event("BTCTRY", 2, "sell", "110", "1", "0", "TRY"),
    ]
    events = [
        OrderFilled(**{**{f: getattr(e, f) for f in e.__struct_fields__}, "exchange_ts_ns": ts})
        for e, ts in zip(pair, (NOW, NOW + 20 * 3600 * S), strict=True)  # 20 h apart: one UTC day or two
    ]
    await store.configure_day_offset(0, NOW)
    await store.apply_batch([incoming(e, i) for i, e in enumerate(events)], NOW)
    conn = await asyncpg.connect(ledger_db)
    try:
        before = await conn.fetch("SELECT day, realized FROM daily_pnl ORDER BY day")
        assert not await store.configure_day_offset(0, NOW)  # unchanged: nothing to do
        assert await store.configure_day_offset(-12 * 60, NOW)
        after = await conn.fetch("SELECT day, realized FROM daily_pnl ORDER BY day")
        assert sum(r["realized"] for r in before) == sum(r["realized"] for r in after) == D(10)
        assert [r["day"] for r in before] != [r["day"] for r in after]
        assert await conn.fetchval("SELECT value FROM ledger_config WHERE key = 'day_offset_minutes'") == "-720"
    finally:
        await conn.close()


async def test_batcher_flushes_at_max_items_and_after_linger() -> None:
    seen: list[list[int]] = []

    async def apply(items: Sequence[int]) -> list[int]:
        seen.append(list(items))
        return [i * 10 for i in items]

    batcher: Batcher[int, int] = Batcher(apply, max_items=4, linger=0.05)
    results = await asyncio.gather(*(batcher.submit(i) for i in range(6)))
    assert results == [i * 10 for i in range(6)]
    assert seen == [[0, 1, 2, 3], [4, 5]]
    assert await batcher.submit(9) == 90  # alone: waits the linger, then goes
    assert seen[-1] == [9]


async def test_batcher_gives_a_retry_to_every_caller_and_isolates_other_errors() -> None:
    async def down(items: Sequence[int]) -> list[int]:
        raise DependencyUnavailable("postgres down")

    batcher: Batcher[int, int] = Batcher(down, max_items=3, linger=0.01)
    results = await asyncio.gather(*(batcher.submit(i) for i in range(3)), return_exceptions=True)
    assert all(isinstance(r, DependencyUnavailable) for r in results)

    calls: list[list[int]] = []

    async def picky(items: Sequence[int]) -> list[int]:
        calls.append(list(items))
        if 2 in items:
            raise ValueError("bad item 2")
        return list(items)

    batcher = Batcher(picky, max_items=3, linger=0.01)
    results = await asyncio.gather(*(batcher.submit(i) for i in range(3)), return_exceptions=True)
    assert results[:2] == [0, 1]
    assert isinstance(results[2], ValueError)
    assert calls == [[0, 1, 2], [0], [1], [2]]


@pytest.mark.integration
async def test_the_batched_consumer_commits_many_per_transaction_and_acks_each(
    nats_url: str, store: Store, ledger_db: str
) -> None:
    symbol = f"Q{secrets.token_hex(3).upper()}TRY"
    spec = ConsumerSpec(f"ledger-batch-{symbol.lower()}", EXECUTION.name, (f"exec.filled.{symbol}",), max_deliver=3)
    nc = await connect(nats_url, "ledger-batch-test", 5, reconnect_forever=False)
    try:
        js = nc.jetstream()
        await provision(js, [EXECUTION], [spec])
        publisher = NatsPublisher(js)
        count = 400
        events = [fill_event(symbol, t, "buy", "100", "0.5", "0.1", "TRY") for t in range(1, count + 1)]
        for event in events:
            await publisher.publish(f"exec.filled.{symbol}", event)
        clock = iter(range(NOW, NOW + 10**7))
        ledger = Ledger(store=store, bus=InMemoryBus(), account="b", quote_asset="TRY", now_ns=lambda: next(clock),
                        log=_Quiet())  # fmt: skip
        batcher: Batcher[Incoming, FillResult] = Batcher(ledger.apply, max_items=100, linger=0.005)
        ledger.batcher = batcher
        codec: Codec[OrderFilled] = Codec(OrderFilled)
        consumer = Consumer("ledger", js, publisher, spec, codec, ledger.on_execution)
        stop = asyncio.Event()
        task = asyncio.create_task(run_batched(consumer, js, stop, fetch=100))
        conn = await asyncpg.connect(ledger_db)
        try:
            for _ in range(200):
                done = await conn.fetchval("SELECT count(*) FROM fills WHERE symbol = $1", symbol)
                info = await js.consumer_info(EXECUTION.name, spec.durable)
                if done == count and info.num_ack_pending == 0 and info.num_pending == 0:
                    break
                await asyncio.sleep(0.05)
            stop.set()
            await task
            assert done == count
            assert info.num_ack_pending == 0
            assert info.num_pending == 0
            quantity = await conn.fetchval("SELECT quantity FROM positions WHERE symbol = $1", symbol)
            assert quantity == D("0.5") * count
            # Many fills per transaction: far fewer commits than messages.
            assert batcher.batches <= count // 10
        finally:
            await conn.close()
            await js.delete_consumer(EXECUTION.name, spec.durable)
            # The EXECUTION stream is shared by the session: leave no fills for other tests' ledgers to book.
            await js.purge_stream(EXECUTION.name, subject=f"exec.filled.{symbol}")
    finally:
        await nc.close()


class _Quiet:
    def info(self, event: str, **fields: object) -> None: ...
    def warning(self, event: str, **fields: object) -> None: ...
    def error(self, event: str, **fields: object) -> None: ...
