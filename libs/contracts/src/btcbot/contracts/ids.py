"""Message ids derived from their causes, so a retried or replayed publish carries the same id.

JetStream drops a publish whose `Nats-Msg-Id` it saw within the duplicate window; Redis and Postgres use the
same ids as idempotency keys beyond that window.
"""

from __future__ import annotations

import hashlib

# BTCTurk accepts at most 50 characters in newOrderClientId.
CLIENT_ORDER_ID_MAX = 50
_CLIENT_ORDER_ID_PREFIX = "bb"


def book_id(symbol: str, exchange_ts_ns: int, sequence: int) -> str:
    """Id of a book snapshot: its symbol, exchange time and exchange sequence."""
    return f"book:{symbol}:{exchange_ts_ns}:{sequence}"


def trade_tick_id(symbol: str, trade_id: str) -> str:
    """Id of a public trade: the exchange trade id, unique per symbol."""
    return f"trade:{symbol}:{trade_id}"


def intent_id(strategy: str, symbol: str, book: str) -> str:
    """Id of an intent: one per strategy and book it was decided on."""
    return f"intent:{strategy}:{symbol}:{book}"


def client_order_id(intent: str) -> str:
    """The exchange client order id of the order an intent becomes: short, stable, collision-resistant."""
    digest = hashlib.blake2b(intent.encode(), digest_size=14).hexdigest()
    return f"{_CLIENT_ORDER_ID_PREFIX}{digest}"


def submit_id(client_order: str) -> str:
    """Id of the SubmitOrder command for a client order id."""
    return f"submit:{client_order}"


def denied_id(intent: str) -> str:
    """Id of the OrderDenied event for an intent."""
    return f"denied:{intent}"


def accepted_id(client_order: str) -> str:
    """Id of the OrderAccepted event for a client order id."""
    return f"accepted:{client_order}"


def rejected_id(client_order: str) -> str:
    """Id of the OrderRejected event for a client order id."""
    return f"rejected:{client_order}"


def canceled_id(client_order: str) -> str:
    """Id of the OrderCanceled event for a client order id."""
    return f"canceled:{client_order}"


def cancel_command_id(client_order: str, reason: str) -> str:
    """Id of a CancelOrder command: one per order and reason."""
    return f"cancel:{client_order}:{reason}"


def fill_id(symbol: str, trade_id: str, exchange_order_id: str) -> str:
    """Id of an OrderFilled event: one side of one exchange trade.

    A trade id alone is not enough: when two of our orders match each other the exchange reports one trade id
    for both sides, each under its own order id.
    """
    return f"fill:{symbol}:{trade_id}:{exchange_order_id}"


def dead_letter_id(consumer: str, stream: str, sequence: int) -> str:
    """Id of one consumer's dead letter for one stored message (several consumers may park the same one)."""
    return f"dlq:{consumer}:{stream}:{sequence}"


def auto_mode_id(mode: str, cause: str) -> str:
    """Id of an automatic ModeChanged: one per mode and the snapshot (or tick) that caused it."""
    return f"auto-mode:{mode}:{cause}"


def alarm_id(source: str, kind: str, active: bool, cause: str) -> str:
    """Id of an Alarm: one per condition, state and cause."""
    return f"alarm:{source}:{kind}:{'on' if active else 'off'}:{cause}"


def universe_id(version: int) -> str:
    """Id of a UniverseSelected: one per version, so two selectors racing on a lease handover store it once."""
    return f"universe:{version}"
