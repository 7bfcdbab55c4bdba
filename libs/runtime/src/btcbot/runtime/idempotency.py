"""A global idempotency store: claim a key once across replicas and restarts, and record what happened to it.

Redis errors become DependencyUnavailable: the caller does nothing and the message is retried later (fail closed).
With `ack` (REDIS_MIN_REPLICAS_ACK), a claim or record counts only once that many replicas hold it, so a promoted
replica never forgets a claim that was acted on (btcbot.runtime.redisconn).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

import redis.asyncio as aioredis
from redis.asyncio.client import Pipeline
from redis.exceptions import RedisError
from redis.typing import EncodableT, FieldT

from btcbot.runtime.errors import DependencyUnavailable
from btcbot.runtime.redisconn import NO_ACK, ReplicaAck, acked_write

# Claims outlive any redelivery horizon; a week also covers restarts and reconciliation after incidents.
DEFAULT_TTL_S = 7 * 24 * 3600.0

# KEYS[1] = claim hash; ARGV = owner, ttl ms, now ms, then extra field/value pairs stored with the claim.
# Returns 1 when this call made the claim.
_CLAIM = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'owner', ARGV[1], 'claimed_ms', ARGV[3], 'state', 'claimed')
for i = 4, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
"""


class IdempotencyStoreProtocol(Protocol):
    """What services need of an idempotency store."""

    async def claim(
        self,
        key: str,
        owner: str,
        ttl_s: float = DEFAULT_TTL_S,
        now_ms: int = 0,
        fields: Mapping[str, str] | None = None,
    ) -> bool:
        """True for the first claim of key (stored with `fields`, atomically), False when it existed."""

    async def get(self, key: str) -> dict[str, str] | None:
        """Recorded fields of a claim, or None."""

    async def record(self, key: str, **fields: str) -> None:
        """Add or update fields of an existing claim."""


class IdempotencyStore:
    """Redis-backed claims: one hash per key under the service's prefix."""

    def __init__(self, client: aioredis.Redis, prefix: str, ack: ReplicaAck = NO_ACK) -> None:
        self._redis = client
        self._prefix = prefix
        self._ack = ack
        self._claim = client.register_script(_CLAIM)

    def _key(self, key: str) -> str:
        return f"{self._prefix}:idem:{key}"

    async def claim(
        self,
        key: str,
        owner: str,
        ttl_s: float = DEFAULT_TTL_S,
        now_ms: int = 0,
        fields: Mapping[str, str] | None = None,
    ) -> bool:
        """Claim key for owner (with `fields`, in the same step); False when anyone (including an earlier life of
        this owner) claimed it."""
        extra = [item for pair in (fields or {}).items() for item in pair]
        args: list[EncodableT] = [owner, int(ttl_s * 1000), now_ms, *extra]
        try:
            (made,) = await acked_write(
                self._redis, self._ack, lambda pipe: self._claim(keys=[self._key(key)], args=args, client=pipe)
            )
        except DependencyUnavailable as exc:
            raise DependencyUnavailable(f"claim {key}: {exc}") from exc
        return bool(made)

    async def get(self, key: str) -> dict[str, str] | None:
        """The claim's recorded fields, or None if never claimed (or expired)."""
        try:
            raw = await self._redis.hgetall(self._key(key))
        except RedisError as exc:
            raise DependencyUnavailable(f"redis: get {key}: {exc!r}") from exc
        if not raw:
            return None
        return {_text(k): _text(v) for k, v in raw.items()}

    async def record(self, key: str, **fields: str) -> None:
        """Update fields of a claim (state, exchange order id ...)."""
        if not fields:
            return
        mapping: dict[FieldT, EncodableT] = dict(fields.items())

        async def write(pipe: Pipeline) -> object:
            return pipe.hset(self._key(key), mapping=mapping)

        try:
            await acked_write(self._redis, self._ack, write)
        except DependencyUnavailable as exc:
            raise DependencyUnavailable(f"record {key}: {exc}") from exc

    async def keys(self, start: str) -> list[str]:
        """Every claimed key that begins with `start` (as passed to `claim`), for read-only tools; sorted."""
        pattern = "".join(f"\\{c}" if c in "\\*?[]" else c for c in self._key(start)) + "*"
        skip = len(self._key(""))
        try:
            found = [_text(k)[skip:] async for k in self._redis.scan_iter(match=pattern, count=1000)]
        except RedisError as exc:
            raise DependencyUnavailable(f"redis: list {start}*: {type(exc).__name__}: {exc}") from exc
        return sorted(found)


class MemoryIdempotencyStore:
    """The same contract in memory, for pure unit tests."""

    def __init__(self) -> None:
        self.claims: dict[str, dict[str, str]] = {}

    async def claim(
        self,
        key: str,
        owner: str,
        ttl_s: float = DEFAULT_TTL_S,
        now_ms: int = 0,
        fields: Mapping[str, str] | None = None,
    ) -> bool:
        """First claim wins."""
        if key in self.claims:
            return False
        self.claims[key] = {"owner": owner, "claimed_ms": str(now_ms), "state": "claimed", **(fields or {})}
        return True

    async def get(self, key: str) -> dict[str, str] | None:
        """Recorded fields or None."""
        found = self.claims.get(key)
        return dict(found) if found is not None else None

    async def record(self, key: str, **fields: str) -> None:
        """Update fields of a claim."""
        self.claims.setdefault(key, {}).update(fields)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
