"""The WebSocket feed: obdiff books and trades of every symbol from one BTCTurk socket, onto the bus.

One reader task turns frames into local-book updates (`localbooks.py`) and publishes what changed; a
watchdog re-asks for snapshots that do not come. While a symbol has no synced book, or its book has not
been confirmed by a frame within the stale threshold, `needs_rest` says so and the REST poll loops fill in.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any, Protocol

from btcbot.btcturk.wsmodels import (
    BookDiff,
    BookSnapshot,
    Connected,
    Disconnected,
    TradeList,
    WsMessage,
    WsTrade,
)
from btcbot.marketdata.handlers import TradePoller, WsBookPublisher
from btcbot.marketdata.localbooks import DiffOutcome, LocalBooks
from btcbot.marketdata.metrics import ws_reconnected, ws_started
from btcbot.marketdata.polling import sleep_or_stop
from btcbot.runtime.errors import Retry

BOOK_CHANNEL = "obdiff"
TRADE_CHANNEL = "trade"


class Socket(Protocol):
    """The part of BtcTurkWebSocket the feed uses."""

    async def subscribe(self, channel: str, event: str) -> None:
        """Join a channel now and after every reconnect."""

    async def resubscribe(self, channel: str, event: str) -> None:
        """Leave and join again for a fresh snapshot."""

    async def unsubscribe(self, channel: str, event: str) -> None:
        """Leave a channel (not re-sent after a reconnect)."""

    def messages(self) -> AsyncIterator[WsMessage]:
        """Typed messages, reconnecting on its own, until aclose()."""
        ...

    async def aclose(self) -> None:
        """Close the socket and end messages()."""


class WsFeed:
    """Keeps a local book per symbol from obdiff and publishes books and trades as they change."""

    def __init__(
        self,
        socket: Socket,
        books: LocalBooks,
        publisher: WsBookPublisher,
        trades: TradePoller,
        *,
        clock: Callable[[], int],
        stale_after_ns: int,
        resync_timeout_ns: int,
        log: Any,
    ) -> None:
        self._socket = socket
        self.books = books
        self._publisher = publisher
        self._trades = trades
        self._clock = clock
        self._stale_after_ns = stale_after_ns
        self._resync_timeout_ns = resync_timeout_ns
        self._log = log
        self._confirmed: dict[str, int] = {}
        self._generation: dict[str, int] = dict.fromkeys(books.symbols, 0)
        self.publish_failures = 0

    def generation(self, symbol: str) -> int:
        """Bumped whenever a frame confirms or changes the book of `symbol` (a REST answer begun earlier is older)."""
        return self._generation[symbol]

    def needs_rest(self, symbol: str) -> bool:
        """True when the socket does not vouch for `symbol`'s book: not synced, or no frame within the threshold."""
        if not self.books.synced(symbol):
            return True
        confirmed = self._confirmed.get(symbol)
        return confirmed is None or self._clock() - confirmed > self._stale_after_ns

    def connected(self) -> bool:
        """True while the socket is up."""
        return self.books.connected

    async def run(self, stop: asyncio.Event) -> None:
        """Subscribe, then read and publish until `stop`."""
        ws_started()
        for symbol in self.books.symbols:
            if symbol in self.books.wanted:
                await self._socket.subscribe(BOOK_CHANNEL, symbol)
                await self._socket.subscribe(TRADE_CHANNEL, symbol)
        closer = asyncio.create_task(self._close_on(stop))
        watchdog = asyncio.create_task(self._watch(stop))
        try:
            async for message in self._socket.messages():
                await self._handle(message)
        finally:
            for task in (closer, watchdog):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await self._socket.aclose()

    async def follow(self, symbols: Iterable[str]) -> None:
        """Keep books and trades of these symbols only (the dynamic universe's selection): join and leave channels."""
        added, dropped = self.books.want(symbols, self._clock())
        for symbol in sorted(dropped):
            await self._socket.unsubscribe(BOOK_CHANNEL, symbol)
            await self._socket.unsubscribe(TRADE_CHANNEL, symbol)
        for symbol in sorted(added):
            self._generation[symbol] += 1
            await self._socket.subscribe(BOOK_CHANNEL, symbol)
            await self._socket.subscribe(TRADE_CHANNEL, symbol)
        if added or dropped:
            self._log.info("ws.following", added=sorted(added), dropped=sorted(dropped))

    async def _close_on(self, stop: asyncio.Event) -> None:
        await stop.wait()
        await self._socket.aclose()

    async def _watch(self, stop: asyncio.Event) -> None:
        period = self._resync_timeout_ns / 2e9
        while not stop.is_set():
            await sleep_or_stop(stop, period)
            for symbol in self.books.overdue(self._clock(), self._resync_timeout_ns):
                self._log.warning("ws.snapshot_overdue", symbol=symbol)
                await self._resubscribe(symbol)

    async def _resubscribe(self, symbol: str) -> None:
        self.books.resubscribing(symbol, self._clock())
        await self._socket.resubscribe(BOOK_CHANNEL, symbol)

    async def _handle(self, message: WsMessage) -> None:
        now = self._clock()
        if isinstance(message, Connected):
            self.books.on_connected(now)
            self._log.info("ws.connected", connection=message.connection)
            if message.connection > 1:
                ws_reconnected()
        elif isinstance(message, Disconnected):
            self.books.on_disconnected()
            self._log.warning("ws.disconnected", connection=message.connection, reason=message.reason)
        elif isinstance(message, BookSnapshot):
            if self.books.on_snapshot(message):
                await self._confirm(message.pair, lambda: self._publisher.snapshot(message.pair, message.cs, now))
        elif isinstance(message, BookDiff):
            await self._on_diff(message, now)
        elif isinstance(message, WsTrade) and message.pair in self._generation:
            await self._guarded(lambda: self._trades.publish(message.pair, (message,)))
        elif isinstance(message, TradeList) and message.pair in self._generation:
            await self._guarded(lambda: self._trades.publish(message.pair, message.trades))

    async def _on_diff(self, diff: BookDiff, now: int) -> None:
        outcome = self.books.on_diff(diff, now)
        if outcome is DiffOutcome.APPLIED:
            await self._confirm(diff.pair, lambda: self._publisher.diff(diff.pair, diff.cs, now))
        elif outcome is DiffOutcome.GAP:
            self._log.warning("ws.book_gap", symbol=diff.pair, cs=diff.cs)
            await self._socket.resubscribe(BOOK_CHANNEL, diff.pair)

    async def _confirm(self, symbol: str, publish: Callable[[], Any]) -> None:
        self._generation[symbol] += 1
        self._confirmed[symbol] = self._clock()
        await self._guarded(publish)

    async def _guarded(self, publish: Callable[[], Any]) -> None:
        # A bus outage must not cost the book: it stays in sync and the next change publishes again.
        try:
            await publish()
        except Retry as exc:
            self.publish_failures += 1
            self._log.warning("ws.publish_failed", error_class=type(exc).__name__, error=str(exc))
