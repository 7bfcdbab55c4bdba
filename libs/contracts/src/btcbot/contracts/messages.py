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
    # When marketdata received the book this intent answers (BookSnapshot.received_ts_ns); 0: not known.
    # Carried to execution for btcbot_tick_to_order_seconds (docs/metrics.md).
    book_ts_ns: int = 0


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
    # Risk's signature (contracts/signing.py): execution refuses an order without a valid one (UNSIGNED).
    signature: str = ""
    # The intent's book_ts_ns (when marketdata received the book); 0: not known.
    book_ts_ns: int = 0


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
    # The part of `quantity` the account held before the bot traded (opening balances): sellable, but not the
    # bot's own PnL. Bot sells draw on the bot's own quantity first.
    opening_quantity: Decimal = Decimal(0)


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
    # The EXECUTION stream sequence up to which every message is reflected here (the ledger's low watermark):
    # a reader adds the fills it saw after this sequence to know the position now.
    exec_seq: int = 0
    # EXECUTION sequences above exec_seq that are ALSO reflected here (applied out of order, e.g. by another
    # ledger replica or after a redelivery); a reader skips these as well as everything up to exec_seq.
    exec_seqs_above: tuple[int, ...] = ()
    # The bot's own trading in the quote asset (realized + unrealized on what it bought; opening holdings excluded),
    # its peak and the drawdown from that peak, and today's PnL and fees (days per the ledger's day offset).
    bot_pnl: Decimal = Decimal(0)
    bot_peak_pnl: Decimal = Decimal(0)
    bot_drawdown: Decimal = Decimal(0)
    day_pnl: Decimal = Decimal(0)
    day_fees: Decimal = Decimal(0)
    # Symbols with a position but no usable mark: their value, and so the PnL, is not known.
    missing_marks: tuple[str, ...] = ()
    # Fills held in quarantine (orders the ledger does not know), not in positions.
    quarantined: int = 0


class ModeChanged(Message, frozen=True, kw_only=True, tag="mode"):
    """The trading mode changed: set by an operator (`control.mode`) or by risk's budget (`control.auto`)."""

    mode: Mode
    reason: str
    operator: str
    source: Literal["operator", "auto"] = "operator"
    # Stable codes of every rule that holds the mode (auto), e.g. ("DRAWDOWN", "DAILY_LOSS").
    reasons: tuple[str, ...] = ()
    # "<key id>:<hex HMAC-SHA256>" over the canonical bytes (contracts/signing.py); "" unsigned.
    signature: str = ""


class KillSwitch(Message, frozen=True, kw_only=True, tag="kill"):
    """Operator engaged (or released) the kill switch: no new orders while engaged."""

    engaged: bool
    reason: str
    operator: str
    # Engage only: also cancel every resting order (by default resting orders stay; cancels are always allowed).
    cancel_resting: bool = False
    # "<key id>:<hex HMAC-SHA256>" over the canonical bytes (contracts/signing.py); "" unsigned.
    signature: str = ""


class Alarm(Message, frozen=True, kw_only=True, tag="alarm"):
    """A condition a service detected that must stop new trading while active (the automatic kill chain).

    Published on `control.alarm.<source>.<kind>`; the last message of that subject says whether it holds.
    """

    source: str
    kind: str
    active: bool
    detail: str = ""
    symbol: str = ""


class ResumeSymbol(Message, frozen=True, kw_only=True, tag="resume"):
    """Operator asks the ledger to clear a symbol's integrity halt once its books reconcile with the exchange."""

    symbol: str
    reason: str
    operator: str
    # "<key id>:<hex HMAC-SHA256>" over the canonical bytes (contracts/signing.py); "" unsigned.
    signature: str = ""


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


class UniverseMember(msgspec.Struct, frozen=True, kw_only=True):
    """One scored candidate of the trading universe: its score and the components it was computed from.

    Scores are rankings, not money: floats. `momentum` is the 24 h change in percent; `depth_try` the smaller
    side's quote notional within the top levels of the book.
    """

    symbol: str
    score: float
    momentum: float
    spread_bps: float
    depth_try: Decimal


class UniverseRejection(msgspec.Struct, frozen=True, kw_only=True):
    """A candidate left out of a selection; `reasons` are stable codes (SPREAD, DEPTH, COOLDOWN, ...)."""

    symbol: str
    reasons: tuple[str, ...]
    detail: str = ""
    score: float | None = None


class SymbolHold(msgspec.Struct, frozen=True, kw_only=True):
    """A symbol kept out of the universe until `until_ns` (a cooldown or a probation)."""

    symbol: str
    until_ns: int


class UniverseSelected(Message, frozen=True, kw_only=True, tag="universe"):
    """The dynamic universe chose the symbols to trade; `version` counts selections, 1 for the first.

    It carries everything a restarted selector needs to resume: the selection, when a symbol was last added
    (the one-change-a-day budget) and the cooldowns and probations running.
    """

    version: int
    selected: tuple[UniverseMember, ...]
    rejected: tuple[UniverseRejection, ...] = ()
    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    last_change_ts_ns: int = 0
    cooldowns: tuple[SymbolHold, ...] = ()
    probations: tuple[SymbolHold, ...] = ()
    selector: str = ""

    @property
    def symbols(self) -> tuple[str, ...]:
        """The selected symbols, best score first."""
        return tuple(m.symbol for m in self.selected)


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
    Alarm,
    ResumeSymbol,
    DeadLetter,
    UniverseSelected,
)
