"""Versioned schema migrations: numbered .sql files shipped in `btcbot/ledger/migrations/`.

`migrate(dsn)` applies the missing ones in order, in one transaction, under a Postgres advisory lock, and
records each in `schema_migrations` with a checksum. Running it again (every service start, every
`btcbot migrate`) is a no-op; concurrent runs serialize on the lock. A migration edited after it was
applied is refused rather than silently skipped.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from importlib import resources

import asyncpg

# Arbitrary but fixed: 'btcledgr' as a big-endian int64, the key every ledger migrator locks.
MIGRATION_LOCK_KEY = 0x6274636C65646772

_FILE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")

_BOOKKEEPING = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    integer PRIMARY KEY,
    name       text NOT NULL,
    checksum   text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""


class MigrationError(Exception):
    """The shipped migrations and the database disagree (edited, renumbered or missing files)."""


@dataclass(frozen=True)
class Migration:
    """One numbered SQL file."""

    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        """SHA-256 of the SQL text, to detect a migration edited after it was applied."""
        return hashlib.sha256(self.sql.encode()).hexdigest()


def load_migrations() -> list[Migration]:
    """The migrations shipped in the package, in version order; raises MigrationError on a bad file set."""
    folder = resources.files("btcbot.ledger").joinpath("migrations")
    found: list[Migration] = []
    for entry in folder.iterdir():
        match = _FILE.match(entry.name)
        if match is None:
            if entry.name.endswith(".sql"):
                raise MigrationError(f"migration file name not NNNN_name.sql: {entry.name}")
            continue
        found.append(Migration(int(match.group(1)), entry.name.removesuffix(".sql"), entry.read_text()))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if versions != list(range(1, len(found) + 1)):
        raise MigrationError(f"migration versions must run 1..n without gaps or repeats, got {versions}")
    return found


async def migrate(dsn: str, *, timeout: float = 10.0) -> list[str]:
    """Apply the pending migrations to the database at `dsn`; returns the names applied by this call."""
    migrations = load_migrations()
    conn: asyncpg.Connection = await asyncpg.connect(dsn, timeout=timeout)
    try:
        async with conn.transaction():
            # Transaction-scoped: released at commit or rollback, even if this process dies mid-way.
            await conn.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK_KEY)
            await conn.execute(_BOOKKEEPING)
            rows = await conn.fetch("SELECT version, name, checksum FROM schema_migrations ORDER BY version")
            applied = {row["version"]: (row["name"], row["checksum"]) for row in rows}
            shipped = {m.version for m in migrations}
            unknown = sorted(set(applied) - shipped)
            if unknown:
                raise MigrationError(
                    f"database has migrations {unknown} this code does not ship (newer code ran here?)"
                )
            done: list[str] = []
            for migration in migrations:
                if migration.version in applied:
                    name, checksum = applied[migration.version]
                    if checksum != migration.checksum:
                        raise MigrationError(f"migration {name} changed after it was applied")
                    continue
                await conn.execute(migration.sql)
                await conn.execute(
                    "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
                    migration.version,
                    migration.name,
                    migration.checksum,
                )
                done.append(migration.name)
            return done
    finally:
        await conn.close()
