"""The order state machine: every change of an order is a transition that returns the events to emit.

Pure and synchronous (NautilusTrader stance): the same code runs live, in replay and in tests. Time comes in
as ``ts_ns``; event ids come from ``btcbot.contracts.ids`` so a replayed transition emits the same ids.

    PENDING ──submitting──> SUBMITTING ──accept──> ACCEPTED ──fill──> PARTIALLY_FILLED ──fill──> FILLED
       │                       │    └──fill (implies accept)──┘            │
       └──reject──> REJECTED <─┘                                           │
    ACCEPTED / PARTIALLY_FILLED ──request_cancel──> CANCEL_PENDING ──canceled──> CANCELED
    (ACCEPTED / PARTIALLY_FILLED may also be canceled directly, e.g. by the exchange or an operator.)

An order whose submit outcome is unknown stays SUBMITTING until the exchange is asked; a timeout is never a
rejection. Terminal states (FILLED, CANCELED, REJECTED) never change. A trade id already applied is a no-op
(trade ids are kept per order: the other side of a self-match is the other order's trade).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field, replace
from decimal import Decimal

from btcbot.contracts import ids
from btcbot.contracts.messages import (
    Message,
    OrderAccepted,
    OrderCanceled,
    OrderFilled,
    OrderRejected,
    OrderType,
    Side,
    SubmitOrder,
)

ZERO = Decimal(0)


class Status(enum.StrEnum):
    """Where an order is in its life."""

    PENDING = "pending"
    SUBMITTING = "submitting"
    ACCEPTED = "accepted"
    PARTIALLY_FILLED = "partially_filled"
    FILLED = "filled"
    CANCEL_PENDING = "cancel_pending"
    CANCELED = "canceled"
    REJECTED = "rejected"


TERMINAL: frozenset[Status] = frozenset({Status.FILLED, Status.CANCELED, Status.REJECTED})
OPEN: frozenset[Status] = frozenset({Status.ACCEPTED, Status.PARTIALLY_FILLED, Status.CANCEL_PENDING})

# Every status change the machine may make (staying in the same status is always allowed).
TRANSITIONS: dict[Status, frozenset[Status]] = {
    Status.PENDING: frozenset({Status.SUBMITTING, Status.REJECTED}),
    Status.SUBMITTING: frozenset({Status.ACCEPTED, Status.PARTIALLY_FILLED, Status.FILLED, Status.REJECTED}),
    Status.ACCEPTED: frozenset({Status.PARTIALLY_FILLED, Status.FILLED, Status.CANCEL_PENDING, Status.CANCELED}),
    Status.PARTIALLY_FILLED: frozenset({Status.FILLED, Status.CANCEL_PENDING, Status.CANCELED}),
    Status.CANCEL_PENDING: frozenset({Status.ACCEPTED, Status.PARTIALLY_FILLED, Status.FILLED, Status.CANCELED}),
    Status.FILLED: frozenset(),
    Status.CANCELED: frozenset(),
    Status.REJECTED: frozenset(),
}


class IllegalTransition(Exception):  # noqa: N818  (trading vocabulary: reads as the event it is)
    """The requested change is not allowed from the order's current state; the order is unchanged."""

    def __init__(self, order: Order, action: str, why: str) -> None:
        super().__init__(f"{action} not allowed for {order.client_order_id} in {order.status.value}: {why}")
        self.client_order_id = order.client_order_id
        self.status = order.status
        self.action = action
        self.why = why


@dataclass(frozen=True)
class Fill:
    """One exchange trade of an order, as execution books it (fee and tax as positive amounts)."""

    trade_id: str
    exchange_order_id: str
    price: Decimal
    quantity: Decimal
    fee: Decimal
    tax: Decimal
    base_asset: str
    quote_asset: str
    exchange_ts_ns: int = 0
    client_order_id: str | None = None

    @property
    def notional(self) -> Decimal:
        """Quote value of the trade."""
        return self.price * self.quantity


@dataclass(frozen=True)
class Order:
    """What execution knows about one order."""

    client_order_id: str
    intent_id: str
    strategy: str
    symbol: str
    side: Side
    order_type: OrderType
    price: Decimal | None
    quantity: Decimal
    status: Status = Status.PENDING
    exchange_order_id: str = ""
    filled_quantity: Decimal = ZERO
    filled_notional: Decimal = ZERO
    trade_ids: frozenset[str] = field(default_factory=frozenset)

    @property
    def is_terminal(self) -> bool:
        """True once nothing can change the order any more."""
        return self.status in TERMINAL

    @property
    def is_open(self) -> bool:
        """True while the order rests (or may rest) at the exchange."""
        return self.status in OPEN

    @property
    def quote_sized(self) -> bool:
        """BTCTurk sizes a market buy in quote currency; every other order in base."""
        return self.order_type == "market" and self.side == "buy"


@dataclass(frozen=True)
class Step:
    """The result of a transition: the new order and the events it produced, in order."""

    order: Order
    events: tuple[Message, ...] = ()


def from_submit(cmd: SubmitOrder) -> Order:
    """A new PENDING order for a SubmitOrder command."""
    return Order(
        client_order_id=cmd.client_order_id,
        intent_id=cmd.intent_id,
        strategy=cmd.strategy,
        symbol=cmd.symbol,
        side=cmd.side,
        order_type=cmd.order_type,
        price=cmd.price,
        quantity=cmd.quantity,
    )


def _move(order: Order, action: str, status: Status, **changes: object) -> Order:
    if status != order.status and status not in TRANSITIONS[order.status]:
        raise IllegalTransition(order, action, f"no edge to {status.value}")
    return replace(order, status=status, **changes)  # type: ignore[arg-type]


def submitting(order: Order) -> Step:
    """We are about to send the order (PENDING -> SUBMITTING); idempotent while SUBMITTING."""
    if order.status == Status.SUBMITTING:
        return Step(order)
    if order.status != Status.PENDING:
        raise IllegalTransition(order, "submitting", "only a pending order is sent")
    return Step(_move(order, "submitting", Status.SUBMITTING))


def _accepted_event(order: Order, ts_ns: int) -> OrderAccepted:
    return OrderAccepted(
        id=ids.accepted_id(order.client_order_id),
        ts_ns=ts_ns,
        client_order_id=order.client_order_id,
        exchange_order_id=order.exchange_order_id,
        intent_id=order.intent_id,
        strategy=order.strategy,
        symbol=order.symbol,
        side=order.side,
        order_type=order.order_type,
        price=order.price,
        quantity=order.quantity,
    )


def accept(order: Order, exchange_order_id: str, ts_ns: int) -> Step:
    """The exchange took the order under ``exchange_order_id``; emits OrderAccepted once."""
    if not exchange_order_id:
        raise IllegalTransition(order, "accept", "empty exchange order id")
    if order.exchange_order_id:
        if order.exchange_order_id != exchange_order_id:
            raise IllegalTransition(
                order, "accept", f"already accepted as {order.exchange_order_id}, not {exchange_order_id}"
            )
        return Step(order)  # a repeated acknowledgement
    if order.status != Status.SUBMITTING:
        raise IllegalTransition(order, "accept", "only a submitting order is accepted")
    moved = _move(order, "accept", Status.ACCEPTED, exchange_order_id=exchange_order_id)
    return Step(moved, (_accepted_event(moved, ts_ns),))


def reject(order: Order, reason: str, detail: str, ts_ns: int) -> Step:
    """The exchange (or execution, before sending) refused the order for good; emits OrderRejected."""
    if order.status == Status.REJECTED:
        return Step(order)
    if order.status not in (Status.PENDING, Status.SUBMITTING):
        raise IllegalTransition(order, "reject", "the exchange already has the order")
    moved = _move(order, "reject", Status.REJECTED)
    event = OrderRejected(
        id=ids.rejected_id(order.client_order_id),
        ts_ns=ts_ns,
        client_order_id=order.client_order_id,
        intent_id=order.intent_id,
        strategy=order.strategy,
        symbol=order.symbol,
        reason=reason,
        detail=detail,
    )
    return Step(moved, (event,))


def _fits(order: Order, fill: Fill) -> bool:
    if order.quote_sized:
        return order.filled_notional + fill.notional <= order.quantity
    return order.filled_quantity + fill.quantity <= order.quantity


def fill(order: Order, trade: Fill, ts_ns: int) -> Step:
    """Book one exchange trade; a known trade id is ignored, a fill on an unsent order is illegal.

    A fill of a SUBMITTING order proves the exchange accepted it, so OrderAccepted is emitted first.
    """
    if trade.trade_id in order.trade_ids:
        return Step(order)
    if trade.quantity <= ZERO or trade.price <= ZERO:
        raise IllegalTransition(order, "fill", f"non-positive trade {trade.trade_id}")
    if order.is_terminal or order.status == Status.PENDING:
        raise IllegalTransition(order, "fill", f"trade {trade.trade_id} on a {order.status.value} order")
    if order.exchange_order_id and trade.exchange_order_id != order.exchange_order_id:
        raise IllegalTransition(
            order, "fill", f"trade {trade.trade_id} belongs to exchange order {trade.exchange_order_id}"
        )
    if not _fits(order, trade):
        raise IllegalTransition(order, "fill", f"trade {trade.trade_id} would overfill the order")
    events: list[Message] = []
    current = order
    if current.status == Status.SUBMITTING:
        step = accept(current, trade.exchange_order_id, ts_ns)
        current = step.order
        events.extend(step.events)
    filled = current.filled_quantity + trade.quantity
    complete = not current.quote_sized and filled == current.quantity
    if complete:
        status = Status.FILLED
    elif current.status == Status.CANCEL_PENDING:
        status = Status.CANCEL_PENDING
    else:
        status = Status.PARTIALLY_FILLED
    current = _move(
        current,
        "fill",
        status,
        filled_quantity=filled,
        filled_notional=current.filled_notional + trade.notional,
        trade_ids=current.trade_ids | {trade.trade_id},
    )
    events.append(
        OrderFilled(
            id=ids.fill_id(order.symbol, trade.trade_id, trade.exchange_order_id),
            ts_ns=ts_ns,
            client_order_id=order.client_order_id,
            exchange_order_id=trade.exchange_order_id,
            strategy=order.strategy,
            symbol=order.symbol,
            side=order.side,
            trade_id=trade.trade_id,
            price=trade.price,
            quantity=trade.quantity,
            fee=trade.fee,
            fee_asset=trade.quote_asset,
            tax=trade.tax,
            exchange_ts_ns=trade.exchange_ts_ns,
            base_asset=trade.base_asset,
            quote_asset=trade.quote_asset,
        )
    )
    return Step(current, tuple(events))


def request_cancel(order: Order) -> Step:
    """We asked the exchange to cancel (ACCEPTED / PARTIALLY_FILLED -> CANCEL_PENDING)."""
    if order.status == Status.CANCEL_PENDING:
        return Step(order)
    if order.status not in (Status.ACCEPTED, Status.PARTIALLY_FILLED):
        raise IllegalTransition(order, "request_cancel", "only a resting order is canceled")
    return Step(_move(order, "request_cancel", Status.CANCEL_PENDING))


def cancel_refused(order: Order) -> Step:
    """The exchange would not cancel; the order rests on (CANCEL_PENDING -> ACCEPTED / PARTIALLY_FILLED)."""
    if order.status != Status.CANCEL_PENDING:
        return Step(order)
    status = Status.PARTIALLY_FILLED if order.filled_quantity > ZERO else Status.ACCEPTED
    return Step(_move(order, "cancel_refused", status))


def canceled(order: Order, ts_ns: int, reason: str = "") -> Step:
    """The order left the book unfilled or partly filled; emits OrderCanceled once.

    Callers apply every trade of the order first: ``filled_quantity`` goes out in the event.
    """
    if order.status == Status.CANCELED:
        return Step(order)
    if order.status not in OPEN:
        raise IllegalTransition(order, "canceled", "only an order at the exchange is canceled")
    moved = _move(order, "canceled", Status.CANCELED)
    event = OrderCanceled(
        id=ids.canceled_id(order.client_order_id),
        ts_ns=ts_ns,
        client_order_id=order.client_order_id,
        exchange_order_id=order.exchange_order_id,
        symbol=order.symbol,
        filled_quantity=order.filled_quantity,
        reason=reason,
    )
    return Step(moved, (event,))


def closed(order: Order) -> Step:
    """The exchange reports the order done (``Closed``); a market order may close short of its size."""
    if order.status == Status.FILLED:
        return Step(order)
    if order.status not in OPEN:
        raise IllegalTransition(order, "closed", "only an order at the exchange closes")
    if order.filled_quantity <= ZERO:
        raise IllegalTransition(order, "closed", "closed without any known trade")
    if order.order_type != "market" and order.filled_quantity != order.quantity:
        raise IllegalTransition(order, "closed", "a limit order closes only when completely filled")
    return Step(_move(order, "closed", Status.FILLED))
