"""A distributed lock with fencing tokens (Redis).

Each acquisition gets a token from a per-lock counter that only grows. The point of effect calls `validate`
right before acting: if a newer token was issued (our lease expired and someone else took the lock), the stale
holder is refused, however late it wakes up.

With `ack` (REDIS_MIN_REPLICAS_ACK) a token is handed out only once that many replicas hold the counter, so a
promoted replica continues the sequence instead of issuing a token again (btcbot.runtime.redisconn).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from dataclasses import dataclass

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from btcbot.runtime.errors import DependencyUnavailable, StaleToken
from btcbot.runtime.redisconn import NO_ACK, NotReplicated, ReplicaAck, acked_write

# How long a token counter outlives its last acquisition. Far beyond any lease, so no holder can still carry
# a token when the counter starts again from 1; without it every run's prefix would leave its counters forever.
TOKEN_RETENTION_MS = 7 * 24 * 3600 * 1000

# KEYS: lock key, token counter. ARGV: owner, ttl ms. Returns the new token, or 0 if held by someone else.
_ACQUIRE = f"""
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
local token = redis.call('INCR', KEYS[2])
redis.call('PEXPIRE', KEYS[2], {TOKEN_RETENTION_MS})
redis.call('SET', KEYS[1], ARGV[1] .. '|' .. token, 'PX', ARGV[2])
return token
"""
# KEYS: lock key, counter. ARGV: owner, token. 1 = lease still ours and newest; 0 = stale.
_VALIDATE = """
local held = redis.call('GET', KEYS[1])
local latest = tonumber(redis.call('GET', KEYS[2]) or '0')
if held == (ARGV[1] .. '|' .. ARGV[2]) and tonumber(ARGV[2]) >= latest then return 1 end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
_EXTEND = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""


@dataclass(frozen=True)
class Lease:
    """A held lock: its name, holder and fencing token."""

    name: str
    owner: str
    token: int

    @property
    def value(self) -> str:
        """What the lock key holds while this lease is current."""
        return f"{self.owner}|{self.token}"


class FencedLock:
    """Named locks with fencing tokens under a key prefix."""

    def __init__(
        self, client: aioredis.Redis, prefix: str, rng: random.Random | None = None, ack: ReplicaAck = NO_ACK
    ) -> None:
        self._redis = client
        self._prefix = prefix
        self._ack = ack
        self._rng = rng or random.Random()
        self._acquire = client.register_script(_ACQUIRE)
        self._validate = client.register_script(_VALIDATE)
        self._release = client.register_script(_RELEASE)
        self._extend = client.register_script(_EXTEND)

    def _keys(self, name: str) -> list[str]:
        return [f"{self._prefix}:lock:{name}", f"{self._prefix}:lock:{name}:token"]

    async def acquire(self, name: str, owner: str, ttl_s: float, wait_s: float = 0.0) -> Lease | None:
        """Take the lock, waiting up to wait_s (polling with jitter); None if it stayed held."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_s
        while True:
            try:
                (token,) = await acked_write(
                    self._redis,
                    self._ack,
                    lambda pipe: self._acquire(keys=self._keys(name), args=[owner, int(ttl_s * 1000)], client=pipe),
                )
            except NotReplicated as exc:
                if exc.results and int(exc.results[0]):
                    await self._give_up(name, Lease(name, owner, int(exc.results[0])).value)
                raise DependencyUnavailable(f"acquire lock {name}: {exc}") from exc
            except DependencyUnavailable as exc:
                raise DependencyUnavailable(f"acquire lock {name}: {exc}") from exc
            if int(token):
                return Lease(name, owner, int(token))
            if loop.time() >= deadline:
                return None
            await asyncio.sleep(self._rng.uniform(0.005, 0.05))

    async def _give_up(self, name: str, value: str) -> None:
        """Best effort: free a lock whose token the replicas did not confirm (it was never used)."""
        with contextlib.suppress(RedisError):  # else the lease lapses by itself
            await self._release(keys=self._keys(name)[:1], args=[value])

    async def validate(self, lease: Lease) -> None:
        """Raise StaleToken unless the lease is still held and its token is the newest."""
        try:
            ok = await self._validate(keys=self._keys(lease.name), args=[lease.owner, lease.token])
        except RedisError as exc:
            raise DependencyUnavailable(f"redis: validate lock {lease.name}: {exc!r}") from exc
        if not ok:
            raise StaleToken(f"lock {lease.name}: token {lease.token} of {lease.owner} is no longer current")

    async def extend(self, lease: Lease, ttl_s: float) -> bool:
        """Extend a lease we still hold."""
        try:
            return bool(await self._extend(keys=self._keys(lease.name)[:1], args=[lease.value, int(ttl_s * 1000)]))
        except RedisError as exc:
            raise DependencyUnavailable(f"redis: extend lock {lease.name}: {exc!r}") from exc

    async def release(self, lease: Lease) -> None:
        """Release if still ours (an expired lease taken over by someone else is left alone)."""
        try:
            await self._release(keys=self._keys(lease.name)[:1], args=[lease.value])
        except RedisError as exc:
            raise DependencyUnavailable(f"redis: release lock {lease.name}: {exc!r}") from exc
