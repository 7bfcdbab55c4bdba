"""Probes that tell whether a NATS, Redis or Postgres server is usable, and database provisioning.

Each `*_usable` returns None when the server is usable and otherwise a one-line reason, so callers
can print why they fall back to an embedded server. Probes never raise for an unreachable server.
"""

from __future__ import annotations

import asyncio
import contextlib

import asyncpg
from redis.asyncio import Redis
from redis.exceptions import RedisError, ResponseError

from btcbot.devstack.endpoints import Version, check_database_name, redact_url, version_reason, with_database
from btcbot.runtime.errors import DependencyUnavailable
from btcbot.runtime.jetstream import NatsAuth, server_facts

# Consumer create/update via add_consumer, message TTLs and multi-filter consumers need 2.10+.
MIN_NATS_VERSION: Version = (2, 10, 0)
# SET .. GET / GETDEL / PXAT used by locks and idempotency keys arrived in 6.2.
MIN_REDIS_VERSION: Version = (6, 2, 0)
# DROP DATABASE .. WITH (FORCE) arrived in 13.
MIN_POSTGRES_VERSION: Version = (13, 0, 0)

_ADMIN_TIMEOUT = 10.0
_PG_CONNECT_ERRORS = (OSError, TimeoutError, ValueError, asyncpg.PostgresError, asyncpg.InterfaceError)


async def nats_usable(url: str, timeout: float = 2.0, auth: NatsAuth | None = None) -> str | None:
    """None if `url` is a NATS >= 2.10 server with JetStream enabled, else the reason it is not usable."""
    try:
        version, problem = await server_facts(url, timeout, auth)
    except DependencyUnavailable as exc:
        return f"cannot connect to NATS at {redact_url(url)}: {exc.reason}"
    too_old = version_reason("NATS server", version, MIN_NATS_VERSION)
    if too_old is not None:
        return f"{too_old} (at {redact_url(url)})"
    if problem is not None:
        return f"JetStream is not available at {redact_url(url)}: {problem}"
    return None


async def redis_usable(url: str, timeout: float = 2.0) -> str | None:
    """None if `url` is a Redis >= 6.2 that answers, else the reason it is not usable."""
    try:
        client = Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout)
    except ValueError as exc:
        return f"invalid Redis URL {redact_url(url)}: {exc}"
    try:
        try:
            info = await asyncio.wait_for(client.info("server"), timeout)
        except ResponseError:
            # Managed Redis may rename or forbid INFO; a PING still proves it is there.
            await asyncio.wait_for(client.ping(), timeout)
            return None
        too_old = version_reason("Redis", str(info.get("redis_version", "")), MIN_REDIS_VERSION)
        return None if too_old is None else f"{too_old} (at {redact_url(url)})"
    except (RedisError, OSError, TimeoutError) as exc:
        return f"cannot reach Redis at {redact_url(url)}: {_describe(exc)}"
    finally:
        await client.aclose()


async def pg_usable(url: str, timeout: float = 2.0) -> str | None:
    """None if `url` is a Postgres >= 13 that accepts a connection, else the reason it is not usable."""
    try:
        conn = await asyncio.wait_for(asyncpg.connect(url, timeout=timeout), timeout + 0.5)
    except _PG_CONNECT_ERRORS as exc:
        return f"cannot connect to Postgres at {redact_url(url)}: {_describe(exc)}"
    try:
        version = await conn.fetchval("SHOW server_version")
    finally:
        await conn.close(timeout=timeout)
    too_old = version_reason("Postgres", str(version), MIN_POSTGRES_VERSION)
    return None if too_old is None else f"{too_old} (at {redact_url(url)})"


async def ensure_database(admin_url: str, name: str) -> str:
    """Create database `name` on the server of `admin_url` unless it exists; return that database's URL."""
    check_database_name(name)
    conn = await asyncpg.connect(admin_url, timeout=_ADMIN_TIMEOUT)
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
        if not exists:
            # Another process may create it between the check and here: that is the outcome we want.
            with contextlib.suppress(asyncpg.DuplicateDatabaseError):
                # CREATE DATABASE cannot run inside a transaction; asyncpg's execute() opens none.
                await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close(timeout=_ADMIN_TIMEOUT)
    return with_database(admin_url, name)


async def drop_database(admin_url: str, name: str) -> None:
    """Drop database `name` if it exists, disconnecting its remaining sessions."""
    check_database_name(name)
    conn = await asyncpg.connect(admin_url, timeout=_ADMIN_TIMEOUT)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close(timeout=_ADMIN_TIMEOUT)


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
