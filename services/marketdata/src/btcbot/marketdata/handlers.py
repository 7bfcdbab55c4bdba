"""Build the messages of one symbol and publish the new ones: REST polls, WebSocket books, trades."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from btcbot.contracts import subjects
from btcbot.contracts.messages import BookSnapshot, Level, TradeTick
from btcbot.marketdata.books import snapshot_of, to_snapshot
from btcbot.marketdata.freshness import Freshness
from btcbot.marketdata.localbooks import LocalBooks
from btcbot.marketdata.metrics import book_published
from btcbot.marketdata.sequence import Sequencer
from btcbot.marketdata.sources import BookSource, TradeSource
from btcbot.marketdata.trades import RawTrade, TradeFilter
from btcbot.runtime.bus import Publisher

_NS_PER_MS = 1_000_000


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
        sequencer: Sequencer | None = None,
    ) -> None:
        self._bus = bus
        self._source = source
        self._depth = depth
        self._stale_after_ns = stale_after_ns
        self._clock = clock
        self._freshness = freshness
        self.sequencer = sequencer if sequencer is not None else Sequencer()

    async def poll(self, symbol: str, *, still_wanted: Callable[[], bool] | None = None) -> BookSnapshot | None:
        """Fetch and publish the book of `symbol`; None when unchanged, or no longer `still_wanted` on arrival."""
        raw = await self._source.book(symbol)
        if still_wanted is not None and not still_wanted():
            # A newer book arrived from the WebSocket while this one was on its way.
            return None
        received = self._clock()
        sequence = self.sequencer.rest(symbol, raw.timestamp_ms)
        if sequence is None:
            self._freshness.record(symbol, received)
            return None
        snapshot = to_snapshot(
            symbol,
            raw,
            depth=self._depth,
            received_ts_ns=received,
            stale_after_ns=self._stale_after_ns,
            sequence=sequence,
            source=self._source.name,
        )
        await self._bus.publish(subjects.book(symbol), snapshot)
        book_published(snapshot)
        self.sequencer.commit(symbol, sequence, rest_ts_ms=raw.timestamp_ms)
        self._freshness.record(symbol, received)
        return snapshot


class WsBookPublisher:
    """Publishes the top of a WebSocket-kept local book whenever it changed (source "ws"), and at least once
    per heartbeat while frames confirm it, so consumers can tell a quiet market from a dead feed."""

    def __init__(
        self,
        bus: Publisher,
        books: LocalBooks,
        sequencer: Sequencer,
        *,
        depth: int,
        stale_after_ns: int,
        freshness: Freshness,
        heartbeat_ns: int = 1_000_000_000,
        owns: Callable[[str], bool] | None = None,
    ) -> None:
        self._owns = owns
        self._bus = bus
        self._heartbeat_ns = heartbeat_ns
        self._last_sent_ns: dict[str, int] = {}
        self._books = books
        self._sequencer = sequencer
        self._depth = depth
        self._stale_after_ns = stale_after_ns
        self._freshness = freshness
        self._last_top: dict[str, tuple[tuple[Level, ...], tuple[Level, ...]]] = {}

    async def snapshot(self, symbol: str, cs: int, received_ts_ns: int) -> BookSnapshot:
        """Publish the book just rebuilt from a 431 snapshot at change-set `cs`."""
        sequence = self._sequencer.ws_snapshot(symbol, cs, received_ts_ns // _NS_PER_MS)
        snapshot = self._build(symbol, sequence, received_ts_ns)
        await self._send(snapshot)
        return snapshot

    async def diff(self, symbol: str, cs: int, received_ts_ns: int) -> BookSnapshot | None:
        """Publish the book after change-set `cs` if its top levels moved or a heartbeat is due; else None."""
        snapshot = self._build(symbol, self._sequencer.ws_diff(symbol, cs), received_ts_ns)
        quiet = received_ts_ns - self._last_sent_ns.get(symbol, 0) < self._heartbeat_ns
        if self._last_top.get(symbol) == (snapshot.bids, snapshot.asks) and quiet:
            return None
        await self._send(snapshot)
        return snapshot

    def _build(self, symbol: str, sequence: int, received_ts_ns: int) -> BookSnapshot:
        book = self._books.book(symbol)
        # The book is confirmed current by this frame, whether or not its top moved.
        self._freshness.record(symbol, received_ts_ns)
        # The feed has no exchange time; a diff batch is sent as it happens, so receipt stands in for it.
        return snapshot_of(
            symbol,
            sequence=sequence,
            bids=book.bids(self._depth),
            asks=book.asks(self._depth),
            depth=self._depth,
            exchange_ts_ns=received_ts_ns,
            received_ts_ns=received_ts_ns,
            stale_after_ns=self._stale_after_ns,
            source="ws",
        )

    async def _send(self, snapshot: BookSnapshot) -> None:
        if self._owns is not None and not self._owns(snapshot.symbol):
            return  # another replica publishes this symbol; the local book is kept for a takeover
        await self._bus.publish(subjects.book(snapshot.symbol), snapshot)
        book_published(snapshot)
        self._sequencer.commit(snapshot.symbol, snapshot.sequence)
        self._last_top[snapshot.symbol] = (snapshot.bids, snapshot.asks)
        self._last_sent_ns[snapshot.symbol] = snapshot.received_ts_ns


class TradePoller:
    """Publishes a TradeTick for every public trade not published before, from polls or the feed."""

    def __init__(
        self,
        bus: Publisher,
        source: TradeSource,
        *,
        clock: Callable[[], int],
        owns: Callable[[str], bool] | None = None,
    ) -> None:
        self._owns = owns
        self._bus = bus
        self._source = source
        self._clock = clock
        self.filter = TradeFilter()

    async def poll(self, symbol: str) -> list[TradeTick]:
        """Fetch recent trades of `symbol` and publish the new ones, oldest first."""
        return await self.publish(symbol, await self._source.recent_trades(symbol))

    async def publish(self, symbol: str, trades: Iterable[RawTrade]) -> list[TradeTick]:
        """Publish the trades of `symbol` not published before, oldest first (none for a symbol not owned)."""
        if self._owns is not None and not self._owns(symbol):
            return []
        ticks = self.filter.new_ticks(symbol, trades, self._clock())
        for tick in ticks:
            await self._bus.publish(subjects.trade(symbol), tick)
            self.filter.mark_published(symbol, tick)
        return ticks
