"""Where books and trades come from: one small interface each, so a WebSocket source can replace REST.

A source is asked for the current state of a symbol; a REST source fetches it, a streaming source (the
obdiff WebSocket book, later) keeps it up to date in the background and answers from memory.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from btcbot.marketdata.books import RawBook
from btcbot.marketdata.trades import RawTrade


class BookSource(Protocol):
    """Gives the current order book of a symbol."""

    name: str

    async def book(self, symbol: str) -> RawBook:
        """The latest book of `symbol`; raises on failure."""
        ...


class TradeSource(Protocol):
    """Gives the recent public trades of a symbol."""

    async def recent_trades(self, symbol: str) -> Sequence[RawTrade]:
        """The most recent public trades of `symbol`; raises on failure."""
        ...


class MarketClient(Protocol):
    """The part of the BTCTurk REST client market data uses."""

    async def orderbook(self, pair: str, limit: int = ...) -> RawBook:
        """REST order book of `pair`, at most `limit` levels a side."""
        ...

    async def trades(self, pair: str, last: int = ...) -> Sequence[RawTrade]:
        """The last `last` public trades of `pair`."""
        ...


class RestBookSource:
    """Polls the REST order book endpoint."""

    name = "rest"

    def __init__(self, client: MarketClient, depth: int) -> None:
        self._client = client
        self._depth = depth

    async def book(self, symbol: str) -> RawBook:
        """Fetch the book of `symbol` with `depth` levels a side."""
        return await self._client.orderbook(symbol, self._depth)


class RestTradeSource:
    """Polls the REST recent trades endpoint."""

    def __init__(self, client: MarketClient, last: int) -> None:
        self._client = client
        self._last = last

    async def recent_trades(self, symbol: str) -> Sequence[RawTrade]:
        """Fetch the last `last` trades of `symbol`."""
        return await self._client.trades(symbol, self._last)
