"""Idempotency claims and fenced locks against a real Redis."""

from __future__ import annotations

import asyncio
import secrets

import pytest
import redis.asyncio as aioredis

from btcbot.runtime.errors import DependencyUnavailable, StaleToken
from btcbot.runtime.idempotency import IdempotencyStore, MemoryIdempotencyStore
from btcbot.runtime.locks import FencedLock

pytestmark = pytest.mark.integration


@pytest.fixture
async def client(redis_url: str):
    c = aioredis.from_url(redis_url)
    yield c
    await c.aclose()


@pytest.fixture
def prefix(redis_prefix: str) -> str:
    return f"{redis_prefix}:{secrets.token_hex(3)}"


async def test_claim_is_won_exactly_once_under_concurrency(client, prefix) -> None:
    store = IdempotencyStore(client, prefix)
    results = await asyncio.gather(*(store.claim("coid-1", f"replica-{i}", ttl_s=60) for i in range(20)))
    assert results.count(True) == 1
    state = await store.get("coid-1")
    assert state is not None
    assert state["state"] == "claimed"
    await store.record("coid-1", state="sent", exchange_order_id="42")
    assert (await store.get("coid-1") or {})["exchange_order_id"] == "42"
    assert await store.get("never") is None


async def test_claim_expires_after_ttl(client, prefix) -> None:
    store = IdempotencyStore(client, prefix)
    assert await store.claim("k", "a", ttl_s=0.1)
    await asyncio.sleep(0.2)
    assert await store.claim("k", "b", ttl_s=60)


async def test_fencing_token_refuses_a_stale_holder(client, prefix) -> None:
    lock = FencedLock(client, prefix)
    first = await lock.acquire("main:BTCTRY", "replica-a", ttl_s=0.1)
    assert first is not None
    await lock.validate(first)
    assert await lock.acquire("main:BTCTRY", "replica-b", ttl_s=5) is None
    await asyncio.sleep(0.15)  # replica-a stalls past its lease
    second = await lock.acquire("main:BTCTRY", "replica-b", ttl_s=5)
    assert second is not None
    assert second.token > first.token
    with pytest.raises(StaleToken):
        await lock.validate(first)
    await lock.validate(second)
    await lock.release(first)  # a stale release does not free someone else's lock
    assert await lock.acquire("main:BTCTRY", "replica-c", ttl_s=5) is None
    await lock.release(second)
    third = await lock.acquire("main:BTCTRY", "replica-c", ttl_s=5, wait_s=0.5)
    assert third is not None
    assert third.token > second.token


async def test_redis_down_is_dependency_unavailable() -> None:
    dead = aioredis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.2)
    try:
        with pytest.raises(DependencyUnavailable):
            await IdempotencyStore(dead, "x").claim("k", "me")
        with pytest.raises(DependencyUnavailable):
            await FencedLock(dead, "x").acquire("l", "me", ttl_s=1)
    finally:
        await dead.aclose()


async def test_memory_store_follows_the_same_contract() -> None:
    store = MemoryIdempotencyStore()
    assert await store.claim("k", "a")
    assert not await store.claim("k", "b")
    await store.record("k", state="sent")
    assert (await store.get("k") or {})["owner"] == "a"


async def test_a_claim_stores_its_fields_in_the_same_step(client, prefix) -> None:
    store = IdempotencyStore(client, prefix)
    assert await store.claim("verdict:1", "risk-a", ttl_s=60, fields={"verdict": "approved"})
    assert not await store.claim("verdict:1", "risk-b", ttl_s=60, fields={"verdict": "denied"})
    stored = await store.get("verdict:1")
    assert stored is not None
    assert stored["verdict"] == "approved"
    assert stored["owner"] == "risk-a"


async def test_fencing_token_counter_expires_after_the_retention(client, prefix) -> None:
    """The counter outlives every lease by far, yet does not stay in Redis forever."""
    from btcbot.runtime.locks import TOKEN_RETENTION_MS

    lock = FencedLock(client, prefix)
    await lock.acquire("orders", "me", ttl_s=1)
    keys = [k async for k in client.scan_iter(match=f"{prefix}*")]
    assert keys
    ttls = [await client.pttl(k) for k in keys]
    assert all(0 < ttl <= TOKEN_RETENTION_MS for ttl in ttls), ttls
    assert max(ttls) > 24 * 3600 * 1000  # the counter's retention, not the lease's second
