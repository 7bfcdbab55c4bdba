"""The exchange as execution sees it: a small Protocol in domain types, and its BTCTurk adapter.

Errors are BTCTurk's own (``btcbot.btcturk.errors``): Rejected is final, RateLimited / Unavailable /
TransportError are retryable and mean nothing happened, OutcomeUnknown means a write may have taken effect.
"""

from __future__ import annotations

from typing import Protocol

from btcbot.btcturk.errors import NotFound
from btcbot.btcturk.models import Order as BtcTurkOrder
from btcbot.btcturk.models import OrderMethod, OrderStatus, UserTrade
from btcbot.btcturk.models import Side as BtcTurkSide
from btcbot.btcturk.rest import BtcTurkClient
from btcbot.contracts.messages import OrderType
from btcbot.execution.orders import Fill, Order
from btcbot.execution.reconcile import ExchangeOrder, ExchangeStatus

_STATUS = {
    OrderStatus.UNTOUCHED: ExchangeStatus.OPEN,
    OrderStatus.PARTIAL: ExchangeStatus.OPEN,
    OrderStatus.CANCELED: ExchangeStatus.CANCELED,
    OrderStatus.CLOSED: ExchangeStatus.CLOSED,
}

_METHODS: dict[OrderMethod, OrderType] = {OrderMethod.LIMIT: "limit", OrderMethod.MARKET: "market"}


class Exchange(Protocol):
    """What execution needs of an exchange."""

    async def submit(self, order: Order) -> str:
        """Place the order under its client order id; returns the exchange order id."""

    async def cancel(self, exchange_order_id: str) -> None:
        """Ask the exchange to cancel; the outcome is read back with :meth:`get`."""

    async def get(self, exchange_order_id: str) -> ExchangeOrder | None:
        """One order by exchange id, or None if the exchange does not know it."""

    async def find(self, symbol: str, client_order_id: str) -> ExchangeOrder | None:
        """One order by our client order id, or None if the exchange has none."""

    async def open_orders(self, symbol: str) -> list[ExchangeOrder]:
        """Every order of our account resting in a symbol."""

    async def trades(self, symbol: str, since_ms: int) -> list[Fill]:
        """Our account's trades in a symbol since a time (ms)."""

    async def order_trades(self, exchange_order_id: str) -> list[Fill]:
        """Every trade of one order."""


def to_exchange_order(order: BtcTurkOrder) -> ExchangeOrder:
    """Reduce a BTCTurk order to what reconciliation compares."""
    return ExchangeOrder(
        exchange_order_id=str(order.id),
        client_order_id=order.client_order_id,
        status=_STATUS[order.status],
        filled_quantity=order.filled_amount,
        symbol=order.pair.upper(),
        side="buy" if order.side == BtcTurkSide.BUY else "sell",
        # Stop orders are never placed by us; they cannot be adopted either (no contract type for them).
        order_type=_METHODS.get(order.method),
        price=order.price if order.method == OrderMethod.LIMIT else None,
        quantity=order.quantity,
    )


def to_fill(trade: UserTrade) -> Fill:
    """A BTCTurk user trade as a fill: unsigned quantity, fee and tax (BTCTurk reports them negative)."""
    return Fill(
        trade_id=str(trade.id),
        exchange_order_id=str(trade.order_id),
        price=trade.price,
        quantity=trade.quantity,
        fee=abs(trade.fee),
        tax=abs(trade.tax),
        base_asset=trade.numerator,
        quote_asset=trade.denominator,
        exchange_ts_ns=trade.timestamp_ms * 1_000_000,
        client_order_id=trade.client_order_id,
    )


class BtcTurkExchange:
    """:class:`Exchange` over the BTCTurk REST client (the real exchange or the simulator)."""

    def __init__(self, client: BtcTurkClient) -> None:
        self._client = client

    async def submit(self, order: Order) -> str:
        """POST the order; a market buy's quantity is quote currency, as BTCTurk defines it."""
        ack = await self._client.submit_order(
            order.symbol,
            order.side,
            order.order_type,
            order.quantity,
            price=order.price if order.order_type == "limit" else None,
            client_order_id=order.client_order_id,
        )
        return str(ack.id)

    async def cancel(self, exchange_order_id: str) -> None:
        """DELETE the order."""
        await self._client.cancel_order(int(exchange_order_id))

    async def get(self, exchange_order_id: str) -> ExchangeOrder | None:
        """GET one order; None for an id the exchange does not know."""
        try:
            return to_exchange_order(await self._client.get_order(int(exchange_order_id)))
        except NotFound:
            return None

    async def find(self, symbol: str, client_order_id: str) -> ExchangeOrder | None:
        """Search open orders, all orders and trades for the client order id."""
        found = await self._client.find_order_by_client_id(symbol, client_order_id)
        return None if found is None else to_exchange_order(found)

    async def open_orders(self, symbol: str) -> list[ExchangeOrder]:
        """GET openOrders of one pair."""
        return [to_exchange_order(o) for o in await self._client.open_orders(symbol)]

    async def trades(self, symbol: str, since_ms: int) -> list[Fill]:
        """User trades of a pair since ``since_ms``."""
        return [to_fill(t) for t in await self._client.user_trades(symbol, start_ms=since_ms)]

    async def order_trades(self, exchange_order_id: str) -> list[Fill]:
        """User trades of one order."""
        return [to_fill(t) for t in await self._client.user_trades(order_id=int(exchange_order_id))]
