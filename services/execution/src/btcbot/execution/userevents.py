"""What the user WebSocket reports, reduced to work for execution's booking paths (pure).

    423 UserTrade       a fill with its trade id: booked exactly like a polled trade (same path, same dedup)
    441 UserOrderMatch  a match without a trade id: the 423 (or the REST poll) must bring its fill; matched
                        quantity no 423 covered within a grace period makes the shell poll the exchange now
    451 OrderInsert     proof the exchange holds the order: confirms one whose POST answer is still missing
    452 OrderDelete     the order left the book (canceled or filled): read it back to settle it
    453 OrderUpdate     carries nothing the other events do not; ignored

The shell decides nothing itself: :func:`plan` says what an order event means for an order's record, and
:class:`MatchWatch` says when matches went unreported for too long. Time comes in as ``now_ns``.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from btcbot.btcturk.wsmodels import OrderEvent, OrderEventKind
from btcbot.execution.orders import Order, Status

ZERO = Decimal(0)


@dataclass(frozen=True)
class OrderSeen:
    """A 451 or 452 about one of the account's orders."""

    symbol: str
    exchange_order_id: str
    client_order_id: str | None
    gone: bool  # 452: the order left the book; 451: it was inserted


def order_seen(event: OrderEvent) -> OrderSeen | None:
    """The insert or delete an order event reports (None for 453, which is ignored)."""
    if event.kind == OrderEventKind.UPDATE:
        return None
    return OrderSeen(
        symbol=event.pair,
        exchange_order_id=str(event.order_id),
        client_order_id=event.client_order_id,
        gone=event.kind == OrderEventKind.DELETE,
    )


@dataclass(frozen=True)
class Plan:
    """What an order event asks of an order's record, in this order."""

    accept: bool = False  # record the exchange order id: the exchange proved it holds the order
    sync: bool = False  # read the order and its trades back and emit what is missing (fills, cancel, close)

    @property
    def nothing(self) -> bool:
        """True when the record already says everything the event does."""
        return not (self.accept or self.sync)


def plan(order: Order, seen: OrderSeen) -> Plan:
    """Decide what a 451/452 means for our record of ``order``.

    A terminal order ignores both (a filled order's 452 follows the 423s that filled it). An order whose send
    outcome is unknown (SUBMITTING), or that was given up as never arrived (PENDING), is accepted under the id
    the exchange reports: the event proves it arrived, so it must never be placed again. A 452 of an open order
    is settled by reading the order back, never by guessing from the event: fills may still be in flight.
    """
    if order.is_terminal:
        return Plan()
    unconfirmed = order.status in (Status.PENDING, Status.SUBMITTING)
    return Plan(accept=unconfirmed, sync=seen.gone)


@dataclass
class _Gap:
    symbol: str
    since_ns: int
    matched: Decimal = ZERO
    filled: Decimal = ZERO


class MatchWatch:
    """Quantity matched by 441 per exchange order, against the quantity the 423s brought."""

    def __init__(self, grace_ns: int) -> None:
        self.grace_ns = grace_ns
        self._gaps: dict[str, _Gap] = {}

    def matched(self, symbol: str, exchange_order_id: str, quantity: Decimal, now_ns: int) -> None:
        """A 441: ``quantity`` of the order matched."""
        self._gap(symbol, exchange_order_id, now_ns).matched += quantity

    def filled(self, symbol: str, exchange_order_id: str, quantity: Decimal, now_ns: int) -> None:
        """A 423: a fill of ``quantity`` arrived for the order (the two may come in either order)."""
        self._gap(symbol, exchange_order_id, now_ns).filled += quantity

    def overdue(self, now_ns: int) -> set[str]:
        """Symbols with matches no 423 covered within the grace period; those orders are forgotten."""
        late: set[str] = set()
        for xid, gap in list(self._gaps.items()):
            if now_ns - gap.since_ns < self.grace_ns:
                continue
            if gap.filled < gap.matched:
                late.add(gap.symbol)
            del self._gaps[xid]
        return late

    def __len__(self) -> int:
        return len(self._gaps)

    def _gap(self, symbol: str, exchange_order_id: str, now_ns: int) -> _Gap:
        gap = self._gaps.get(exchange_order_id)
        if gap is None:
            gap = self._gaps[exchange_order_id] = _Gap(symbol, now_ns)
        return gap
