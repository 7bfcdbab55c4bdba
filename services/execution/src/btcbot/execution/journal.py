"""Execution's durable memory in the idempotency store: order claims, exchange id index, seen trades,
and the set of orders that are not settled yet (what the sweep walks).

Every key lives in the shared store (Redis in production) so replicas and restarts agree. Redis failures
surface as DependencyUnavailable from the store: the caller does nothing and the message is retried.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Protocol

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from btcbot.execution.orders import Order
from btcbot.execution.record import Phase, Record, from_fields, has_order, to_fields
from btcbot.runtime.errors import DependencyUnavailable
from btcbot.runtime.idempotency import IdempotencyStoreProtocol


class ActiveOrders(Protocol):
    """The client order ids of orders not settled yet: in flight, resting, or never sent."""

    async def add(self, client_order_id: str) -> None:
        """Remember an order as active."""

    async def remove(self, client_order_id: str) -> None:
        """Forget a settled order."""

    async def members(self) -> list[str]:
        """Every active client order id."""


class MemoryActiveOrders:
    """:class:`ActiveOrders` in memory, for unit tests."""

    def __init__(self) -> None:
        self.ids: set[str] = set()

    async def add(self, client_order_id: str) -> None:
        """Remember an order."""
        self.ids.add(client_order_id)

    async def remove(self, client_order_id: str) -> None:
        """Forget an order."""
        self.ids.discard(client_order_id)

    async def members(self) -> list[str]:
        """Every remembered id."""
        return sorted(self.ids)


class RedisActiveOrders:
    """:class:`ActiveOrders` as one Redis set under the service's prefix."""

    def __init__(self, client: aioredis.Redis, prefix: str) -> None:
        self._redis = client
        self.key = f"{prefix}:exec:active"

    async def add(self, client_order_id: str) -> None:
        """SADD."""
        try:
            await self._redis.sadd(self.key, client_order_id)
        except RedisError as exc:
            raise DependencyUnavailable(f"redis: add active order: {exc!r}") from exc

    async def remove(self, client_order_id: str) -> None:
        """SREM."""
        try:
            await self._redis.srem(self.key, client_order_id)
        except RedisError as exc:
            raise DependencyUnavailable(f"redis: remove active order: {exc!r}") from exc

    async def members(self) -> list[str]:
        """SMEMBERS, sorted."""
        try:
            raw = await self._redis.smembers(self.key)
        except RedisError as exc:
            raise DependencyUnavailable(f"redis: list active orders: {exc!r}") from exc
        return sorted(m.decode() if isinstance(m, bytes) else str(m) for m in raw)


def settled(record: Record) -> bool:
    """True once nothing about the order can change: terminal and its outcome recorded as sent."""
    return record.order.is_terminal and record.phase == Phase.SENT


class Journal:
    """Claims and records of orders, plus the indexes the fill poller needs."""

    def __init__(
        self,
        store: IdempotencyStoreProtocol,
        owner: str,
        ttl_s: float,
        *,
        active: ActiveOrders | None = None,
        clock: Callable[[], int] | None = None,
    ) -> None:
        self._store = store
        self._owner = owner
        self._ttl_s = ttl_s
        self.active: ActiveOrders = active if active is not None else MemoryActiveOrders()
        self._clock = clock

    async def claim(self, client_order_id: str) -> bool:
        """Claim a client order id; True if this call made the claim (no one ever handled it)."""
        return await self._store.claim(_order_key(client_order_id), self._owner, self._ttl_s)

    async def raw(self, client_order_id: str) -> dict[str, str] | None:
        """The claim's fields as stored, or None if the id was never claimed."""
        return await self._store.get(_order_key(client_order_id))

    async def load(self, client_order_id: str) -> Record | None:
        """The order record of a claim; None if unclaimed or claimed without an order (crash right after)."""
        fields = await self.raw(client_order_id)
        if fields is None or not has_order(fields):
            return None
        # The claim's own "state" field is the phase.
        return from_fields(client_order_id, {**fields, "phase": fields.get("state", Phase.CLAIMED.value)})

    async def save(self, record: Record) -> None:
        """Write the record (its phase into the claim's ``state`` field) and keep the active set in step.

        An order joins the active set before its record is written and leaves it only after, so a crash in
        between leaves the set a superset of the unsettled orders, never a subset.
        """
        coid = record.order.client_order_id
        if self._clock is not None:
            record = replace(record, saved_ns=self._clock())
        done = settled(record)
        if not done:
            await self.active.add(coid)
        fields = to_fields(record)
        fields["state"] = fields.pop("phase")
        await self._store.record(_order_key(coid), **fields)
        if done:
            await self.active.remove(coid)

    async def forget(self, client_order_id: str) -> None:
        """Drop an id from the active set (its record is settled or gone)."""
        await self.active.remove(client_order_id)

    async def remember_trace(self, client_order_id: str, traceparent: str) -> None:
        """Keep the trace of the SubmitOrder with its claim, so fills found later join that trace."""
        if traceparent:
            await self._store.record(_order_key(client_order_id), traceparent=traceparent)

    async def trace(self, client_order_id: str) -> str:
        """The stored `traceparent` of an order ("" if none)."""
        fields = await self.raw(client_order_id)
        return "" if fields is None else fields.get("traceparent", "")

    async def index(self, order: Order) -> None:
        """Remember which client order id an exchange order id belongs to."""
        if order.exchange_order_id:
            key = _exchange_key(order.symbol, order.exchange_order_id)
            await self._store.claim(key, self._owner, self._ttl_s)
            await self._store.record(key, client_order_id=order.client_order_id)

    async def client_order_id(self, symbol: str, exchange_order_id: str) -> str | None:
        """The client order id of one of our exchange orders, if we placed it."""
        fields = await self._store.get(_exchange_key(symbol, exchange_order_id))
        return None if fields is None else fields.get("client_order_id")

    async def trade_seen(self, symbol: str, trade_id: str, exchange_order_id: str) -> bool:
        """True once the OrderFilled of one order's side of a trade was published."""
        return await self._store.get(_trade_key(symbol, trade_id, exchange_order_id)) is not None

    async def mark_trade(self, symbol: str, trade_id: str, exchange_order_id: str) -> None:
        """Remember a published fill (after the publish: a crash in between republishes the same id)."""
        await self._store.claim(_trade_key(symbol, trade_id, exchange_order_id), self._owner, self._ttl_s)


def account_prefix(key_prefix: str, account: str) -> str:
    """The prefix of every Redis key execution keeps for one account (claims, active set, locks)."""
    return f"{key_prefix}:{account}"


ORDER_KEY = "exec:order:"  # + client order id: the claim and record of one order


def _order_key(client_order_id: str) -> str:
    return f"{ORDER_KEY}{client_order_id}"


def _exchange_key(symbol: str, exchange_order_id: str) -> str:
    return f"exec:xid:{symbol}:{exchange_order_id}"


def _trade_key(symbol: str, trade_id: str, exchange_order_id: str) -> str:
    # One trade id covers both sides of a self-match (our buy against our own sell): the order id tells them apart.
    return f"exec:trade:{symbol}:{trade_id}:{exchange_order_id}"
