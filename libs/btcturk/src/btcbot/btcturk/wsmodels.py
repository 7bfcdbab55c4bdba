"""Typed BTCTurk WebSocket messages (spec 4); amounts are Decimals, times ms unless named ``_s``."""

from __future__ import annotations

import enum
from decimal import Decimal
from typing import Any

import msgspec

from btcbot.btcturk.models import Level, OrderMethod, Side, UserTrade


class Hello(msgspec.Struct, frozen=True):
    """991: version hello sent by the server on connect."""

    current: str | None
    min: str | None


class SubscriptionAck(msgspec.Struct, frozen=True):
    """100: reply to a subscribe/unsubscribe 151; ``message`` looks like ``join|trade:BTCTRY``."""

    ok: bool
    message: str
    join: bool | None
    channel: str | None
    event: str | None


class LoginResult(msgspec.Struct, frozen=True):
    """114: reply to the login frame."""

    ok: bool
    message: str | None


class WsTicker(msgspec.Struct, frozen=True):
    """402 (or one item of 401): ticker of one pair."""

    pair: str
    bid: Decimal | None = None
    ask: Decimal | None = None
    bid_amount: Decimal | None = None
    ask_amount: Decimal | None = None
    last: Decimal | None = None
    open: Decimal | None = None
    high: Decimal | None = None
    low: Decimal | None = None
    volume: Decimal | None = None
    average: Decimal | None = None
    daily: Decimal | None = None
    daily_percent: Decimal | None = None
    numerator: str | None = None
    denominator: str | None = None
    pair_id: int | None = None


class TickerAll(msgspec.Struct, frozen=True):
    """401: tickers of all pairs."""

    items: tuple[WsTicker, ...]


class WsTrade(msgspec.Struct, frozen=True):
    """One public trade (422, or an item of 421); ``side`` is the taker side (S: 0 buy, 1 sell)."""

    pair: str
    trade_id: str
    timestamp_ms: int
    price: Decimal
    amount: Decimal
    side: Side | None


class TradeList(msgspec.Struct, frozen=True):
    """421: recent trades sent once on joining the trade channel."""

    pair: str
    trades: tuple[WsTrade, ...]


class BookChange(enum.IntEnum):
    """CP of a 432 level."""

    UPDATE = 0
    NEW = 1
    DELETE = 3


class LevelChange(msgspec.Struct, frozen=True):
    """One changed price level of a 432 diff."""

    price: Decimal
    amount: Decimal
    change: BookChange


class BookSnapshot(msgspec.Struct, frozen=True):
    """431: full book (asks ascending, bids descending) at change-set ``cs``."""

    pair: str
    cs: int
    bids: tuple[Level, ...]
    asks: tuple[Level, ...]
    channel: str | None = None


class BookDiff(msgspec.Struct, frozen=True):
    """432: changes since change-set ``cs - 1``."""

    pair: str
    cs: int
    bids: tuple[LevelChange, ...]
    asks: tuple[LevelChange, ...]


class OrderEventKind(enum.IntEnum):
    """Private order event types."""

    INSERT = 451
    DELETE = 452
    UPDATE = 453


class OrderEvent(msgspec.Struct, frozen=True):
    """451 OrderInsert / 452 OrderDelete / 453 OrderUpdate."""

    kind: OrderEventKind
    order_id: int
    pair: str
    side: Side
    method: OrderMethod
    price: Decimal
    amount: Decimal
    num_left: Decimal | None = None
    denom_left: Decimal | None = None
    client_order_id: str | None = None
    pair_id: int | None = None
    user_id: int | None = None


class OrderMatch(msgspec.Struct, frozen=True):
    """441: one of our orders matched."""

    order_id: int
    pair: str
    side: Side
    method: OrderMethod | None
    price: Decimal
    amount: Decimal
    timestamp_ms: int | None = None
    client_order_id: str | None = None
    pair_id: int | None = None
    num_total: Decimal | None = None
    num_left: Decimal | None = None
    denom_total: Decimal | None = None
    denom_left: Decimal | None = None


class UserTradeEvent(msgspec.Struct, frozen=True):
    """423: one fill of our orders, with fee and tax."""

    trade: UserTrade


class BalanceUpdated(msgspec.Struct, frozen=True):
    """201: balances changed; refetch them over REST."""

    user_id: int | None
    payload: str | None


class Unknown(msgspec.Struct, frozen=True):
    """Any other message type; the protocol says to ignore those."""

    type: int
    payload: Any


class Connected(msgspec.Struct, frozen=True):
    """Client-side marker: a (re)connection is up, logged in and subscribed."""

    connection: int


class Disconnected(msgspec.Struct, frozen=True):
    """Client-side marker: the connection dropped; every local book must be rebuilt."""

    connection: int
    reason: str


WsMessage = (
    Hello
    | SubscriptionAck
    | LoginResult
    | WsTicker
    | TickerAll
    | WsTrade
    | TradeList
    | BookSnapshot
    | BookDiff
    | OrderEvent
    | OrderMatch
    | UserTradeEvent
    | BalanceUpdated
    | Unknown
    | Connected
    | Disconnected
)
