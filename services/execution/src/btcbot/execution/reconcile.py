"""Diff what the exchange says against what we know, producing exactly the events that are missing.

Pure: the shell fetches the exchange's view (the order found by client order id and its trades) and
applies the result. Fills go in before a cancel or close, so OrderCanceled carries the true filled quantity;
when the exchange reports more filled than the trades we can see, the verdict is INCOMPLETE and the caller
asks again later instead of guessing.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal

from btcbot.contracts.messages import Message, OrderType, Side
from btcbot.execution import orders
from btcbot.execution.orders import Fill, Order, Status


class ExchangeStatus(enum.StrEnum):
    """An exchange order's state, reduced to what matters here."""

    OPEN = "open"
    CANCELED = "canceled"
    CLOSED = "closed"


@dataclass(frozen=True)
class ExchangeOrder:
    """An order as the exchange reports it; ``filled_quantity`` in base units.

    The order's terms (symbol to quantity) are only needed to adopt an order execution never placed.
    """

    exchange_order_id: str
    client_order_id: str | None
    status: ExchangeStatus
    filled_quantity: Decimal
    symbol: str = ""
    side: Side | None = None
    order_type: OrderType | None = None
    price: Decimal | None = None
    quantity: Decimal | None = None


class Verdict(enum.StrEnum):
    """How our record compares with the exchange after the diff."""

    SYNCED = "synced"  # our state now matches the exchange
    NOT_FOUND = "not_found"  # the exchange has no such order
    INCOMPLETE = "incomplete"  # the exchange reports fills we cannot see yet; ask again later


@dataclass(frozen=True)
class Reconciled:
    """The order after the diff and the events to publish, in order."""

    order: Order
    events: tuple[Message, ...]
    verdict: Verdict


def reconcile(
    order: Order, seen: ExchangeOrder | None, trades: Iterable[Fill], ts_ns: int, *, reason: str = ""
) -> Reconciled:
    """Bring ``order`` in line with the exchange's ``seen`` order and its ``trades``.

    Raises :class:`orders.IllegalTransition` when the two cannot be reconciled (e.g. the exchange holds an
    order we recorded as rejected): that needs a human, not a guess.
    """
    if seen is None:
        return Reconciled(order, (), Verdict.NOT_FOUND)
    events: list[Message] = []
    current = order
    if current.status == Status.PENDING:
        current = orders.submitting(current).order
    if not current.exchange_order_id or current.status == Status.SUBMITTING:
        step = orders.accept(current, seen.exchange_order_id, ts_ns)
        current = step.order
        events.extend(step.events)
    elif current.exchange_order_id != seen.exchange_order_id:
        raise orders.IllegalTransition(current, "reconcile", f"exchange reports order {seen.exchange_order_id}")
    ours = [t for t in trades if t.exchange_order_id == seen.exchange_order_id]
    for trade in sorted(ours, key=lambda t: (t.exchange_ts_ns, t.trade_id)):
        step = orders.fill(current, trade, ts_ns)
        current = step.order
        events.extend(step.events)
    if current.filled_quantity < seen.filled_quantity:
        return Reconciled(current, tuple(events), Verdict.INCOMPLETE)
    if seen.status == ExchangeStatus.CANCELED:
        step = orders.canceled(current, ts_ns, reason)
    elif seen.status == ExchangeStatus.CLOSED:
        step = orders.closed(current)
    else:
        step = orders.Step(current)
    events.extend(step.events)
    return Reconciled(step.order, tuple(events), Verdict.SYNCED)
