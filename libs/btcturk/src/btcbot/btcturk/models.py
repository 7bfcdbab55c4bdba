"""Typed BTCTurk REST payloads; every amount is a Decimal, every time an int of milliseconds."""

from __future__ import annotations

import enum
from decimal import Decimal

import msgspec


class Side(enum.StrEnum):
    """Order side as BTCTurk's ``orderType``."""

    BUY = "buy"
    SELL = "sell"


class OrderMethod(enum.StrEnum):
    """Order method; the value is what the submit endpoint expects."""

    LIMIT = "limit"
    MARKET = "market"
    STOP_LIMIT = "stoplimit"
    STOP_MARKET = "stopmarket"


class OrderStatus(enum.StrEnum):
    """Order status, normalised from BTCTurk's capitalised names."""

    UNTOUCHED = "Untouched"
    PARTIAL = "Partial"
    CANCELED = "Canceled"
    CLOSED = "Closed"

    @property
    def is_open(self) -> bool:
        """True while the order can still trade."""
        return self in (OrderStatus.UNTOUCHED, OrderStatus.PARTIAL)


class ServerTime(msgspec.Struct, frozen=True):
    """Server clock reading."""

    server_time_ms: int
    iso: str | None = None


class SymbolInfo(msgspec.Struct, frozen=True):
    """Trading rules of one pair (exchangeinfo symbol with its PRICE_FILTER flattened)."""

    id: int
    name: str
    name_normalized: str
    status: str
    numerator: str
    denominator: str
    numerator_scale: int
    denominator_scale: int
    has_fraction: bool
    tick_size: Decimal | None
    min_price: Decimal | None
    max_price: Decimal | None
    min_exchange_value: Decimal | None
    min_amount: Decimal | None = None
    max_amount: Decimal | None = None
    order_methods: tuple[OrderMethod, ...] = ()
    minimum_limit_order_price: Decimal | None = None
    maximum_limit_order_price: Decimal | None = None
    commission_from_numerator: bool = False

    @property
    def trading(self) -> bool:
        """True when the pair accepts orders."""
        return self.status.upper() == "TRADING"


class CurrencyInfo(msgspec.Struct, frozen=True):
    """One currency of exchangeinfo."""

    id: int | None
    symbol: str
    precision: int | None
    min_withdrawal: Decimal | None = None
    min_deposit: Decimal | None = None


class ExchangeInfo(msgspec.Struct, frozen=True):
    """Symbols and currencies known to the exchange."""

    server_time_ms: int | None
    symbols: tuple[SymbolInfo, ...]
    currencies: tuple[CurrencyInfo, ...] = ()

    def symbol(self, pair: str) -> SymbolInfo | None:
        """Look a pair up as ``BTCTRY`` or ``BTC_TRY``."""
        key = pair.replace("_", "").upper()
        for info in self.symbols:
            if info.name.upper() == key:
                return info
        return None


class Ticker(msgspec.Struct, frozen=True):
    """24h ticker of one pair."""

    pair: str
    timestamp_ms: int
    last: Decimal
    high: Decimal
    low: Decimal
    bid: Decimal
    ask: Decimal
    open: Decimal
    volume: Decimal
    average: Decimal | None = None
    daily: Decimal | None = None
    daily_percent: Decimal | None = None
    numerator: str | None = None
    denominator: str | None = None


Level = tuple[Decimal, Decimal]


class OrderBook(msgspec.Struct, frozen=True):
    """REST order book: bids descending, asks ascending, levels as (price, amount)."""

    timestamp_ms: int
    bids: tuple[Level, ...]
    asks: tuple[Level, ...]


class PublicTrade(msgspec.Struct, frozen=True):
    """One public trade; ``side`` is None on payloads older than 2021."""

    pair: str
    trade_id: str
    timestamp_ms: int
    price: Decimal
    amount: Decimal
    side: Side | None = None


class Candle(msgspec.Struct, frozen=True):
    """Daily OHLC from graph-api ``/v1/ohlcs`` or legacy ``/api/v2/ohlc``; ``time_s`` is the day start in seconds."""

    pair: str
    time_s: int
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal
    total: Decimal | None = None
    average: Decimal | None = None
    daily_change_amount: Decimal | None = None
    daily_change_percentage: Decimal | None = None


class Kline(msgspec.Struct, frozen=True):
    """One candle of graph-api ``/v1/klines/history``; ``time_s`` is its start in seconds."""

    time_s: int
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal


class Balance(msgspec.Struct, frozen=True):
    """Balance of one asset: ``balance`` total = ``free`` + ``locked``."""

    asset: str
    balance: Decimal
    locked: Decimal
    free: Decimal
    asset_name: str | None = None
    order_fund: Decimal | None = None
    request_fund: Decimal | None = None
    precision: int | None = None
    timestamp_ms: int | None = None


class OrderAck(msgspec.Struct, frozen=True):
    """Submit-order response: the order was accepted with this id."""

    id: int
    timestamp_ms: int | None
    side: Side
    method: OrderMethod
    pair: str
    quantity: Decimal
    price: Decimal | None = None
    stop_price: Decimal | None = None
    client_order_id: str | None = None


class Order(msgspec.Struct, frozen=True):
    """An order as returned by openOrders, allOrders and order/{id}."""

    id: int
    pair: str
    side: Side
    method: OrderMethod
    status: OrderStatus
    price: Decimal
    amount: Decimal
    quantity: Decimal
    left_amount: Decimal
    stop_price: Decimal | None = None
    client_order_id: str | None = None
    time_ms: int | None = None
    update_time_ms: int | None = None

    @property
    def filled_amount(self) -> Decimal:
        """Base quantity executed so far."""
        return self.quantity - self.left_amount


class UserTrade(msgspec.Struct, frozen=True):
    """One fill of our own orders; ``amount``, ``fee`` and ``tax`` keep BTCTurk's signs."""

    id: int
    order_id: int
    timestamp_ms: int
    price: Decimal
    amount: Decimal
    fee: Decimal
    tax: Decimal
    side: Side
    numerator: str
    denominator: str
    client_order_id: str | None = None
    precise_amount: Decimal | None = None

    @property
    def quantity(self) -> Decimal:
        """Unsigned base quantity of the fill."""
        return abs(self.amount)

    @property
    def pair(self) -> str:
        """Pair symbol such as ``BTCTRY``."""
        return f"{self.numerator}{self.denominator}".upper()


class TransactionType(enum.StrEnum):
    """Kind of a crypto or fiat account transaction, normalised from ``Deposit``/``Withdrawal``."""

    DEPOSIT = "deposit"
    WITHDRAWAL = "withdrawal"


class Transaction(msgspec.Struct, frozen=True):
    """One deposit or withdrawal of ``/api/v1/users/transactions/crypto`` or ``/fiat``.

    ``amount`` keeps BTCTurk's sign (negative for withdrawals); ``funds`` is the figure BTCTurk
    reports next to it (the balance of that currency after the transaction, as far as samples show).
    """

    id: int
    timestamp_ms: int
    type: TransactionType
    currency: str
    amount: Decimal
    funds: Decimal | None = None
    fee: Decimal = Decimal(0)
    tax: Decimal = Decimal(0)
