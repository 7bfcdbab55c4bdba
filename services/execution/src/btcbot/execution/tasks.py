"""Background work: reconcile with the exchange at start-up, sweep unsettled orders, publish exchange alarms.

Start-up: every open order and every recent trade of our account at the exchange is matched to a journal
record (by client order id, then by exchange order id). An order nobody here placed is, by setting,
adopted (a record is made for it and its events are emitted, so the ledger books its fills), canceled at
the exchange (and then adopted, because its fills moved money), or only reported. Every difference is a
structured ``reconcile.diff`` log event.

Sweep, every ``interval_s``: each order in the journal's active set is settled as far as the exchange
allows, under the same per account+symbol lock as the handlers, so the sweep and a handler never act on
one order at once:

    CLAIMED, not sent      left to the SubmitOrder's redelivery; rejected EXPIRED once too old to place
    SENDING (in flight)    asked for by client order id: found -> its events; absent after the lookups
                           -> back to CLAIMED (nothing was sent). The sweep never places an order.
    ACCEPTED / PARTIAL /   missing from the exchange's open orders -> read back (fills, then
    CANCEL_PENDING         canceled or closed); resting longer than the order TTL -> canceled
    settled                dropped from the active set

A record written less than ``settle_s`` ago is skipped: a handler may still be acting on it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Literal

import structlog

from btcbot.btcturk.errors import BtcTurkError
from btcbot.execution import orders
from btcbot.execution.handlers import Execution
from btcbot.execution.journal import settled
from btcbot.execution.orders import IllegalTransition, Order, Status
from btcbot.execution.reconcile import ExchangeOrder, ExchangeStatus, reconcile
from btcbot.execution.record import CorruptRecord, Phase, Record
from btcbot.execution.watch import BREAKER_OPEN, REPEATED_FAILURES, ExchangeWatch
from btcbot.runtime.alarms import AlarmLatch, raise_or_clear
from btcbot.runtime.bus import Publisher
from btcbot.runtime.errors import Retry
from btcbot.runtime.locks import Lease

UnknownOrders = Literal["adopt", "cancel", "report"]
ADOPTED_STRATEGY = "adopted"
NS_PER_S = 1_000_000_000
NS_PER_MS = 1_000_000


@dataclass
class Report:
    """What one start-up reconciliation or sweep found and did, counted by outcome."""

    counts: Counter[str] = field(default_factory=Counter)

    def add(self, what: str, n: int = 1) -> None:
        """Count an outcome."""
        self.counts[what] += n


class Sweeper:
    """Start-up reconciliation once, then the periodic sweep, until stopped."""

    def __init__(
        self,
        execution: Execution,
        symbols: tuple[str, ...],
        *,
        interval_s: float,
        settle_s: float,
        lookback_s: float,
        unknown_orders: UnknownOrders = "adopt",
        order_ttl_s: float = 0.0,
        clock: Callable[[], int] | None = None,
    ) -> None:
        self.execution = execution
        self.symbols = symbols
        self.interval_s = interval_s
        self.settle_ns = int(settle_s * NS_PER_S)
        self.lookback_ms = int(lookback_s * 1000)
        self.unknown_orders = unknown_orders
        self.order_ttl_ns = int(order_ttl_s * NS_PER_S)
        self.clock = clock or execution.clock
        self.started = False
        self.healthy = True
        self.log: structlog.stdlib.BoundLogger = execution.log.bind(task="sweeper")

    async def run(self, stop: asyncio.Event) -> None:
        """Reconcile at start (retrying until it succeeds), then sweep until ``stop`` is set."""
        while not stop.is_set():
            try:
                if not self.started:
                    report = await self.startup()
                    self.started = True
                    self.log.info("reconcile.startup", **dict(report.counts))
                report = await self.sweep()
                if report.counts:
                    self.log.info("sweep.done", **dict(report.counts))
                self.healthy = True
            except (BtcTurkError, Retry) as exc:
                self.healthy = False
                self.log.warning("sweep.failed", startup=not self.started, error=str(exc))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.interval_s)

    # ---- start-up ------------------------------------------------------------------------------

    async def startup(self) -> Report:
        """Match the exchange's open orders and recent trades to the journal; handle the unknown ones."""
        report = Report()
        since_ms = self.clock() // NS_PER_MS - self.lookback_ms
        exchange = self.execution.exchange
        for symbol in self.symbols:
            unknown: dict[str, ExchangeOrder | None] = {}
            for seen in await exchange.open_orders(symbol):
                report.add("open_orders")
                if await self._known(symbol, seen.exchange_order_id, seen.client_order_id) is None:
                    unknown[seen.exchange_order_id] = seen
            for trade in await exchange.trades(symbol, since_ms):
                report.add("recent_trades")
                xid = trade.exchange_order_id
                if xid not in unknown and await self._known(symbol, xid, trade.client_order_id) is None:
                    unknown[xid] = None  # a closed order: read it below
            for xid, listed in sorted(unknown.items()):
                found = listed or await exchange.get(xid)
                if found is None:
                    self._diff("unknown_trade_order_missing", symbol=symbol, exchange_order_id=xid)
                    report.add("unreadable")
                    continue
                report.add(await self._unknown(symbol, found))
        return report

    async def _known(self, symbol: str, xid: str, coid: str | None) -> str | None:
        journal = self.execution.journal
        # A claim without an order record never reached the exchange (the record is written before the POST),
        # so only a record counts as known; a bare claim is an adoption that was interrupted.
        if coid and await journal.load(coid) is not None:
            return coid
        return await journal.client_order_id(symbol, xid)

    async def _unknown(self, symbol: str, seen: ExchangeOrder) -> str:
        log = self.log.bind(symbol=symbol, exchange_order_id=seen.exchange_order_id)
        open_now = seen.status == ExchangeStatus.OPEN
        self._diff("unknown_order", symbol=symbol, exchange_order_id=seen.exchange_order_id,
                   client_order_id=seen.client_order_id, status=seen.status.value,
                   filled=str(seen.filled_quantity), policy=self.unknown_orders)  # fmt: skip
        if self.unknown_orders == "report":
            return "unknown_reported"
        if seen.side is None or seen.order_type is None or seen.quantity is None:
            log.error("reconcile.unadoptable", reason="order terms unknown (stop order?)")
            return "unknown_unadoptable"
        if open_now and self.unknown_orders == "cancel":
            with contextlib.suppress(BtcTurkError):
                await self.execution.exchange.cancel(seen.exchange_order_id)
            log.warning("reconcile.unknown_canceled")
            seen = (await self.execution.exchange.get(seen.exchange_order_id)) or seen
        # Whatever the policy, fills that happened moved money: the ledger must see them.
        return await self._adopt(symbol, seen, log)

    async def _adopt(self, symbol: str, seen: ExchangeOrder, log: structlog.stdlib.BoundLogger) -> str:
        ex = self.execution
        coid = seen.client_order_id or f"x{seen.exchange_order_id}"
        order = adopted_order(coid, symbol, seen)
        async with ex.locked(symbol, log):
            if await ex.journal.load(coid) is not None:
                return "unknown_adopted_elsewhere"  # another replica adopted it first
            await ex.journal.claim(coid)
            trades = await ex.exchange.order_trades(seen.exchange_order_id)
            result = reconcile(order, seen, trades, self.clock())
            committed = await ex.commit(Record(result.order, Phase.SENT), result.events, log)
            await ex.journal.index(committed.order)
            for trade in trades:
                await ex.journal.mark_trade(symbol, trade.trade_id, trade.exchange_order_id)
        log.warning("reconcile.adopted", client_order_id=coid, status=committed.order.status.value,
                    events=[m.id for m in result.events])  # fmt: skip
        return "unknown_adopted"

    def _diff(self, kind: str, **details: object) -> None:
        self.log.warning("reconcile.diff", kind=kind, **details)

    # ---- sweep ---------------------------------------------------------------------------------

    async def sweep(self) -> Report:
        """Settle what the exchange allows of every active order (see the module docstring)."""
        report = Report()
        journal = self.execution.journal
        by_symbol: dict[str, list[Record]] = {}
        for coid in await journal.active.members():
            try:
                record = await journal.load(coid)
            except CorruptRecord as exc:
                self.log.error("sweep.corrupt_record", client_order_id=coid, error=str(exc))
                report.add("corrupt")
                continue
            if record is None or settled(record):
                await journal.forget(coid)
                report.add("forgotten")
                continue
            by_symbol.setdefault(record.order.symbol, []).append(record)
        for symbol, records in sorted(by_symbol.items()):
            resting: set[str] | None = None
            if any(r.phase == Phase.SENT and r.order.is_open for r in records):
                resting = {o.exchange_order_id for o in await self.execution.exchange.open_orders(symbol)}
            for record in records:
                report.add(await self._settle(record.order.client_order_id, symbol, resting))
        return report

    async def _settle(self, coid: str, symbol: str, resting: set[str] | None) -> str:
        ex = self.execution
        log = self.log.bind(client_order_id=coid, symbol=symbol)
        try:
            async with ex.locked(symbol, log, wait_s=0.5) as lease:
                record = await ex.journal.load(coid)  # again, under the lock
                if record is None or settled(record):
                    await ex.journal.forget(coid)
                    return "forgotten"
                return await self._settle_locked(record, resting, lease, log)
        except Retry as exc:
            log.debug("sweep.later", reason=exc.reason)
            return "later"
        except (IllegalTransition, CorruptRecord) as exc:
            # The handler parks the same conflict in the DLQ; the sweep only reports it.
            log.error("sweep.conflict", error=str(exc))
            return "conflict"

    async def _settle_locked(
        self, record: Record, resting: set[str] | None, lease: Lease, log: structlog.stdlib.BoundLogger
    ) -> str:
        ex = self.execution
        now = self.clock()
        order = record.order
        if record.saved_ns and now - record.saved_ns < self.settle_ns:
            return "recent"
        if record.phase == Phase.CLAIMED:
            max_age_ns = int(ex.policy.max_order_age_s * NS_PER_S)
            # Same rule as the handler: a command this old is never placed, so the outcome is final now.
            if max_age_ns and record.created_ns and now - record.created_ns > max_age_ns:
                step = orders.reject(order, "EXPIRED", "never sent; its command is too old to place", now)
                await ex.commit(Record(step.order, Phase.SENT), step.events, log)
                log.warning("sweep.expired")
                return "expired"
            return "unsent"
        if record.phase == Phase.SENDING:
            log.warning("sweep.in_flight", status=order.status.value, lookups=record.lookups)
            resolved = await ex.resolve(record, None, lease, log, why="sweep", missing="unsent")
            return "resolved" if resolved.phase == Phase.SENT else "unsent"
        if not order.is_open:
            return "waiting"
        if resting is not None and order.exchange_order_id not in resting:
            synced = await ex.sync(record, log)
            return "synced" if synced.order.is_terminal else "waiting"
        if self._expired(record, now) and order.status != Status.CANCEL_PENDING:
            log.info("sweep.ttl_cancel", age_s=(now - record.created_ns) / NS_PER_S)
            done = await ex.cancel_resting(record, lease, log, reason="ttl")
            return "ttl_canceled" if done else "ttl_cancel_sent"
        return "resting"

    def _expired(self, record: Record, now: int) -> bool:
        return bool(self.order_ttl_ns and record.created_ns and now - record.created_ns > self.order_ttl_ns)


def adopted_order(client_order_id: str, symbol: str, seen: ExchangeOrder) -> Order:
    """A PENDING order built from an exchange order nobody here placed (reconcile then catches it up)."""
    if seen.side is None or seen.order_type is None or seen.quantity is None:
        raise ValueError(f"exchange order {seen.exchange_order_id}: terms unknown, cannot adopt")
    return Order(
        client_order_id=client_order_id,
        intent_id=f"adopted:{symbol}:{seen.exchange_order_id}",
        strategy=ADOPTED_STRATEGY,
        symbol=symbol,
        side=seen.side,
        order_type=seen.order_type,
        price=seen.price,
        quantity=seen.quantity,
    )


# ---- alarms of the kill chain ----------------------------------------------------------------------

ALARM_SOURCE = "execution"


class AlarmPublisher:
    """Evaluates the watch and publishes what changed; `step` is one evaluation, `run` loops."""

    def __init__(
        self,
        watch: ExchangeWatch,
        bus: Publisher,
        clock: Callable[[], int],
        log: structlog.stdlib.BoundLogger,
        recall: Callable[[AlarmLatch], Awaitable[object]] | None = None,
    ) -> None:
        self.recall = recall  # reads each alarm's stored state before the first step (runtime.alarms.recall)
        self.watch = watch
        self.bus = bus
        self.clock = clock
        self.log = log
        self.latches = {kind: AlarmLatch(ALARM_SOURCE, kind) for kind in (BREAKER_OPEN, REPEATED_FAILURES)}

    async def step(self) -> None:
        """Publish every condition whose state differs from what was last published."""
        now = self.clock()
        for condition in self.watch.conditions(now):
            try:
                await raise_or_clear(self.bus, self.latches[condition.kind], self.log, condition.active,
                                     cause=condition.cause, now_ns=now, detail=condition.detail)  # fmt: skip
            except Exception as exc:  # NATS away: the latch did not move, the next step tries again
                self.log.warning("alarm.publish_failed", kind=condition.kind, error=f"{type(exc).__name__}: {exc}")

    async def run(self, stop: asyncio.Event, interval_s: float = 1.0) -> None:
        """Recall what is stored, then evaluate every `interval_s` until stop is set."""
        if self.recall is not None:
            for latch in self.latches.values():
                await self.recall(latch)
        while not stop.is_set():
            await self.step()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), interval_s)
