"""The fill poller: read our account's trades per symbol and publish one OrderFilled per exchange trade.

Exactly once across restarts and replicas: a fill already marked seen is skipped; otherwise the fill is
published (deterministic id, so JetStream drops a repeat), the order record updated, and only then the fill
marked seen. A fill is one order's side of a trade, (symbol, trade id, exchange order id): when two of our
orders match each other the exchange lists the trade twice under one trade id, once per order. Orders
are updated under the same per account+symbol lock as the order handlers.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

import structlog

from btcbot.btcturk.errors import BtcTurkError
from btcbot.execution import orders
from btcbot.execution.handlers import Execution
from btcbot.execution.orders import Fill, IllegalTransition
from btcbot.execution.record import CorruptRecord, Phase, Record
from btcbot.runtime.errors import Retry
from btcbot.runtime.telemetry import continue_trace

NS_PER_MS = 1_000_000


@dataclass(frozen=True)
class PollResult:
    """What one poll of a symbol did."""

    published: int = 0
    unknown: int = 0
    skipped_busy: bool = False


class FillPoller:
    """Polls user trades of each symbol every ``interval_s``."""

    def __init__(
        self,
        execution: Execution,
        symbols: tuple[str, ...],
        *,
        interval_s: float,
        lookback_s: float,
        overlap_s: float = 5.0,
        clock: Callable[[], int] | None = None,
    ) -> None:
        self.execution = execution
        self.symbols = symbols
        self.interval_s = interval_s
        self.overlap_ms = int(overlap_s * 1000)
        now_ms = (clock or execution.clock)() // NS_PER_MS
        # On start, look back far enough to pick up fills that happened while we were down.
        self.cursors: dict[str, int] = {s: now_ms - int(lookback_s * 1000) for s in symbols}
        self._reported: set[tuple[str, str]] = set()
        self.healthy = True
        self.log: structlog.stdlib.BoundLogger = execution.log.bind(task="fill-poller")
        self._wake = asyncio.Event()

    def set_interval(self, interval_s: float) -> None:
        """Poll every ``interval_s`` from now on (the user WebSocket slows polling down while it is up)."""
        faster = interval_s < self.interval_s
        self.interval_s = interval_s
        if faster:
            self._wake.set()

    def nudge(self) -> None:
        """Poll every symbol now instead of at the end of the current pause."""
        self._wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        """Poll until ``stop`` is set; exchange and Redis trouble is logged and retried next round."""
        while not stop.is_set():
            ok = True
            for symbol in self.symbols:
                try:
                    await self.poll(symbol)
                except (BtcTurkError, Retry) as exc:
                    ok = False
                    self.log.warning("fills.poll_failed", symbol=symbol, error=str(exc))
            self.healthy = ok
            await self._pause(stop)

    async def _pause(self, stop: asyncio.Event) -> None:
        waits = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(self._wake.wait())]
        try:
            await asyncio.wait(waits, timeout=self.interval_s, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiting in waits:
                waiting.cancel()
            self._wake.clear()

    async def poll(self, symbol: str) -> PollResult:
        """Fetch trades of one symbol since its cursor and publish the new fills."""
        trades = await self.execution.exchange.trades(symbol, self.cursors[symbol])
        result = await self.book(symbol, trades)
        if not result.skipped_busy:
            self._advance(symbol, trades)
        return result

    async def book(self, symbol: str, trades: list[Fill], *, source: str = "rest", wait_s: float = 0.2) -> PollResult:
        """Book the trades not seen yet under the symbol's order lock (busy: nothing done, try again)."""
        fresh = await self.unseen(symbol, trades)
        if not fresh:
            return PollResult()
        policy = self.execution.policy
        lease = await self.execution.locks.acquire(
            f"orders:{self.execution.account}:{symbol}", self.execution.owner, policy.lock_ttl_s, wait_s
        )
        if lease is None:
            return PollResult(skipped_busy=True)  # an order handler holds it; next round
        try:
            return await self.book_held(symbol, fresh, source=source)
        finally:
            await self.execution.locks.release(lease)

    async def unseen(self, symbol: str, trades: list[Fill]) -> list[Fill]:
        """The trades whose fills were not published yet."""
        journal = self.execution.journal
        return [t for t in trades if not await journal.trade_seen(symbol, t.trade_id, t.exchange_order_id)]

    async def book_held(self, symbol: str, trades: list[Fill], *, source: str = "rest") -> PollResult:
        """Book trades in exchange order while the caller holds the symbol's order lock.

        The one booking path of every fill source (REST poll, user WebSocket): the record's trade ids, the
        deterministic fill id and the seen-fill mark make a trade reported by both sources one OrderFilled.
        """
        published = unknown = 0
        for trade in sorted(trades, key=lambda t: (t.exchange_ts_ns, t.trade_id, t.exchange_order_id)):
            outcome = await self._book(symbol, trade, source)
            published += outcome == "published"
            unknown += outcome == "unknown"
        return PollResult(published, unknown)

    async def _book(self, symbol: str, trade: Fill, source: str) -> str:
        journal = self.execution.journal
        log = self.log.bind(symbol=symbol, trade_id=trade.trade_id, exchange_order_id=trade.exchange_order_id,
                            source=source)  # fmt: skip
        reported_key = (trade.trade_id, trade.exchange_order_id)
        record = None
        try:
            if trade.client_order_id:
                record = await journal.load(trade.client_order_id)
            if record is None:
                coid = await journal.client_order_id(symbol, trade.exchange_order_id)
                record = await journal.load(coid) if coid else None
        except CorruptRecord as exc:
            if reported_key not in self._reported:
                self._reported.add(reported_key)
                log.error("fills.corrupt_record", error=str(exc))
            return "illegal"
        if record is None:
            if reported_key not in self._reported:
                self._reported.add(reported_key)
                log.warning("fills.unknown_order", client_order_id=trade.client_order_id)
            return "unknown"
        try:
            step = orders.fill(record.order, trade, self.execution.clock())
        except IllegalTransition as exc:
            if reported_key not in self._reported:
                self._reported.add(reported_key)
                log.error("fills.illegal", client_order_id=record.order.client_order_id, error=str(exc))
            return "illegal"
        # A fill proves the exchange has the order, whatever the submit handler still believes.
        phase = Phase.SENT if step.order.exchange_order_id else record.phase
        traceparent = await journal.trace(record.order.client_order_id)
        # The fill belongs to the trace of the order that caused it (book -> intent -> order -> fill -> ledger).
        with continue_trace(traceparent, f"fill {symbol}", trade_id=trade.trade_id):
            await self.execution.commit(Record(step.order, phase, record.lookups), step.events, log)
        if step.events:
            await journal.index(step.order)
        await journal.mark_trade(symbol, trade.trade_id, trade.exchange_order_id)
        log.info("fills.booked", client_order_id=step.order.client_order_id, status=step.order.status.value,
                 events=len(step.events))  # fmt: skip
        return "published" if step.events else "known"

    def _advance(self, symbol: str, trades: list[Fill]) -> None:
        if trades:
            newest = max(t.exchange_ts_ns for t in trades) // NS_PER_MS
            self.cursors[symbol] = max(self.cursors[symbol], newest - self.overlap_ms)
