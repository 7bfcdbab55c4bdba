"""BTCTurk's documented rate limits (spec 3.8) and a pure sliding-window budget per endpoint group.

A sliding log of send times never lets more than ``limit`` requests into any interval of
``period`` seconds, so it also respects the exchange's windows, wherever they start. A small
``margin`` widens each window to absorb network jitter between our send and their receive.
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Mapping

import msgspec


class EndpointGroup(enum.StrEnum):
    """Endpoints that share one rate limit and one circuit breaker."""

    SERVER_TIME = "server_time"
    EXCHANGE_INFO = "exchange_info"
    TICKER = "ticker"
    TICKER_CURRENCY = "ticker_currency"
    ORDERBOOK = "orderbook"
    TRADES = "trades"
    OHLC = "ohlc"
    KLINES = "klines"
    LEGACY_OHLC = "legacy_ohlc"
    BALANCES = "balances"
    SUBMIT = "submit"
    CANCEL = "cancel"
    GET_ORDER = "get_order"
    OPEN_ORDERS = "open_orders"
    ALL_ORDERS = "all_orders"
    USER_TRADES = "user_trades"
    CRYPTO_TRANSACTIONS = "crypto_transactions"
    FIAT_TRANSACTIONS = "fiat_transactions"


class Window(msgspec.Struct, frozen=True):
    """At most ``limit`` requests in any ``period`` seconds."""

    limit: int
    period: float


# Documented limits; groups the docs do not list (server time, exchangeinfo, v2 trades, ticker by
# currency, legacy ohlc) get the strictest public figure we know so we never find the real limit the
# hard way.
DEFAULT_LIMITS: Mapping[EndpointGroup, tuple[Window, ...]] = {
    EndpointGroup.SERVER_TIME: (Window(60, 60.0),),
    EndpointGroup.EXCHANGE_INFO: (Window(60, 60.0),),
    EndpointGroup.TICKER: (Window(600, 60.0),),
    EndpointGroup.TICKER_CURRENCY: (Window(60, 60.0),),
    EndpointGroup.ORDERBOOK: (Window(180, 60.0),),
    EndpointGroup.TRADES: (Window(90, 60.0),),
    EndpointGroup.OHLC: (Window(120, 60.0),),
    EndpointGroup.KLINES: (Window(600, 600.0),),
    EndpointGroup.LEGACY_OHLC: (Window(60, 60.0),),
    EndpointGroup.BALANCES: (Window(120, 60.0),),
    EndpointGroup.SUBMIT: (Window(300, 60.0), Window(10, 1.0)),
    EndpointGroup.CANCEL: (Window(300, 60.0), Window(10, 1.0)),
    EndpointGroup.GET_ORDER: (Window(900, 60.0), Window(30, 1.0)),
    EndpointGroup.OPEN_ORDERS: (Window(300, 60.0),),
    EndpointGroup.ALL_ORDERS: (Window(300, 60.0),),
    EndpointGroup.USER_TRADES: (Window(120, 60.0),),
    EndpointGroup.CRYPTO_TRANSACTIONS: (Window(90, 60.0),),
    EndpointGroup.FIAT_TRANSACTIONS: (Window(90, 60.0),),
}

GRAPH_POOL = "graph"
# Budgets several groups draw on together: graph-api allows 600 requests per 10 minutes across all of
# its paths, on top of the 120 per minute of /v1/ohlcs.
SHARED_LIMITS: Mapping[str, tuple[Window, ...]] = {GRAPH_POOL: (Window(600, 600.0),)}
DEFAULT_POOLS: Mapping[EndpointGroup, str] = {EndpointGroup.OHLC: GRAPH_POOL, EndpointGroup.KLINES: GRAPH_POOL}


class Budget:
    """Send budget of one endpoint group: its windows plus a block set by a 429."""

    def __init__(self, windows: tuple[Window, ...], *, margin: float = 0.05) -> None:
        if not windows or any(w.limit < 1 or w.period <= 0 for w in windows):
            raise ValueError(f"invalid windows: {windows!r}")
        self.windows = windows
        self.margin = margin
        self._sent: deque[float] = deque(maxlen=max(w.limit for w in windows))
        self._blocked_until = float("-inf")

    def delay(self, now: float) -> float:
        """Seconds until one more request may be sent (0 means now)."""
        wait = max(0.0, self._blocked_until - now)
        for window in self.windows:
            if len(self._sent) >= window.limit:
                oldest_in_window = self._sent[-window.limit]
                wait = max(wait, oldest_in_window + window.period + self.margin - now)
        return wait

    def record(self, now: float) -> None:
        """Count a request sent at ``now``."""
        self._sent.append(now)

    def block_until(self, until: float) -> None:
        """Send nothing before ``until`` (the exchange said 429 / Retry-After)."""
        self._blocked_until = max(self._blocked_until, until)

    @property
    def blocked_until(self) -> float:
        """Time before which nothing is sent."""
        return self._blocked_until
