"""BTCTurk exchange clients: REST (:class:`BtcTurkClient`) and WebSocket (:class:`BtcTurkWebSocket`).

WebSocket message types live in :mod:`btcbot.btcturk.wsmodels`.
"""

from btcbot.btcturk.auth import Secret
from btcbot.btcturk.book import BookGapError, LocalBook
from btcbot.btcturk.breaker import BreakerState, CircuitBreaker
from btcbot.btcturk.errors import (
    AuthError,
    BreakerOpen,
    BtcTurkError,
    NotFound,
    OutcomeUnknown,
    ProtocolError,
    RateLimited,
    Rejected,
    TransportError,
    Unavailable,
)
from btcbot.btcturk.limits import DEFAULT_LIMITS, EndpointGroup, Window
from btcbot.btcturk.models import (
    Balance,
    Candle,
    ExchangeInfo,
    Kline,
    Order,
    OrderAck,
    OrderBook,
    OrderMethod,
    OrderStatus,
    PublicTrade,
    ServerTime,
    Side,
    SymbolInfo,
    Ticker,
    Transaction,
    TransactionType,
    UserTrade,
)
from btcbot.btcturk.ratelimit import RateLimiter
from btcbot.btcturk.rest import BtcTurkClient
from btcbot.btcturk.retry import RetryPolicy
from btcbot.btcturk.rules import check_order, round_price, round_quantity
from btcbot.btcturk.ws import BtcTurkWebSocket

__all__ = [
    "DEFAULT_LIMITS",
    "AuthError",
    "Balance",
    "BookGapError",
    "BreakerOpen",
    "BreakerState",
    "BtcTurkClient",
    "BtcTurkError",
    "BtcTurkWebSocket",
    "Candle",
    "CircuitBreaker",
    "EndpointGroup",
    "ExchangeInfo",
    "Kline",
    "LocalBook",
    "NotFound",
    "Order",
    "OrderAck",
    "OrderBook",
    "OrderMethod",
    "OrderStatus",
    "OutcomeUnknown",
    "ProtocolError",
    "PublicTrade",
    "RateLimited",
    "RateLimiter",
    "Rejected",
    "RetryPolicy",
    "Secret",
    "ServerTime",
    "Side",
    "SymbolInfo",
    "Ticker",
    "Transaction",
    "TransactionType",
    "TransportError",
    "Unavailable",
    "UserTrade",
    "Window",
    "check_order",
    "round_price",
    "round_quantity",
]
