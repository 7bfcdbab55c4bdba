"""One poll of one symbol: fetch from the source, build the messages, publish the new ones."""

from __future__ import annotations

from collections.abc import Callable

from btcbot.contracts import subjects
from btcbot.contracts.messages import BookSnapshot, TradeTick
from btcbot.marketdata.books import SequenceGate, to_snapshot
from btcbot.marketdata.freshness import Freshness
from btcbot.marketdata.sources import BookSource, TradeSource
from btcbot.marketdata.trades import TradeFilter
from btcbot.runtime.bus import Publisher


class BookPoller:
    """Publishes a BookSnapshot per poll whenever the exchange book moved on."""

    def __init__(
        self,
        bus: Publisher,
        source: BookSource,
        *,
        depth: int,
        stale_after_ns: int,
        clock: Callable[[], int],
        freshness: Freshness,
    ) -> None:
        self._bus = bus
        self._source = source
        self._depth = depth
        self._stale_after_ns = stale_after_ns
        self._clock = clock
        self._freshness = freshness
        self.gate = SequenceGate()

    async def poll(self, symbol: str) -> BookSnapshot | None:
        """Fetch and publish the book of `symbol`; None when it has not changed since the last one."""
        raw = await self._source.book(symbol)
        received = self._clock()
        snapshot = to_snapshot(
            symbol,
            raw,
            depth=self._depth,
            received_ts_ns=received,
            stale_after_ns=self._stale_after_ns,
            source=self._source.name,
        )
        if not self.gate.is_new(symbol, snapshot.sequence):
            self._freshness.record(symbol, received)
            return None
        await self._bus.publish(subjects.book(symbol), snapshot)
        self.gate.accept(symbol, snapshot.sequence)
        self._freshness.record(symbol, received)
        return snapshot


class TradePoller:
    """Publishes a TradeTick for every public trade not published before."""

    def __init__(self, bus: Publisher, source: TradeSource, *, clock: Callable[[], int]) -> None:
        self._bus = bus
        self._source = source
        self._clock = clock
        self.filter = TradeFilter()

    async def poll(self, symbol: str) -> list[TradeTick]:
        """Fetch recent trades of `symbol` and publish the new ones, oldest first."""
        trades = await self._source.recent_trades(symbol)
        ticks = self.filter.new_ticks(symbol, trades, self._clock())
        for tick in ticks:
            await self._bus.publish(subjects.trade(symbol), tick)
            self.filter.mark_published(symbol, tick)
        return ticks
