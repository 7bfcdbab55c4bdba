"""Benchmark: fills/s through the ledger's booking path against raw asyncpg inserts into the same table, same run.

Creates its own database on the Postgres server of DATABASE_URL (default postgresql://postgres@127.0.0.1:5432),
applies the ledger's migrations, measures, and drops the database. Paths, each on emptied tables:

  raw-1       asyncpg INSERT INTO fills, one transaction per fill (no exactly-once, no accounting)
  raw-batch   asyncpg executemany INSERT INTO fills, B fills per transaction
  ledger-1    Store.apply_batch with one fill per transaction (the per-message path: claim, fill, order,
              position, daily PnL, balances)
  ledger-batch  the service path: Ledger.apply behind the Batcher (B per transaction), callers submitting
              concurrently as the batched consumer loop does; includes one portfolio snapshot per batch

    .venv/bin/python bench/bench_ledger.py [-n 2000] [--batch 200]

Stops by itself (bounded count) and always drops its database.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import sys
import time
from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

import asyncpg

from btcbot.contracts import ids
from btcbot.contracts.messages import OrderFilled
from btcbot.ledger.handlers import Ledger
from btcbot.ledger.migrations import migrate
from btcbot.ledger.store import FillResult, Incoming, Origin, Store
from btcbot.ledger.tasks import Batcher
from btcbot.runtime.memory import InMemoryBus

S = 1_000_000_000
T0 = 1_750_000_000 * S
TABLES = (
    "orders, order_events, fills, positions, balances, applied_messages, equity_snapshots, daily_pnl, ledger_alerts"
)


def fills(n: int) -> list[OrderFilled]:
    """n fills over two symbols: mostly buys, a sell every fifth, fees in TRY with tax."""
    out = []
    for t in range(1, n + 1):
        symbol = "BTCTRY" if t % 2 else "ETHTRY"
        side = "sell" if t % 5 == 0 else "buy"
        out.append(
            OrderFilled(
                id=ids.fill_id(symbol, str(t), str(t // 3)),
                ts_ns=T0,
                client_order_id=f"bb{t // 3}",
                exchange_order_id=str(t // 3),
                strategy="bench",
                symbol=symbol,
                side=side,  # type: ignore[arg-type]
                trade_id=str(t),
                price=Decimal(100 + t % 7),
                quantity=Decimal("0.5") if side == "buy" else Decimal("0.4"),
                fee=Decimal("0.05"),
                fee_asset="TRY",
                tax=Decimal("0.009"),
                exchange_ts_ns=T0 + t * 1_000_000,
                base_asset=symbol.removesuffix("TRY"),
                quote_asset="TRY",
            )
        )
    return out


def row(e: OrderFilled) -> tuple[Any, ...]:
    return (e.symbol, e.trade_id, e.id, e.client_order_id, e.exchange_order_id, e.strategy, e.side, e.price,
            e.quantity, e.fee, e.fee_asset, e.tax, e.base_asset, e.quote_asset, e.exchange_ts_ns)  # fmt: skip


INSERT = (
    "INSERT INTO fills (symbol, trade_id, message_id, client_order_id, exchange_order_id, strategy, side, price,"
    " quantity, fee, fee_asset, tax, base_asset, quote_asset, ts_ns, ts, recorded_at)"
    " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15::bigint,"
    " to_timestamp($15::bigint / 1e9), now())"
)


async def raw_one(dsn: str, events: list[OrderFilled], batch: int) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        for e in events:
            await conn.execute(INSERT, *row(e))
    finally:
        await conn.close()


async def raw_batch(dsn: str, events: list[OrderFilled], batch: int) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        for i in range(0, len(events), batch):
            async with conn.transaction():
                await conn.executemany(INSERT, [row(e) for e in events[i : i + batch]])
    finally:
        await conn.close()


def _incoming(events: list[OrderFilled]) -> list[Incoming]:
    return [Incoming(e, Origin(f"exec.filled.{e.symbol}", "EXECUTION", i)) for i, e in enumerate(events)]


async def ledger_one(dsn: str, events: list[OrderFilled], batch: int) -> None:
    store = await Store.open(dsn, min_size=1, max_size=2)
    try:
        for item in _incoming(events):
            await store.apply_batch([item], T0)
    finally:
        await store.close()


class _Quiet:
    def info(self, event: str, **fields: object) -> None: ...
    def warning(self, event: str, **fields: object) -> None: ...
    def error(self, event: str, **fields: object) -> None: ...


async def ledger_batch(dsn: str, events: list[OrderFilled], batch: int) -> None:
    store = await Store.open(dsn, min_size=1, max_size=2)
    try:
        clock = iter(range(T0, T0 + 10**9))
        ledger = Ledger(store=store, bus=InMemoryBus(), account="bench", quote_asset="TRY",
                        now_ns=lambda: next(clock), log=_Quiet())  # fmt: skip
        batcher: Batcher[Incoming, FillResult] = Batcher(ledger.apply, max_items=batch, linger=0.005)
        items = _incoming(events)
        # As the batched consumer loop does: a fetched batch's handlers run concurrently.
        for i in range(0, len(items), batch):
            results = await asyncio.gather(*(batcher.submit(item) for item in items[i : i + batch]))
            assert all(r.status == "applied" for r in results), {r.status for r in results}
    finally:
        await store.close()


async def measure(
    dsn: str, name: str, fn: Callable[[str, list[OrderFilled], int], Awaitable[None]], n: int, batch: int
) -> dict[str, Any]:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(f"TRUNCATE {TABLES}")
        events = fills(n)
        started = time.perf_counter()
        await asyncio.wait_for(fn(dsn, events, batch), timeout=600)
        seconds = time.perf_counter() - started
        stored = await conn.fetchval("SELECT count(*) FROM fills")
    finally:
        await conn.close()
    if stored != n:
        raise SystemExit(f"{name}: stored {stored} fills, expected {n}")
    return {"path": name, "fills": n, "seconds": round(seconds, 3), "fills_per_s": round(n / seconds)}


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", type=int, default=2000, help="fills per path (bounded: at most 100000)")
    parser.add_argument("--batch", type=int, default=200, help="fills per transaction on the batched paths")
    args = parser.parse_args()
    n = max(1, min(args.n, 100_000))
    server = os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    admin_url = urlsplit(server)._replace(path="/postgres").geturl()
    name = f"bench_ledger_{secrets.token_hex(4)}"
    dsn = urlsplit(server)._replace(path=f"/{name}").geturl()
    admin = await asyncpg.connect(admin_url, timeout=10)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    results = []
    try:
        await migrate(dsn)
        paths = [("raw-1", raw_one), ("ledger-1", ledger_one), ("raw-batch", raw_batch), ("ledger-batch", ledger_batch)]
        for label, fn in paths:
            results.append(await measure(dsn, label, fn, n, args.batch))
    finally:
        admin = await asyncpg.connect(admin_url, timeout=10)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()
    by = {r["path"]: r for r in results}
    print(f"ledger booking vs raw asyncpg inserts into `fills`: {n} fills, batch {args.batch}, same server, same run")
    print(f"{'':14}{'per transaction: 1':>22}{f'per transaction: {args.batch}':>24}")
    for kind in ("raw", "ledger"):
        one, many = by[f"{kind}-1"], by[f"{kind}-batch"]
        print(f"{kind:14}{one['fills_per_s']:>16} fills/s{many['fills_per_s']:>18} fills/s")
    ratio_one = by["ledger-1"]["fills_per_s"] / by["raw-1"]["fills_per_s"]
    ratio_many = by["ledger-batch"]["fills_per_s"] / by["raw-batch"]["fills_per_s"]
    gain = by["ledger-batch"]["fills_per_s"] / by["ledger-1"]["fills_per_s"]
    print(f"ledger/raw: {ratio_one:.2f} (1 per tx), {ratio_many:.2f} (batched); batching speeds the ledger {gain:.1f}x")
    print(json.dumps({"n": n, "batch": args.batch, "results": results}))
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
