"""Every message on the bus: frozen, tagged msgspec structs.

Rules (see docs/architecture.md): commands are imperative (`SubmitOrder`), events past tense (`OrderFilled`);
each message has an `id` derived from its causes (sent as `Nats-Msg-Id`) and `ts_ns`, its creation time in
nanoseconds since the epoch. Money, prices and quantities are `Decimal` and travel as strings. Evolve only by
adding fields with defaults; never rename, retype or reuse a field or a tag.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Literal

import msgspec

Side = Literal["buy", "sell"]
OrderType = Literal["limit", "market"]
Mode = Literal["NORMAL", "REDUCE_ONLY", "OBSERVE_ONLY"]


class Message(msgspec.Struct, frozen=True, kw_only=True, tag_field="type"):
    """Base of every bus message: a deterministic id and a creation time in ns."""

    id: str
    ts_ns: int


class Level(msgspec.Struct, frozen=True, array_like=True):
    """One price level of a book: price and total quantity there."""

    price: Decimal
    quantity: Decimal


class BookSnapshot(Message, frozen=True, kw_only=True, tag="book"):
    """Top N levels of an exchange order book at one exchange sequence."""

    symbol: str
    sequence: int
    bids: tuple[Level, ...]
    asks: tuple[Level, ...]
    exchange_ts_ns: int
    received_ts_ns: int
    source: str = "rest"
    stale: bool = False


class TradeTick(Message, frozen=True, kw_only=True, tag="trade"):
    """A public trade printed by the exchange."""

    symbol: str
    trade_id: str
    price: Decimal
    quantity: Decimal
    taker_side: Side
    exchange_ts_ns: int


class OrderIntent(Message, frozen=True, kw_only=True, tag="intent"):
    """A strategy's proposal to trade; risk turns it into SubmitOrder or OrderDenied."""

    strategy: str
    symbol: str
    side: Side
    order_type: OrderType
    price: Decimal | None
    quantity: Decimal
    reason: str
    book_id: str
    reduce_only: bool = False


class SubmitOrder(Message, frozen=True, kw_only=True, tag="submit"):
    """Command to execution: place this order at the exchange under this client order id."""

    client_order_id: str
    intent_id: str
    strategy: str
    symbol: str
    side: Side
    order_type: OrderType
    price: Decimal | None
    quantity: Decimal
    checks: tuple[str, ...] = ()


class OrderDenied(Message, frozen=True, kw_only=True, tag="denied"):
    """Risk refused an intent; `reason` is a stable code, `detail` says why in words."""

    intent_id: str
    strategy: str
    symbol: str
    reason: str
    detail: str = ""


class CancelOrder(Message, frozen=True, kw_only=True, tag="cancel"):
    """Command to execution: cancel the order with this client order id."""

    client_order_id: str
    symbol: str
    reason: str
    requested_by: str


class OrderAccepted(Message, frozen=True, kw_only=True, tag="accepted"):
    """The exchange accepted the order and gave it an id."""

    client_order_id: str
    exchange_order_id: str
    intent_id: str
    strategy: str
    symbol: str
    side: Side
    order_type: OrderType
    price: Decimal | None
    quantity: Decimal


class OrderRejected(Message, frozen=True, kw_only=True, tag="rejected"):
    """The exchange (or execution, before sending) refused the order for good."""

    client_order_id: str
    intent_id: str
    strategy: str
    symbol: str
    reason: str
    detail: str = ""


class OrderCanceled(Message, frozen=True, kw_only=True, tag="canceled"):
    """The order left the book without filling completely."""

    client_order_id: str
    exchange_order_id: str
    symbol: str
    filled_quantity: Decimal
    reason: str = ""


class OrderFilled(Message, frozen=True, kw_only=True, tag="filled"):
    """One side of an exchange trade of our order: (symbol, trade_id, exchange_order_id) identifies it.

    `trade_id` is the exchange's; when two of our orders match each other both sides carry the same one.
    """

    client_order_id: str
    exchange_order_id: str
    strategy: str
    symbol: str
    side: Side
    trade_id: str
    price: Decimal
    quantity: Decimal
    fee: Decimal
    fee_asset: str
    tax: Decimal = Decimal(0)
    exchange_ts_ns: int = 0
    base_asset: str = ""
    quote_asset: str = ""


class Balance(msgspec.Struct, frozen=True, kw_only=True):
    """Holdings of one asset as the ledger sees them."""

    asset: str
    total: Decimal
    locked: Decimal = Decimal(0)


class Position(msgspec.Struct, frozen=True, kw_only=True):
    """An open position in one symbol at weighted average cost."""

    symbol: str
    quantity: Decimal
    avg_cost: Decimal
    realized_pnl: Decimal
    unrealized_pnl: Decimal
    mark: Decimal | None = None
    fees: Decimal = Decimal(0)


class PortfolioSnapshot(Message, frozen=True, kw_only=True, tag="portfolio"):
    """The ledger's state after a change, in the quote asset."""

    account: str
    quote_asset: str
    balances: tuple[Balance, ...]
    positions: tuple[Position, ...]
    exposure: Decimal
    realized_pnl: Decimal
    unrealized_pnl: Decimal
    fees: Decimal
    equity: Decimal
    peak_equity: Decimal
    drawdown: Decimal
    fills: int
    last_fill_id: str = ""
    # Symbols whose books failed an integrity check (an oversell): no new orders until the ledger resumes them.
    halted: tuple[str, ...] = ()


class ModeChanged(Message, frozen=True, kw_only=True, tag="mode"):
    """Operator set the trading mode for everyone."""

    mode: Mode
    reason: str
    operator: str


class KillSwitch(Message, frozen=True, kw_only=True, tag="kill"):
    """Operator engaged (or released) the kill switch: no new orders while engaged."""

    engaged: bool
    reason: str
    operator: str


class DeadLetter(Message, frozen=True, kw_only=True, tag="dead_letter"):
    """A message a service could not process, with everything needed to look at it or replay it."""

    original_subject: str
    original_stream: str
    original_sequence: int
    headers: dict[str, str]
    payload: bytes
    error: str
    service: str
    deliveries: int


ALL_MESSAGE_TYPES: tuple[type[Message], ...] = (
    BookSnapshot,
    TradeTick,
    OrderIntent,
    SubmitOrder,
    OrderDenied,
    CancelOrder,
    OrderAccepted,
    OrderRejected,
    OrderCanceled,
    OrderFilled,
    PortfolioSnapshot,
    ModeChanged,
    KillSwitch,
    DeadLetter,
)
