"""BTCTurk exchange clients: REST (:class:`BtcTurkClient`) and WebSocket, with typed models."""

from btcbot.btcturk.auth import Secret
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
    UserTrade,
)
from btcbot.btcturk.ratelimit import RateLimiter
from btcbot.btcturk.rest import BtcTurkClient
from btcbot.btcturk.retry import RetryPolicy

__all__ = [
    "DEFAULT_LIMITS",
    "AuthError",
    "Balance",
    "BreakerOpen",
    "BreakerState",
    "BtcTurkClient",
    "BtcTurkError",
    "Candle",
    "CircuitBreaker",
    "EndpointGroup",
    "ExchangeInfo",
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
    "TransportError",
    "Unavailable",
    "UserTrade",
    "Window",
]
