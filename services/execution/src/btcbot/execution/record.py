"""The claim record of an order: flat string fields stored with its idempotency claim in Redis.

``phase`` says how far the send got, which is what makes a redelivered SubmitOrder safe:

    claimed  the claim is ours and nothing was sent: placing the order is safe
    sending  the POST may be in flight or its answer lost: ask the exchange, never resend blindly
    sent     the exchange answered (accepted or rejected): only reconcile from here on
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from btcbot.execution.orders import Order, Status


class Phase(enum.StrEnum):
    """How far sending the order got."""

    CLAIMED = "claimed"
    SENDING = "sending"
    SENT = "sent"


class CorruptRecord(ValueError):  # noqa: N818  (names the condition, like the runtime errors)
    """A stored record cannot be read back into an order."""


@dataclass(frozen=True)
class Record:
    """An order with its send phase and how often a missing in-flight order was looked for."""

    order: Order
    phase: Phase
    lookups: int = 0
    # When the SubmitOrder was created (its ts_ns): the age the expiry check and the order TTL use.
    created_ns: int = 0
    # When the record was last written; the sweep leaves a record alone while a handler may still act on it.
    saved_ns: int = 0


_SIDES = ("buy", "sell")
_TYPES = ("limit", "market")


def to_fields(record: Record) -> dict[str, str]:
    """Flatten a record into string fields."""
    order = record.order
    fields = {
        "phase": record.phase.value,
        "lookups": str(record.lookups),
        "status": order.status.value,
        "intent_id": order.intent_id,
        "strategy": order.strategy,
        "symbol": order.symbol,
        "side": order.side,
        "order_type": order.order_type,
        "price": "" if order.price is None else str(order.price),
        "quantity": str(order.quantity),
        "exchange_order_id": order.exchange_order_id,
        "filled_quantity": str(order.filled_quantity),
        "filled_notional": str(order.filled_notional),
        "trade_ids": ",".join(sorted(order.trade_ids)),
    }
    # Zero means "not known here": left out so an update never wipes what an earlier write stored.
    if record.created_ns:
        fields["created_ns"] = str(record.created_ns)
    if record.saved_ns:
        fields["saved_ns"] = str(record.saved_ns)
    return fields


def has_order(fields: Mapping[str, str]) -> bool:
    """True if the fields hold an order (a claim taken just before a crash may hold none)."""
    return "status" in fields and "symbol" in fields


def from_fields(client_order_id: str, fields: Mapping[str, str]) -> Record:
    """Read a record back; raises :class:`CorruptRecord` naming the bad field."""
    try:
        side = fields["side"]
        order_type = fields["order_type"]
        if side not in _SIDES or order_type not in _TYPES:
            raise CorruptRecord(f"{client_order_id}: bad side/order_type {side!r}/{order_type!r}")
        price = fields.get("price", "")
        trade_ids = fields.get("trade_ids", "")
        order = Order(
            client_order_id=client_order_id,
            intent_id=fields["intent_id"],
            strategy=fields["strategy"],
            symbol=fields["symbol"],
            side=side,  # type: ignore[arg-type]
            order_type=order_type,  # type: ignore[arg-type]
            price=Decimal(price) if price else None,
            quantity=Decimal(fields["quantity"]),
            status=Status(fields["status"]),
            exchange_order_id=fields.get("exchange_order_id", ""),
            filled_quantity=Decimal(fields.get("filled_quantity", "0")),
            filled_notional=Decimal(fields.get("filled_notional", "0")),
            trade_ids=frozenset(t for t in trade_ids.split(",") if t),
        )
        return Record(
            order,
            Phase(fields["phase"]),
            int(fields.get("lookups", "0")),
            created_ns=int(fields.get("created_ns", "0")),
            saved_ns=int(fields.get("saved_ns", "0")),
        )
    except KeyError as exc:
        raise CorruptRecord(f"{client_order_id}: missing field {exc.args[0]}") from exc
    except (ValueError, InvalidOperation) as exc:
        if isinstance(exc, CorruptRecord):
            raise
        raise CorruptRecord(f"{client_order_id}: {exc}") from exc
