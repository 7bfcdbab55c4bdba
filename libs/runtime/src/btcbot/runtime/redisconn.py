"""The one way the kit reaches Redis: a single server (REDIS_URL) or the master that Sentinel names, and writes
that a replica must acknowledge before the caller acts on them.

Redis replicates asynchronously: a write the master answered can be lost when a replica is promoted. Claims and
fencing tokens guard money, so their writes are followed by `WAIT n timeout` on the same connection (a pipeline),
and fewer than n acknowledgements is DependencyUnavailable: the caller places nothing and retries later.
docs/operations.md "Redis failover" says what that does and does not promise.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.client import Pipeline
from redis.asyncio.connection import parse_url
from redis.asyncio.sentinel import Sentinel
from redis.exceptions import RedisError

from btcbot.runtime.errors import DependencyUnavailable

# Options a URL may carry that still apply when Sentinel names the host (database, credentials, TLS).
_KEPT_FROM_URL = ("db", "username", "password")


@dataclass(frozen=True)
class ReplicaAck:
    """How many replicas must acknowledge a write, and how long to wait for them."""

    replicas: int = 0
    timeout_ms: int = 1000

    @property
    def required(self) -> bool:
        """True when writes wait for replicas (0 replicas: a single dev server, nothing to wait for)."""
        return self.replicas > 0


NO_ACK = ReplicaAck(0)


class NotReplicated(DependencyUnavailable):
    """The master applied the writes but too few replicas acknowledged them in time; `results` are the writes'."""

    def __init__(self, reason: str, results: list[Any]) -> None:
        super().__init__(reason)
        self.results = results


def connect(
    url: str,
    *,
    sentinels: Sequence[tuple[str, int]] = (),
    master: str = "",
    timeout_s: float = 2.0,
    health_check_interval: int = 5,
    **extra: Any,
) -> aioredis.Redis:
    """A client of the server at `url`, or, with `sentinels`, of whichever server they name master `master`;
    `extra` are further client options (e.g. decode_responses).

    The Sentinel client asks the sentinels again whenever a connection fails or lands on a replica (after a
    failover), so callers keep one client for the life of the process.
    """
    options: dict[str, Any] = {
        "socket_timeout": timeout_s,
        "socket_connect_timeout": timeout_s,
        "health_check_interval": health_check_interval,
        **extra,
    }
    if not sentinels:
        return aioredis.from_url(url, **options)
    parsed: dict[str, Any] = dict(parse_url(url))
    kept = {key: parsed[key] for key in _KEPT_FROM_URL if parsed.get(key) is not None}
    # redis-py leaves Sentinel.__init__ unannotated.
    sentinel = Sentinel(  # type: ignore[no-untyped-call]
        list(sentinels),
        sentinel_kwargs={"socket_timeout": timeout_s, "socket_connect_timeout": timeout_s},
        **options,
    )
    client: aioredis.Redis = sentinel.master_for(master, redis_class=_FollowingSentinel, **options, **kept)
    return client


class _FollowingSentinel(aioredis.Redis):
    """A client of Sentinel's master whose `aclose` also closes its connections to the Sentinels."""

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        """Close the master connections, then the Sentinel connections."""
        await super().aclose(close_connection_pool)
        manager = getattr(self.connection_pool, "sentinel_manager", None)
        for sentinel in getattr(manager, "sentinels", ()):
            await sentinel.aclose()


async def acked_write(
    client: aioredis.Redis, ack: ReplicaAck, queue: Callable[[Pipeline], Awaitable[object]]
) -> list[Any]:
    """Run the commands `queue` adds to a pipeline, then WAIT for `ack.replicas`; their results, WAIT's dropped.

    One pipeline is one connection, and WAIT counts the replicas that have every write of its own connection.
    Raises DependencyUnavailable when Redis fails or fewer replicas acknowledged in time: the writes may have
    happened on the master, but nothing may be done that relies on them surviving a failover.
    """
    try:
        async with client.pipeline(transaction=False) as pipe:
            await queue(pipe)
            if ack.required:
                pipe.wait(ack.replicas, ack.timeout_ms)
            results: list[Any] = await pipe.execute()
    except RedisError as exc:
        raise DependencyUnavailable(f"redis: {exc!r}") from exc
    if not ack.required:
        return results
    acked = int(results[-1])
    if acked < ack.replicas:
        raise NotReplicated(
            f"redis: write acknowledged by {acked} of {ack.replicas} replica(s) within {ack.timeout_ms} ms",
            results[:-1],
        )
    return results[:-1]
