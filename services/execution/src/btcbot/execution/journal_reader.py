"""Execution's journal, read-only, for tools outside the service (`btcbot verify`): the key layout stays here.

    reader = JournalReader(redis_client, key_prefix="btcbot", account="main")
    await reader.claims()         # client order id -> the claim's fields (state, status, quantity, ...)
    await reader.active_orders()  # client order ids execution has not settled yet

Redis failures raise DependencyUnavailable, as everywhere in the kit.
"""

from __future__ import annotations

import redis.asyncio as aioredis

from btcbot.execution.journal import ORDER_KEY, RedisActiveOrders, account_prefix
from btcbot.runtime.idempotency import IdempotencyStore


class JournalReader:
    """What tools may read of one account's journal; it never writes."""

    def __init__(self, client: aioredis.Redis, key_prefix: str, account: str) -> None:
        prefix = account_prefix(key_prefix, account)
        self._store = IdempotencyStore(client, prefix)
        self._active = RedisActiveOrders(client, prefix)

    async def claims(self) -> dict[str, dict[str, str]]:
        """Every order claim: client order id -> its fields as stored (a claim that expired meanwhile is left out)."""
        found: dict[str, dict[str, str]] = {}
        for key in await self._store.keys(ORDER_KEY):
            fields = await self._store.get(key)
            if fields is not None:
                found[key.removeprefix(ORDER_KEY)] = fields
        return found

    async def active_orders(self) -> list[str]:
        """The client order ids in execution's active set (orders not settled yet), sorted."""
        return await self._active.members()
