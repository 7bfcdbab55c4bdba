"""Turn the exchange's recent public trades into TradeTick messages, each trade once.

The REST endpoint returns the last N trades every time, so most of every answer was already published.
A bounded memory of trade ids per symbol filters those out; the deterministic tick id lets JetStream drop
any duplicate that slips through (a restart, a second replica) inside its duplicate window.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from decimal import Decimal
from typing import Protocol

from btcbot.contracts import ids
from btcbot.contracts.messages import Side, TradeTick

_NS_PER_MS = 1_000_000


class RawTrade(Protocol):
    """A public trade as the REST client returns it."""

    @property
    def trade_id(self) -> str:
        """Exchange trade id, unique per pair."""
        ...

    @property
    def timestamp_ms(self) -> int:
        """Exchange time of the trade in milliseconds."""
        ...

    @property
    def price(self) -> Decimal:
        """Trade price in quote."""
        ...

    @property
    def amount(self) -> Decimal:
        """Trade quantity in base."""
        ...

    @property
    def side(self) -> str | None:
        """Taker side, "buy" or "sell"; None on payloads that predate the field."""
        ...


def _side(value: str | None) -> Side | None:
    text = None if value is None else str(value).lower()
    if text == "buy":
        return "buy"
    if text == "sell":
        return "sell"
    return None


class TradeFilter:
    """Remembers the last `memory` trade ids of each symbol and yields ticks for unseen trades only."""

    def __init__(self, memory: int = 1000) -> None:
        if memory < 1:
            raise ValueError("memory must be at least 1")
        self._memory = memory
        self._order: dict[str, deque[str]] = {}
        self._seen: dict[str, set[str]] = {}

    def new_ticks(self, symbol: str, trades: Iterable[RawTrade], received_ts_ns: int) -> list[TradeTick]:
        """Ticks for trades not seen before, oldest first; trades without a taker side are skipped."""
        seen = self._seen.get(symbol, set())
        fresh: dict[str, TradeTick] = {}
        for trade in trades:
            side = _side(trade.side)
            if trade.trade_id in seen or trade.trade_id in fresh or side is None:
                continue
            fresh[trade.trade_id] = TradeTick(
                id=ids.trade_tick_id(symbol, trade.trade_id),
                ts_ns=received_ts_ns,
                symbol=symbol,
                trade_id=trade.trade_id,
                price=trade.price,
                quantity=abs(trade.amount),
                taker_side=side,
                exchange_ts_ns=trade.timestamp_ms * _NS_PER_MS,
            )
        return sorted(fresh.values(), key=lambda t: (t.exchange_ts_ns, t.trade_id))

    def mark_published(self, symbol: str, tick: TradeTick) -> None:
        """Remember a tick as published (call after the publish succeeded)."""
        order = self._order.setdefault(symbol, deque())
        seen = self._seen.setdefault(symbol, set())
        if tick.trade_id in seen:
            return
        order.append(tick.trade_id)
        seen.add(tick.trade_id)
        while len(order) > self._memory:
            seen.discard(order.popleft())
