"""`explain`, the CLI's one error handler, on the real exceptions the clients raise (closed ports, no servers)."""

from __future__ import annotations

import socket

import asyncpg
import pytest
from redis.asyncio import Redis

from btcbot.cli.errors import UserError, explain
from btcbot.runtime.errors import SettingsError
from btcbot.runtime.jetstream import connect


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def raised(awaitable: object) -> BaseException:
    try:
        await awaitable  # type: ignore[misc]
    except Exception as exc:
        return exc
    raise AssertionError("expected a failure")


async def test_postgres_unreachable_names_database_url_and_the_port() -> None:
    port = closed_port()
    exc = await raised(asyncpg.connect(f"postgresql://postgres@127.0.0.1:{port}/x", timeout=5))
    message = explain(exc)
    assert message is not None
    assert message.startswith("Postgres does not answer")
    assert "DATABASE_URL" in message
    assert str(port) in message


async def test_redis_unreachable_names_redis_url() -> None:
    client = Redis.from_url(f"redis://127.0.0.1:{closed_port()}/0", socket_connect_timeout=1)
    try:
        message = explain(await raised(client.ping()))
    finally:
        await client.aclose()
    assert message is not None
    assert message.startswith("Redis does not answer")
    assert "REDIS_URL" in message


async def test_nats_unreachable_names_nats_url_and_the_url() -> None:
    url = f"nats://127.0.0.1:{closed_port()}"
    message = explain(await raised(connect(url, "t", 5, reconnect_forever=False)))
    assert message is not None
    assert url in message
    assert "NATS_URL" in message


def test_own_errors_are_their_message_and_groups_are_searched() -> None:
    assert explain(UserError("--symbols NOPE: not offered")) == "--symbols NOPE: not offered"
    settings = "invalid settings: BTCBOT_LOG_LEVEL: bad"
    assert explain(SettingsError(settings)) == settings
    group = ExceptionGroup("tasks", [ValueError("a bug"), UserError("the reason")])
    assert explain(group) == "the reason"


def test_a_missing_file_is_named() -> None:
    with pytest.raises(FileNotFoundError) as info:
        open("/nonexistent/run.json")  # noqa: SIM115
    assert explain(info.value) == "No such file or directory: /nonexistent/run.json"


def test_a_bug_keeps_its_traceback() -> None:
    assert explain(ValueError("unexpected")) is None
    assert explain(KeyError("x")) is None
    assert explain(OSError("no file name, no server")) is None
