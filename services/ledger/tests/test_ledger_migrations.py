"""The migration runner against a real Postgres: ordered, recorded, idempotent, serialized, tamper-evident."""

from __future__ import annotations

import asyncio
import secrets
from urllib.parse import urlsplit

import asyncpg
import pytest

from btcbot.ledger.migrations import _BOOKKEEPING, MigrationError, load_migrations, migrate

pytestmark = pytest.mark.integration

TABLES = {
    "orders",
    "order_events",
    "fills",
    "positions",
    "balances",
    "applied_messages",
    "equity_snapshots",
    "daily_pnl",
    "ledger_alerts",
    "schema_migrations",
}


def test_shipped_migrations_are_numbered_from_one() -> None:
    migrations = load_migrations()
    assert [m.version for m in migrations] == list(range(1, len(migrations) + 1))
    assert migrations[0].name == "0001_initial"
    assert "CREATE TABLE fills" in migrations[0].sql


async def test_concurrent_runs_apply_each_migration_once_then_nothing(fresh_db: str) -> None:
    first, second = await asyncio.gather(migrate(fresh_db), migrate(fresh_db))
    assert sorted([first, second]) == [[], [m.name for m in load_migrations()]]
    assert await migrate(fresh_db) == []
    assert await migrate(fresh_db) == []
    conn = await asyncpg.connect(fresh_db)
    try:
        tables = {
            r["tablename"] for r in await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        }
        assert tables >= TABLES
        rows = await conn.fetch("SELECT version, name, checksum FROM schema_migrations ORDER BY version")
        assert [(r["version"], r["name"], r["checksum"]) for r in rows] == [
            (m.version, m.name, m.checksum) for m in load_migrations()
        ]
        money = await conn.fetch(
            "SELECT table_name, column_name, data_type FROM information_schema.columns"
            " WHERE table_schema = 'public' AND column_name IN"
            " ('price', 'quantity', 'fee', 'tax', 'total', 'avg_cost', 'realized_pnl', 'equity', 'peak')"
        )
        assert money
        assert {r["data_type"] for r in money} == {"numeric"}
    finally:
        await conn.close()


async def test_an_edited_migration_is_refused(fresh_db: str) -> None:
    await migrate(fresh_db)
    conn = await asyncpg.connect(fresh_db)
    try:
        original = await conn.fetchval("SELECT checksum FROM schema_migrations WHERE version = 1")
        await conn.execute("UPDATE schema_migrations SET checksum = 'edited' WHERE version = 1")
        with pytest.raises(MigrationError, match="changed after it was applied"):
            await migrate(fresh_db)
        await conn.execute("UPDATE schema_migrations SET checksum = $1 WHERE version = 1", original)
        await conn.execute("INSERT INTO schema_migrations (version, name, checksum) VALUES (999, 'future', 'x')")
        with pytest.raises(MigrationError, match="does not ship"):
            await migrate(fresh_db)
        await conn.execute("DELETE FROM schema_migrations WHERE version = 999")
        assert await migrate(fresh_db) == []
    finally:
        await conn.close()


async def test_0003_keys_fills_per_order_side_and_keeps_existing_positions(ledger_admin_url: str) -> None:
    # A database at version 2 with one booked fill, upgraded: the position's last fill is backfilled, and the
    # other side of the same trade (a self-match) can now be stored, but not the same side twice.
    name = f"btcbot_ledger_{secrets.token_hex(6)}"
    admin = await asyncpg.connect(ledger_admin_url)
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    url = urlsplit(ledger_admin_url)._replace(path=f"/{name}").geturl()
    conn = await asyncpg.connect(url)
    insert_fill = (
        "INSERT INTO fills (symbol, trade_id, message_id, client_order_id, exchange_order_id, strategy, side,"
        " price, quantity, fee, fee_asset, tax, base_asset, quote_asset, ts_ns, ts, recorded_at)"
        " VALUES ('BTCTRY', '7', $1, $2, $3, 's', $4, 1, 1, 0, 'TRY', 0, 'BTC', 'TRY', 5, now(), now())"
    )
    try:
        await conn.execute(_BOOKKEEPING)
        for m in load_migrations()[:2]:
            await conn.execute(m.sql)
            await conn.execute(
                "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
                m.version,
                m.name,
                m.checksum,
            )
        await conn.execute(insert_fill, "fill:BTCTRY:7", "bb1", "100", "buy")
        await conn.execute(
            "INSERT INTO positions (symbol, quantity, last_ts_ns, last_trade_id, updated)"
            " VALUES ('BTCTRY', 1, 5, '7', now())"
        )
        assert await migrate(url) == [m.name for m in load_migrations()[2:]]
        row = await conn.fetchrow("SELECT last_side, last_exchange_order_id FROM positions")
        assert (row["last_side"], row["last_exchange_order_id"]) == ("buy", "100")
        await conn.execute(insert_fill, "fill:BTCTRY:7:101", "bb2", "101", "sell")
        with pytest.raises(asyncpg.UniqueViolationError):
            await conn.execute(insert_fill, "another message id", "bb2", "101", "sell")
        assert await conn.fetchval("SELECT count(*) FROM fills") == 2
    finally:
        await conn.close()
        admin = await asyncpg.connect(ledger_admin_url)
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()
