"""The migration runner against a real Postgres: ordered, recorded, idempotent, serialized, tamper-evident."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from btcbot.ledger.migrations import MigrationError, load_migrations, migrate

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
