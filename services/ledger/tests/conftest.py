"""Ledger test fixtures: a fresh, migrated database per test module, dropped at the end.

The Postgres server comes from the root conftest's `pg_admin_url` when the CLI helpers it needs are
importable; otherwise from TEST_DATABASE_URL or the local 127.0.0.1:5432 (user postgres, trust).
"""

from __future__ import annotations

import os
import secrets
import socket
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import asyncpg
import pytest
import pytest_asyncio

from btcbot.ledger.migrations import migrate

_LOCAL_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


def with_database(url: str, name: str) -> str:
    """The same server URL pointing at another database."""
    return urlsplit(url)._replace(path=f"/{name}").geturl()


def _root_fixture_usable() -> bool:
    try:
        from btcbot.devstack import infra
    except ImportError:
        return False
    return all(hasattr(infra, n) for n in ("pg_usable", "start_postgres", "InfraError"))


def _reachable(url: str) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 5432), timeout=2):
            return True
    except OSError:
        return False


@pytest.fixture(scope="session")
def ledger_admin_url(request: pytest.FixtureRequest) -> str:
    """A Postgres URL allowed to create databases."""
    if _root_fixture_usable():
        return str(request.getfixturevalue("pg_admin_url"))
    url = os.environ.get("TEST_DATABASE_URL") or _LOCAL_ADMIN_URL
    if not _reachable(url):
        pytest.skip(f"no Postgres at {url}")
    return url


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def fresh_db(ledger_admin_url: str) -> AsyncIterator[str]:
    """URL of an empty database `btcbot_ledger_<hex>` for one test module."""
    name = f"btcbot_ledger_{secrets.token_hex(6)}"
    admin = await asyncpg.connect(ledger_admin_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    yield with_database(ledger_admin_url, name)
    admin = await asyncpg.connect(ledger_admin_url)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def ledger_db(fresh_db: str) -> str:
    """A fresh database with the ledger schema applied."""
    await migrate(fresh_db)
    return fresh_db
