"""The journal's read module against a real Redis: it lists exactly one account's order claims and active set."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis

from btcbot.execution.journal import Journal, RedisActiveOrders, account_prefix
from btcbot.execution.journal_reader import JournalReader
from btcbot.runtime.errors import DependencyUnavailable
from btcbot.runtime.idempotency import IdempotencyStore

pytestmark = pytest.mark.integration


def journal(client: Redis, key_prefix: str, account: str) -> Journal:
    prefix = account_prefix(key_prefix, account)
    return Journal(IdempotencyStore(client, prefix), "replica-1", 60, active=RedisActiveOrders(client, prefix))


async def test_the_reader_sees_one_accounts_claims_and_nothing_else(redis_url: str, redis_prefix: str) -> None:
    client = Redis.from_url(redis_url, decode_responses=True)
    try:
        main = journal(client, redis_prefix, "main")
        for coid in ("c1", "c[2]*"):  # glob characters in an id are matched literally
            assert await main.claim(coid)
        await main.remember_trace("c1", "00-abc-def-01")
        await main.active.add("c1")
        await main.mark_trade("BTCTRY", "t1", "x1")  # another kind of key of the same journal
        other = journal(client, redis_prefix, "main2")  # an account whose prefix starts like "main"
        assert await other.claim("c3")

        reader = JournalReader(client, redis_prefix, "main")
        claims = await reader.claims()
        assert sorted(claims) == ["c1", "c[2]*"]
        assert claims["c1"]["owner"] == "replica-1"
        assert claims["c1"]["traceparent"] == "00-abc-def-01"
        assert await reader.active_orders() == ["c1"]
        assert list(await JournalReader(client, redis_prefix, "main2").claims()) == ["c3"]
        assert await JournalReader(client, redis_prefix, "nobody").claims() == {}
    finally:
        await client.aclose()


async def test_an_unreachable_redis_is_a_dependency_error() -> None:
    client = Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=1)
    try:
        with pytest.raises(DependencyUnavailable, match="redis"):
            await JournalReader(client, "btcbot", "main").claims()
    finally:
        await client.aclose()
