"""Partition ownership: one active owner per partition (symbol), held as a renewed Redis lease.

A lease is a fenced lock (btcbot.runtime.locks) plus a loop that renews the leases held and tries to take the
ones free. Ownership is judged locally against the time the last successful acquire or renew was *sent*, so
a replica stops acting on a partition no later than its lease lapses in Redis, even while Redis hangs or is
down (fail closed); a standby then takes the lapsed lease over in its next round.

A partition counts as owned only after `on_acquire` has finished (state rebuilt), and `on_lose` runs as soon
as the loop sees a lease gone; `owns()` turns false the moment the local validity ends, without the loop.

Replicas share the partitions fairly: each announces itself every round in the sorted set `<prefix>:members`
(score = expiry in Redis server ms, so replica clocks never meet), and holds at most ceil(partitions / live
members). One above its share gives back its most recently acquired partition, one per round, on_lose first,
once it has counted the same members in two rounds in a row (replicas starting together settle without a
needless handover); one below takes free partitions up to its share at once. A replica that stops announcing
drops out after the TTL, and the others take its partitions.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from btcbot.runtime.errors import DependencyUnavailable
from btcbot.runtime.locks import FencedLock, Lease
from btcbot.runtime.logging import get_logger
from btcbot.runtime.service import Service

Callback = Callable[[str], Awaitable[None]]
log = get_logger(__name__)

# Share of the TTL a lease is trusted for locally: leaves room for the command's flight time and clock rate drift.
_TRUST = 0.8

# KEYS: member set. ARGV: member, ttl ms. Prunes expired members, (re)announces this one; returns the live count.
# Expiry is judged on the Redis server's clock, the one clock every replica shares.
_ANNOUNCE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return redis.call('ZCARD', KEYS[1])
"""


def fair_share(partitions: int, members: int) -> int:
    """How many partitions one of `members` live replicas may hold: ceil(partitions / members)."""
    return math.ceil(partitions / max(1, members))


class PartitionLeases:
    """Owns what it can of `partitions` under `prefix`; run `run` as a service task."""

    def __init__(
        self,
        redis: aioredis.Redis,
        prefix: str,
        owner: str,
        partitions: Iterable[str],
        ttl_s: float,
        renew_every_s: float | None = None,
        *,
        on_acquire: Callback | None = None,
        on_lose: Callback | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.partitions = tuple(dict.fromkeys(partitions))
        self.owner = owner
        self.ttl_s = ttl_s
        self.renew_every_s = renew_every_s if renew_every_s is not None else ttl_s / 3
        if not 0 < self.renew_every_s < ttl_s * _TRUST:
            raise ValueError(f"renew interval {self.renew_every_s}s must be below {_TRUST} x ttl ({ttl_s}s)")
        self._lock = FencedLock(redis, prefix)
        self._redis = redis
        self._members_key = f"{prefix}:members"
        self._announce = redis.register_script(_ANNOUNCE)
        self.members = 1
        self._members_steady = False
        self._on_acquire = on_acquire
        self._on_lose = on_lose
        self._clock = clock
        self._held: dict[str, Lease] = {}
        self._valid_until: dict[str, float] = {}
        self.rounds = 0

    # -- views -----------------------------------------------------------------------------------------

    def owns(self, partition: str) -> bool:
        """True while this replica holds the partition's lease, trusts it not to have lapsed, and still wants it."""
        until = self._valid_until.get(partition)
        return until is not None and self._clock() < until and partition in self.partitions

    def set_partitions(self, partitions: Iterable[str]) -> None:
        """Change the set of partitions to own (a dynamic universe): the next round gives back the ones dropped
        and takes the new ones; `owns` is false for a dropped partition at once."""
        self.partitions = tuple(dict.fromkeys(partitions))

    def owned(self) -> frozenset[str]:
        """The partitions owned right now."""
        return frozenset(p for p in self._held if self.owns(p))

    def lease(self, partition: str) -> Lease | None:
        """The held lease of a partition (its fencing token), if owned."""
        return self._held.get(partition) if self.owns(partition) else None

    def ready(self) -> bool:
        """True once the first acquisition round has finished (a standby owning nothing is ready too)."""
        return self.rounds > 0

    # -- loop ------------------------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Renew and acquire every `renew_every_s` until stop; then release what is held."""
        try:
            while not stop.is_set():
                await self.step()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self._next_wait())
        finally:
            await self.release_all()

    def _next_wait(self) -> float:
        # Wake before a held lease stops being trusted, so on_lose runs on time even when renewals fail.
        wait = self.renew_every_s
        now = self._clock()
        for until in self._valid_until.values():
            wait = min(wait, max(0.0, until - now) + 0.001)
        return wait

    async def step(self) -> None:
        """One round: renew held leases, announce membership, then give back one above the share or take free ones."""
        for partition in [p for p in self._held if p not in self.partitions]:
            await self._give_back(partition, reason="unwanted")
        for partition in list(self._held):
            if partition in self._held:  # an earlier renewal may have outlasted this lease's trust
                await self._guarded(partition, self._renew)
                await self._expire()
        await self._announce_member()
        await self._expire()
        share = fair_share(len(self.partitions), self.members)
        if len(self._held) > share and self._members_steady:
            # Newest first, and one per round: the others get time to take it before more is given back.
            await self._give_back(next(reversed(self._held)), reason="rebalance")
        else:
            for partition in self.partitions:
                if len(self._held) >= share:
                    break
                if partition not in self._held:
                    await self._guarded(partition, self._try_acquire)
                    await self._expire()
        self.rounds += 1

    async def _guarded(self, partition: str, op: Callable[[str], Awaitable[None]]) -> None:
        try:
            await op(partition)
        except (DependencyUnavailable, TimeoutError) as exc:
            log.warning("lease.redis_failed", partition=partition, owner=self.owner, error=repr(exc))

    async def _announce_member(self) -> None:
        # On failure keep the last count (nothing can be acquired anyway) but give nothing back on it.
        self._members_steady = False
        try:
            count = await self._call(self._announce(keys=[self._members_key], args=[self.owner, self._ttl_ms]))
        except (RedisError, TimeoutError) as exc:
            log.warning("lease.announce_failed", owner=self.owner, error=repr(exc))
            return
        members = max(1, int(count))
        if members != self.members:
            log.info("lease.members_changed", owner=self.owner, members=members, was=self.members)
        self._members_steady = members == self.members
        self.members = members

    @property
    def _ttl_ms(self) -> int:
        return int(self.ttl_s * 1000)

    async def _call(self, awaitable: Awaitable[Any]) -> Any:
        # A hung Redis must not keep the loop from noticing lapsed leases.
        return await asyncio.wait_for(awaitable, self.renew_every_s)

    async def _try_acquire(self, partition: str) -> None:
        sent = self._clock()
        lease = await self._call(self._lock.acquire(self._name(partition), self.owner, self.ttl_s))
        if lease is None:
            return
        self._held[partition] = lease
        if self._on_acquire is not None:
            try:
                await self._on_acquire(partition)
            except Exception:
                log.exception("lease.on_acquire_failed", partition=partition, owner=self.owner)
                del self._held[partition]
                with contextlib.suppress(DependencyUnavailable, TimeoutError):
                    await self._call(self._lock.release(lease))
                return
            # A rebuild may have taken a while: renew before trusting, so trust never outlives the Redis lease.
            sent = self._clock()
            if not await self._call(self._lock.extend(lease, self.ttl_s)):
                log.warning("lease.lost_while_acquiring", partition=partition, owner=self.owner)
                del self._held[partition]
                return
        self._valid_until[partition] = sent + self.ttl_s * _TRUST
        log.info("lease.acquired", partition=partition, owner=self.owner, token=lease.token)

    async def _renew(self, partition: str) -> None:
        lease = self._held[partition]
        sent = self._clock()
        if await self._call(self._lock.extend(lease, self.ttl_s)):
            if partition in self._valid_until:
                self._valid_until[partition] = sent + self.ttl_s * _TRUST
            return
        log.warning("lease.taken_over", partition=partition, owner=self.owner, token=lease.token)
        await self._drop(partition)

    async def _expire(self) -> None:
        now = self._clock()
        for partition in [p for p, until in self._valid_until.items() if until <= now]:
            log.warning("lease.lapsed", partition=partition, owner=self.owner)
            await self._drop(partition)

    async def _drop(self, partition: str) -> None:
        self._held.pop(partition, None)
        if self._valid_until.pop(partition, None) is not None and self._on_lose is not None:
            try:
                await self._on_lose(partition)
            except Exception:
                log.exception("lease.on_lose_failed", partition=partition, owner=self.owner)

    async def _give_back(self, partition: str, *, reason: str) -> None:
        # Stop acting (on_lose) before the Redis release, so the next owner never overlaps with this one.
        lease = self._held[partition]
        await self._drop(partition)
        try:
            await self._call(self._lock.release(lease))
        except (DependencyUnavailable, TimeoutError) as exc:
            log.warning("lease.release_failed", partition=partition, owner=self.owner, error=repr(exc))
        else:
            log.info("lease.released", partition=partition, owner=self.owner, reason=reason)

    async def release_all(self) -> None:
        """Give every held lease back and leave the members (a standby takes over at once instead of after the TTL)."""
        for partition in list(self._held):
            if partition in self._held:
                await self._give_back(partition, reason="stop")
        try:
            await self._call(self._redis.zrem(self._members_key, self.owner))
        except (RedisError, TimeoutError) as exc:
            log.warning("lease.leave_failed", owner=self.owner, error=repr(exc))

    @staticmethod
    def _name(partition: str) -> str:
        return f"partition:{partition}"


class EveryPartition:
    """Ownership when leases are off (BTCBOT_PARTITION_LEASES=off): this replica owns every partition."""

    def __init__(self, partitions: Iterable[str]) -> None:
        self.partitions = tuple(dict.fromkeys(partitions))

    def owns(self, partition: str) -> bool:
        """True for every configured partition."""
        return partition in self.partitions

    def set_partitions(self, partitions: Iterable[str]) -> None:
        """Change the set of partitions (a dynamic universe)."""
        self.partitions = tuple(dict.fromkeys(partitions))

    def owned(self) -> frozenset[str]:
        """Every configured partition."""
        return frozenset(self.partitions)


async def partition_leases(
    svc: Service,
    scope: str,
    partitions: Iterable[str],
    *,
    on_acquire: Callback | None = None,
    on_lose: Callback | None = None,
) -> PartitionLeases | EveryPartition:
    """Leases for `partitions` under `<key_prefix>:<scope>`, run as a task of `svc` with a readiness check.

    With BTCBOT_PARTITION_LEASES off, every partition is owned from the start and no callback runs.
    """
    settings = svc.settings
    if not settings.partition_leases:
        return EveryPartition(partitions)
    leases = PartitionLeases(
        await svc.redis(),
        f"{settings.key_prefix}:{scope}",
        settings.instance,
        partitions,
        settings.partition_ttl,
        on_acquire=on_acquire,
        on_lose=on_lose,
    )
    svc.task("partition-leases", leases.run)
    svc.readiness("partition-leases", leases.ready)
    return leases
