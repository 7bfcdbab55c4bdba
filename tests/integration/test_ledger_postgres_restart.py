"""Postgres stops in the middle of ingestion and comes back: the ledger reports not ready, keeps every message
in JetStream unacked, and afterwards holds exactly the fills that were published: nothing lost, nothing doubled.

Uses a private Postgres (embedded, own data directory and port), never the shared server, and a private
JetStream consumer; the ledger's handlers run behind the batched consumer loop as in the service.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import shutil
import tempfile
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import asyncpg
import pytest

from btcbot.contracts import ids
from btcbot.contracts.codec import Codec
from btcbot.contracts.messages import OrderFilled
from btcbot.contracts.streams import EXECUTION, ConsumerSpec
from btcbot.ledger.handlers import Ledger
from btcbot.ledger.migrations import migrate
from btcbot.ledger.positions import fill_from_event, replay
from btcbot.ledger.store import FillResult, Incoming, Store
from btcbot.ledger.tasks import Batcher, run_batched
from btcbot.runtime.consumer import Consumer
from btcbot.runtime.jetstream import NatsPublisher, connect, provision
from btcbot.runtime.memory import InMemoryBus

pytestmark = pytest.mark.integration

D = Decimal
S = 1_000_000_000
T0 = 1_750_000_000 * S


class PrivatePostgres:
    """An embedded Postgres that can be stopped and started again on the same data directory and port."""

    def __init__(self, state: Path) -> None:
        from btcbot.devstack.embedded import start_postgres

        self.state = state
        self.server = start_postgres(state)
        self.url = self.server.url
        self.port = int(self.url.rsplit(":", 1)[1].split("/", 1)[0])

    def stop(self) -> None:
        """Fast shutdown (clients are disconnected)."""
        self.server.stop()

    def restart(self) -> None:
        """Start the same cluster on the same port, where its clients expect it."""
        from btcbot.devstack.embedded import start_postgres

        self.server = start_postgres(self.state, port=self.port)


@pytest.fixture
def private_postgres() -> Iterator[PrivatePostgres]:
    try:
        from btcbot.devstack.embedded import find_postgres_bindir
    except ImportError:
        pytest.skip("btcbot-cli is not installed")
    if find_postgres_bindir() is None:
        pytest.skip("no PostgreSQL server binaries")
    state = Path(tempfile.mkdtemp(prefix="ledger-pg-"))
    state.chmod(0o711)
    pg = PrivatePostgres(state)
    try:
        yield pg
    finally:
        pg.stop()
        shutil.rmtree(state, ignore_errors=True)


async def _wait_for(check: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await check():  # type: ignore[operator]
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


class _Quiet:
    def info(self, event: str, **fields: object) -> None: ...
    def warning(self, event: str, **fields: object) -> None: ...
    def error(self, event: str, **fields: object) -> None: ...


def fills(symbol: str, n: int) -> list[OrderFilled]:
    out = []
    for t in range(1, n + 1):
        side = "sell" if t % 4 == 0 else "buy"
        out.append(
            OrderFilled(
                id=ids.fill_id(symbol, str(t), str(t)),
                ts_ns=T0,
                client_order_id=f"bb{t}",
                exchange_order_id=str(t),
                strategy="test",
                symbol=symbol,
                side=side,  # type: ignore[arg-type]
                trade_id=str(t),
                price=D(100 + t % 9),
                quantity=D("0.3") if side == "buy" else D("0.5"),
                fee=D("0.04"),
                fee_asset="TRY",
                tax=D("0.0072"),
                exchange_ts_ns=T0 + t * S,
            )
        )
    return out


async def test_postgres_down_mid_ingestion_loses_and_doubles_nothing(
    nats_url: str, private_postgres: PrivatePostgres
) -> None:
    pg = private_postgres
    db_url = pg.url.rsplit("/", 1)[0] + "/ledger"
    admin = await asyncpg.connect(pg.url)
    await admin.execute("CREATE DATABASE ledger")
    await admin.close()
    await migrate(db_url)
    store = await Store.open(db_url, min_size=1, max_size=2, timeout=2.0)

    symbol = f"R{secrets.token_hex(3).upper()}TRY"
    spec = ConsumerSpec(
        f"ledger-restart-{symbol.lower()}",
        EXECUTION.name,
        (f"exec.filled.{symbol}",),
        max_deliver=1000,  # Postgres is down for a while: the messages must stay, never dead-letter
        backoff=(0.2,),
    )
    nc = await connect(nats_url, "ledger-restart-test", 5, reconnect_forever=False)
    js = nc.jetstream()
    await provision(js, [EXECUTION], [spec])
    publisher = NatsPublisher(js)
    events = fills(symbol, 300)
    clock = iter(range(T0, T0 + 10**8))
    bus = InMemoryBus()
    ledger = Ledger(store=store, bus=bus, account="r", quote_asset="TRY", now_ns=lambda: next(clock), log=_Quiet())
    batcher: Batcher[Incoming, FillResult] = Batcher(ledger.apply, max_items=20, linger=0.005)
    ledger.batcher = batcher
    consumer = Consumer("ledger", js, publisher, spec, Codec(OrderFilled), ledger.on_execution)
    stop = asyncio.Event()
    loop_task = asyncio.create_task(run_batched(consumer, js, stop, fetch=20))

    async def stored() -> int:
        conn = await asyncpg.connect(db_url, timeout=2)
        try:
            return int(await conn.fetchval("SELECT count(*) FROM fills WHERE symbol = $1", symbol))
        finally:
            await conn.close()

    try:
        # A first part goes in while Postgres is up.
        for event in events[:100]:
            await publisher.publish(f"exec.filled.{symbol}", event)

        async def some_stored() -> bool:
            return await stored() >= 40

        await _wait_for(some_stored, 20, "the first fills to be booked")

        await asyncio.to_thread(pg.stop)
        for event in events[100:]:  # published while the database is down
            await publisher.publish(f"exec.filled.{symbol}", event)

        async def not_ready() -> bool:
            return not store.healthy

        await _wait_for(not_ready, 20, "readiness to turn false")
        await asyncio.sleep(1.0)
        info = await js.consumer_info(EXECUTION.name, spec.durable)
        assert info.num_pending + info.num_ack_pending > 0  # the rest waits in JetStream, unacked
        assert not store.healthy
        assert not await store.ping()

        await asyncio.to_thread(pg.restart)

        async def caught_up() -> bool:
            with contextlib.suppress(OSError, asyncpg.PostgresError):
                if await stored() == len(events):
                    i = await js.consumer_info(EXECUTION.name, spec.durable)
                    return bool(i.num_pending == 0 and i.num_ack_pending == 0)
            return False

        await _wait_for(caught_up, 60, "the ledger to catch up after the restart")
        assert store.healthy
    finally:
        stop.set()
        await asyncio.wait_for(loop_task, 10)
        await js.delete_consumer(EXECUTION.name, spec.durable)
        # The EXECUTION stream is shared by the session: leave no fills for other tests' ledgers to book.
        await js.purge_stream(EXECUTION.name, subject=f"exec.filled.{symbol}")
        await nc.close()

    conn = await asyncpg.connect(db_url)
    try:
        expected = replay(fill_from_event(e) for e in events).positions[symbol]
        row = await conn.fetchrow("SELECT * FROM positions WHERE symbol = $1", symbol)
        assert (row["quantity"], row["cost"], row["realized_pnl"], row["fees"], row["fills"]) == (
            expected.quantity,
            expected.cost,
            expected.realized_pnl,
            expected.fees,
            expected.fills,
        )
        trade_ids = [r["trade_id"] for r in await conn.fetch("SELECT trade_id FROM fills WHERE symbol = $1", symbol)]
        assert sorted(trade_ids, key=int) == [e.trade_id for e in events]  # every fill once
        assert await conn.fetchval("SELECT count(*) FROM applied_messages") == len(events)
        balances = {r["asset"]: r["total"] for r in await conn.fetch("SELECT asset, total FROM balances")}
        base = symbol.removesuffix("TRY")
        bought = sum((e.quantity for e in events if e.side == "buy"), D(0))
        sold = sum((e.quantity for e in events if e.side == "sell"), D(0))
        assert balances[base] == bought - sold
    finally:
        await conn.close()
        await store.close()
