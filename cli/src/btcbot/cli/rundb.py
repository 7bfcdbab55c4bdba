"""A run's own database: created by `up` for a new run, found again on --resume, never dropped.

When DATABASE_URL names a database, that database is the run's; `up` neither creates nor drops it, and a new
run refuses one that already holds a ledger (an earlier run's fills against a freshly funded exchange would
never balance).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import asyncpg

from btcbot.cli.runplan import RunPlan
from btcbot.cli.runs import RunError
from btcbot.devstack.endpoints import check_database_name, redact_url, with_database

_TIMEOUT = 10.0


@dataclass(frozen=True)
class RunDatabase:
    """The run's database: its URL, name and whether `up` created it."""

    url: str
    name: str
    created: bool


async def prepare_database(server_url: str, plan: RunPlan, env: Mapping[str, str]) -> RunDatabase:
    """The run's database on the server of `server_url` (or the one DATABASE_URL names); RunError if unusable."""
    given = (env.get("DATABASE_URL") or "").strip()
    if given:
        name = given.rsplit("/", 1)[-1].split("?", 1)[0]
        fills = await _ledger_fills(given)
        if fills and not plan.resume:
            raise RunError(
                f"DATABASE_URL ({redact_url(given)}) already holds a ledger with {fills} fill(s) of an earlier run: "
                "a new run needs an empty database (or continue that run with --resume NAME)"
            )
        created = bool(plan.previous.get("database_created")) and plan.previous.get("database_name") == name
        return RunDatabase(given, name, created)
    name = check_database_name(plan.database)
    conn = await asyncpg.connect(server_url, timeout=_TIMEOUT)
    try:
        exists = bool(await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name))
        if plan.resume:
            if not exists:
                raise RunError(f"--resume {plan.name}: its database {name} is gone from {redact_url(server_url)}")
            return RunDatabase(with_database(server_url, name), name, bool(plan.previous.get("database_created")))
        if exists:
            raise RunError(
                f"database {name} already exists on {redact_url(server_url)} and is not this run's: "
                "`up` never reuses or drops a database it did not create; choose another --name"
            )
        # CREATE DATABASE cannot run inside a transaction; asyncpg's execute() opens none.
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close(timeout=_TIMEOUT)
    return RunDatabase(with_database(server_url, name), name, created=True)


async def _ledger_fills(url: str) -> int:
    """Fills already booked in a database (0 when it has no ledger tables yet)."""
    conn = await asyncpg.connect(url, timeout=_TIMEOUT)
    try:
        if await conn.fetchval("SELECT to_regclass('fills')") is None:
            return 0
        return int(await conn.fetchval("SELECT count(*) FROM fills"))
    finally:
        await conn.close(timeout=_TIMEOUT)
