"""Claims and fencing tokens that a promoted replica cannot forget: WAIT for the replica, follow Sentinel.

Real redis-server processes (a master, one replica, three Sentinels) on free loopback ports; a paused replica
(SIGSTOP) stands for one that is down or lagging.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from pathlib import Path

import pytest
import pytest_asyncio
import redis.asyncio as aioredis

from btcbot.devstack.redisha import RedisGroup
from btcbot.runtime.errors import DependencyUnavailable, SettingsError
from btcbot.runtime.idempotency import IdempotencyStore
from btcbot.runtime.locks import FencedLock
from btcbot.runtime.redisconn import NO_ACK, ReplicaAck, connect
from btcbot.runtime.reservations import RedisReservations, ReserveLimits, ReserveRequest
from btcbot.runtime.settings import CommonSettings, load_settings, parse_sentinels

ACK = ReplicaAck(1, 300)


# ---- settings (no server) --------------------------------------------------------------------------------------


def test_sentinels_parse_as_host_port_pairs() -> None:
    assert parse_sentinels("a:26379, b:26380,") == (("a", 26379), ("b", 26380))
    assert parse_sentinels("[::1]:26379") == (("::1", 26379),)
    for bad in ("a", "a:", ":1", "a:b", "a:0", "a:70000"):
        with pytest.raises(ValueError, match="not host:port"):
            parse_sentinels(bad)


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"REDIS_SENTINELS": "sentinel-0"}, "REDIS_SENTINELS"),
        ({"REDIS_SENTINELS": "s:26379"}, "REDIS_SENTINEL_MASTER"),
        ({"REDIS_SENTINEL_MASTER": "btcbot"}, "REDIS_SENTINEL_MASTER"),
        ({"REDIS_MIN_REPLICAS_ACK": "-1"}, "REDIS_MIN_REPLICAS_ACK"),
        ({"REDIS_REPLICA_ACK_TIMEOUT": "5"}, "REDIS_REPLICA_ACK_TIMEOUT"),
    ],
)
def test_a_bad_redis_setting_stops_start_up_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], named: str
) -> None:
    for name in ("REDIS_SENTINELS", "REDIS_SENTINEL_MASTER", "REDIS_MIN_REPLICAS_ACK", "REDIS_REPLICA_ACK_TIMEOUT"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError) as info:
        load_settings(CommonSettings)
    message = str(info.value)
    assert "\n" not in message
    assert f"{named}:" in message, message


def test_replicas_to_ack_defaults_to_one_with_sentinel_and_zero_without(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("REDIS_SENTINELS", "REDIS_SENTINEL_MASTER", "REDIS_MIN_REPLICAS_ACK"):
        monkeypatch.delenv(name, raising=False)
    assert load_settings(CommonSettings).replicas_to_ack() == 0
    monkeypatch.setenv("REDIS_SENTINELS", "127.0.0.1:26379,127.0.0.1:26380")
    monkeypatch.setenv("REDIS_SENTINEL_MASTER", "btcbot")
    settings = load_settings(CommonSettings)
    assert settings.replicas_to_ack() == 1
    assert settings.redis_sentinels == (("127.0.0.1", 26379), ("127.0.0.1", 26380))
    monkeypatch.setenv("REDIS_MIN_REPLICAS_ACK", "0")
    assert load_settings(CommonSettings).replicas_to_ack() == 0


# ---- against real servers --------------------------------------------------------------------------------------


@pytest.fixture
def group(tmp_path: Path) -> Iterator[RedisGroup]:
    started = RedisGroup(tmp_path / "redis").start()
    try:
        yield started
    finally:
        for node in started.data:
            if node.process.running:
                os.kill(node.process.pid, signal.SIGCONT)
        started.stop()


@pytest_asyncio.fixture
async def client(group: RedisGroup) -> AsyncIterator[aioredis.Redis]:
    c = connect(group.data[0].url, sentinels=group.sentinel_addresses, master=group.master_name, timeout_s=1.0)
    yield c
    await c.aclose()


def prefix() -> str:
    return f"t-failover-{secrets.token_hex(4)}"


@pytest.mark.integration
async def test_single_server_dev_mode_needs_no_replica(redis_url: str, redis_prefix: str) -> None:
    c = connect(redis_url)
    try:
        store = IdempotencyStore(c, f"{redis_prefix}:{secrets.token_hex(3)}", ack=NO_ACK)
        assert await store.claim("k", "a")
        assert not await store.claim("k", "b")
        lease = await FencedLock(c, f"{redis_prefix}:{secrets.token_hex(3)}").acquire("x", "a", 5)
        assert lease is not None
        assert lease.token == 1
    finally:
        await c.aclose()


@pytest.mark.integration
async def test_an_acknowledged_claim_and_token_are_on_the_replica_when_the_call_returns(
    group: RedisGroup, client: aioredis.Redis
) -> None:
    p = prefix()
    store = IdempotencyStore(client, p, ack=ACK)
    locks = FencedLock(client, p, ack=ACK)
    assert await store.claim("order-1", "a", fields={"state": "claimed"})
    await store.record("order-1", state="sending")
    lease = await locks.acquire("BTCTRY", "a", 5)
    assert lease is not None
    replica = aioredis.from_url(group.data[1].url)
    try:
        # Read the replica straight away: WAIT returned, so it already has every write.
        assert await replica.hget(f"{p}:idem:order-1", "state") == b"sending"
        assert int(await replica.get(f"{p}:lock:BTCTRY:token")) == lease.token
    finally:
        await replica.aclose()


@pytest.mark.integration
async def test_a_paused_replica_fails_claims_and_tokens_closed_and_leaves_no_lock_held(
    group: RedisGroup, client: aioredis.Redis
) -> None:
    p = prefix()
    store = IdempotencyStore(client, p, ack=ACK)
    locks = FencedLock(client, p, ack=ACK)
    replica = group.data[1].process
    os.kill(replica.pid, signal.SIGSTOP)
    try:
        started = time.monotonic()
        with pytest.raises(DependencyUnavailable, match="acknowledged by 0 of 1"):
            await store.claim("order-1", "a")
        with pytest.raises(DependencyUnavailable, match="acknowledged by 0 of 1"):
            await locks.acquire("BTCTRY", "a", 30)
        # Bounded by the WAIT timeout, not by the socket timeout.
        assert time.monotonic() - started < 1.5
        # The unconfirmed token was given back: nobody waits 30 s for a lease that was never used.
        assert await client.get(f"{p}:lock:BTCTRY") is None
    finally:
        os.kill(replica.pid, signal.SIGCONT)
    # Back: the same writes pass again; the claim the master kept is reported as taken (never placed twice).
    deadline = time.monotonic() + 10
    while True:
        try:
            assert not await store.claim("order-1", "b")
            break
        except DependencyUnavailable:
            assert time.monotonic() < deadline, "the replica did not catch up after SIGCONT"
            await asyncio.sleep(0.2)
    assert await locks.acquire("BTCTRY", "b", 5) is not None


@pytest.mark.integration
async def test_a_paused_replica_holds_back_approvals_and_a_retry_after_it_returns_is_approved_once(
    group: RedisGroup, client: aioredis.Redis
) -> None:
    reservations = RedisReservations(client, prefix(), ack=ACK)
    req = ReserveRequest(coid="c1", symbol="BTCTRY", side="buy", quantity=1, notional=100, now_ms=1, snap_seq=0,
                         position=0, symbol_value=0, exposure=0, cash=1_000_000)  # fmt: skip
    limits = ReserveLimits(max_open_per_symbol=1)
    replica = group.data[1].process
    os.kill(replica.pid, signal.SIGSTOP)
    try:
        with pytest.raises(DependencyUnavailable, match="acknowledged by 0 of 1"):
            await reservations.reserve(req, limits)
    finally:
        os.kill(replica.pid, signal.SIGCONT)
    deadline = time.monotonic() + 10
    while True:
        try:
            answer = await reservations.reserve(req, limits)
            break
        except DependencyUnavailable:
            assert time.monotonic() < deadline, "the replica did not catch up after SIGCONT"
            await asyncio.sleep(0.2)
    # The redelivered intent gets the approval the master kept, and it still counts against the limit.
    assert answer.outcome == "approved"
    other = await reservations.reserve(replace(req, coid="c2"), limits)
    assert other.outcome == "denied"


@pytest.mark.integration
async def test_without_wait_a_promotion_loses_a_claim_the_master_answered(tmp_path: Path) -> None:
    """The hazard WAIT closes: the replica is cut off and promoted (a partition, as Sentinel sees it) while the
    old master still answers clients; what it answered then is not on the promoted node."""
    group = RedisGroup(tmp_path / "redis", sentinels=0).start()
    master, replica = group.data
    old = aioredis.from_url(master.url)
    new = aioredis.from_url(replica.url)
    try:
        await new.replicaof("NO", "ONE")
        p = prefix()
        assert await IdempotencyStore(old, p, ack=NO_ACK).claim("order-1", "a")  # answered: "you have the claim"
        with pytest.raises(DependencyUnavailable, match="acknowledged by 0 of 1"):
            await IdempotencyStore(old, p, ack=ACK).claim("order-2", "a")  # with WAIT: never acted on
        store = IdempotencyStore(new, p)
        # Without WAIT, the promoted node hands the same claim out again: the order would be placed twice.
        assert await store.claim("order-1", "b")
        # With WAIT, the caller did nothing with order-2; its retry claims it here and places it, once.
        assert await store.claim("order-2", "b")
    finally:
        await old.aclose()
        await new.aclose()
        group.stop()


@pytest.mark.integration
async def test_after_sentinel_promotes_the_replica_claims_hold_and_tokens_keep_growing(
    group: RedisGroup, client: aioredis.Redis
) -> None:
    p = prefix()
    store = IdempotencyStore(client, p, ack=ACK)
    locks = FencedLock(client, p, ack=ACK)
    claimed = [f"order-{i}" for i in range(50)]
    for coid in claimed:
        assert await store.claim(coid, "a")
    tokens = []
    for _ in range(20):
        lease = await locks.acquire("BTCTRY", "a", 5)
        assert lease is not None
        tokens.append(lease.token)
        await locks.release(lease)
    old = group.master()
    # SIGKILL right after the last acknowledged write: nothing has time to trickle over afterwards.
    old.kill()
    promoted = await asyncio.to_thread(group.wait_failover, old.port)
    assert promoted.port != old.port
    # Until the old master rejoins as a replica, the new master has none: claims fail closed.
    with pytest.raises(DependencyUnavailable):
        await store.claim("order-new", "b")
    await asyncio.to_thread(old.start)
    deadline = time.monotonic() + 30
    while True:
        try:
            lease = await locks.acquire("BTCTRY", "b", 5)
            break
        except DependencyUnavailable:
            assert time.monotonic() < deadline, "no replica acknowledged after the old master came back"
            await asyncio.sleep(0.3)
    assert lease is not None
    assert lease.token > max(tokens), (lease.token, tokens)
    # The same client now talks to the promoted node, which knows every acknowledged claim.
    for coid in claimed:
        assert not await store.claim(coid, "b"), coid
    info = await client.info("server")
    assert int(info["tcp_port"]) == promoted.port
