"""Execution's durable memory in the idempotency store: order claims, exchange id index, seen trades.

Every key lives in the shared store (Redis in production) so replicas and restarts agree. Redis failures
surface as DependencyUnavailable from the store: the caller does nothing and the message is retried.
"""

from __future__ import annotations

from btcbot.execution.orders import Order
from btcbot.execution.record import Phase, Record, from_fields, has_order, to_fields
from btcbot.runtime.idempotency import IdempotencyStoreProtocol


class Journal:
    """Claims and records of orders, plus the indexes the fill poller needs."""

    def __init__(self, store: IdempotencyStoreProtocol, owner: str, ttl_s: float) -> None:
        self._store = store
        self._owner = owner
        self._ttl_s = ttl_s

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
        """Write the record (its phase into the claim's ``state`` field)."""
        fields = to_fields(record)
        fields["state"] = fields.pop("phase")
        await self._store.record(_order_key(record.order.client_order_id), **fields)

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

    async def trade_seen(self, symbol: str, trade_id: str) -> bool:
        """True once a trade's OrderFilled was published."""
        return await self._store.get(_trade_key(symbol, trade_id)) is not None

    async def mark_trade(self, symbol: str, trade_id: str) -> None:
        """Remember a published trade (after the publish: a crash in between republishes the same id)."""
        await self._store.claim(_trade_key(symbol, trade_id), self._owner, self._ttl_s)


def _order_key(client_order_id: str) -> str:
    return f"exec:order:{client_order_id}"


def _exchange_key(symbol: str, exchange_order_id: str) -> str:
    return f"exec:xid:{symbol}:{exchange_order_id}"


def _trade_key(symbol: str, trade_id: str) -> str:
    return f"exec:trade:{symbol}:{trade_id}"
