"""The dynamic universe's periodic tasks inside marketdata: one replica selects, every replica follows.

The selector runs on the replica holding the `universe` lease (a fenced Redis lease, so one replica at a time).
Every refresh it reads the exchange (24 h change from the ticker, spread and depth from the order books), counts
the minimum-total rejects of each candidate in EXECUTION, runs the pure selection (selection.py) from the last
published UniverseSelected, and publishes the next one on `universe.selected`. The UNIVERSE stream is its
memory: a restarted or new selector resumes from the last selection, its one-change-a-day budget, its
cooldowns and probations, and waits out the refresh interval counted from that selection's time.

Every replica (the selector too) follows the last selection: the symbols it publishes books and trades for,
its WebSocket subscriptions and its partition leases are the selected symbols plus the candidates in which
the portfolio holds a position (the ledger needs their marks and a strategy their books to sell them).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from decimal import Decimal
from typing import Any, Protocol

import msgspec

from btcbot.contracts import ids, subjects
from btcbot.contracts.codec import Codec
from btcbot.contracts.messages import OrderRejected, PortfolioSnapshot, UniverseSelected
from btcbot.contracts.rejects import is_min_total_reject
from btcbot.contracts.streams import EXECUTION, PORTFOLIO, UNIVERSE
from btcbot.marketdata.books import RawBook
from btcbot.marketdata.selection import Quote, Selection, UniverseRules, UniverseState, message, quote_of, select
from btcbot.runtime.bus import Publisher
from btcbot.runtime.inspect import last_message, read_since

_SELECTION: Codec[UniverseSelected] = Codec(UniverseSelected)
_REJECTED: Codec[OrderRejected] = Codec(OrderRejected)
_PORTFOLIO: Codec[PortfolioSnapshot] = Codec(PortfolioSnapshot)


class TickerLike(Protocol):
    """The fields of a 24 h ticker the universe reads."""

    @property
    def pair(self) -> str:
        """Pair symbol, e.g. BTCTRY."""
        ...

    @property
    def open(self) -> Decimal:
        """Price 24 h ago."""
        ...

    @property
    def last(self) -> Decimal:
        """Last trade price."""
        ...

    @property
    def daily_percent(self) -> Decimal | None:
        """24 h change in percent, when the exchange gives it."""
        ...


class UniverseExchange(Protocol):
    """The part of the BTCTurk REST client the universe uses."""

    async def ticker(self, pair: str | None = None) -> Sequence[TickerLike]:
        """Tickers of every pair (pair None)."""
        ...

    async def orderbook(self, pair: str, limit: int = ...) -> RawBook:
        """REST order book of `pair`."""
        ...


def momentum_of(ticker: TickerLike) -> float:
    """The 24 h change in percent: the exchange's, or computed from open and last."""
    if ticker.daily_percent is not None:
        return float(ticker.daily_percent)
    return float((ticker.last - ticker.open) / ticker.open * 100) if ticker.open > 0 else 0.0


async def fetch_quotes(client: UniverseExchange, candidates: Sequence[str], levels: int) -> list[Quote]:
    """One quote per candidate the exchange lists (a missing one is rejected NO_DATA by the selection)."""
    tickers = {t.pair: t for t in await client.ticker()}
    quotes = []
    for symbol in candidates:
        ticker = tickers.get(symbol)
        if ticker is None:
            continue
        book = await client.orderbook(symbol, levels)
        quotes.append(quote_of(symbol, momentum_of(ticker), book.bids, book.asks, levels))
    return quotes


async def recent_rejects(js: Any, since_ns: int) -> dict[str, int]:
    """Minimum-total rejects per symbol stored in EXECUTION since `since_ns`."""
    counts: dict[str, int] = {}
    for stored in await read_since(js, EXECUTION.name, since_ns, subjects.executions("rejected")):
        try:
            event = _REJECTED.decode(stored.data)
        except (msgspec.DecodeError, msgspec.ValidationError):
            continue  # not ours to judge: the consumers of EXECUTION dead-letter it
        if is_min_total_reject(event):
            counts[event.symbol] = counts.get(event.symbol, 0) + 1
    return counts


async def last_selection(js: Any) -> UniverseSelected | None:
    """The last published selection, or None (none yet, or an undecodable one: the selector then starts over)."""
    raw = await last_message(js, UNIVERSE.name, subjects.UNIVERSE_SELECTED)
    if raw is None:
        return None
    try:
        return _SELECTION.decode(raw.data)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None


async def held_symbols(js: Any, candidates: Sequence[str]) -> frozenset[str]:
    """Candidates in which the last portfolio snapshot holds a position."""
    raw = await last_message(js, PORTFOLIO.name, subjects.PORTFOLIOS)
    if raw is None:
        return frozenset()
    try:
        snapshot = _PORTFOLIO.decode(raw.data)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return frozenset()
    return frozenset(p.symbol for p in snapshot.positions if p.quantity != 0 and p.symbol in candidates)


def due(last: UniverseSelected | None, now_ns: int, refresh_ns: int) -> bool:
    """True when no selection exists yet or the last one is older than the refresh interval."""
    return last is None or now_ns - last.ts_ns >= refresh_ns


class Selector:
    """Publishes the next selection when one is due; `step` is run periodically on the lease holder."""

    def __init__(
        self,
        js: Any,
        bus: Publisher,
        client: UniverseExchange,
        *,
        candidates: Sequence[str],
        rules: UniverseRules,
        refresh_ns: int,
        levels: int,
        clock: Callable[[], int],
        instance: str,
        log: Any,
    ) -> None:
        self._js = js
        self._bus = bus
        self._client = client
        self._candidates = tuple(candidates)
        self._rules = rules
        self._refresh_ns = refresh_ns
        self._levels = levels
        self._clock = clock
        self._instance = instance
        self._log = log

    async def step(self) -> Selection | None:
        """Select and publish if due; the selection published, or None."""
        # Read back from the stream every time: another replica may have selected since this one last did.
        last = await last_selection(self._js)
        if not due(last, self._clock(), self._refresh_ns):
            return None
        quotes = await fetch_quotes(self._client, self._candidates, self._levels)
        now = self._clock()
        rejects = await recent_rejects(self._js, now - self._rules.reject_window_ns)
        state = UniverseState() if last is None else UniverseState.of(last)
        selection = select(state, quotes, rejects, now, self._rules, self._candidates)
        version = selection.state.version
        await self._bus.publish(
            subjects.UNIVERSE_SELECTED, message(selection, ids.universe_id(version), now, self._instance)
        )
        self._log.info(
            "universe.selected",
            version=version,
            selected=list(selection.state.selected),
            added=list(selection.added),
            removed=list(selection.removed),
            rejected={r.symbol: list(r.reasons) for r in selection.rejected},
        )
        return selection


class Follower:
    """Applies the last selection (plus held symbols) to this replica: `apply` gets the symbols to publish."""

    def __init__(
        self,
        js: Any,
        candidates: Sequence[str],
        apply: Callable[[frozenset[str]], Awaitable[None]],
        log: Any,
    ) -> None:
        self._js = js
        self._candidates = tuple(candidates)
        self._apply = apply
        self._log = log
        self.symbols: frozenset[str] = frozenset()
        self.version = 0
        self.ready = asyncio.Event()

    async def step(self) -> None:
        """Read the last selection and the held positions; apply them when they changed."""
        last = await last_selection(self._js)
        selected = frozenset(last.symbols if last is not None else ()) & set(self._candidates)
        wanted = selected | await held_symbols(self._js, self._candidates)
        if wanted != self.symbols or not self.ready.is_set():
            await self._apply(wanted)
            self._log.info(
                "universe.following",
                version=0 if last is None else last.version,
                symbols=sorted(wanted),
                held=sorted(wanted - selected),
            )
            self.symbols = wanted
        self.version = 0 if last is None else last.version
        self.ready.set()
