"""Ledger handlers: execution events into the store, books into marks, and portfolio snapshots out.

Error mapping: Postgres unreachable -> DependencyUnavailable (a Retry: nak, redelivered later; readiness
goes false until a ping succeeds). A fill that can never be booked (no known quote asset, non-positive
price or quantity) -> Poison. A fill that was committed is acked even if its snapshot could not be built
or published; the revaluation loop publishes it later.

An oversell is neither Poison nor Retry: the fill is a fact of the exchange and is recorded (and acked),
the symbol's position freezes with an alert, and it resumes by itself when the missing fills arrive
(see store.py). Retrying would block the very buy that cures it behind the redelivery of the sell;
dead-lettering would lose a real trade from the books.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Protocol

import msgspec

from btcbot.contracts import subjects
from btcbot.contracts.messages import (
    BookSnapshot,
    OrderFilled,
    PortfolioSnapshot,
    ResumeSymbol,
)
from btcbot.contracts.signing import key_id_of, verify
from btcbot.ledger.metrics import ledger_instruments, report_fill, report_portfolio
from btcbot.ledger.portfolio import (
    Mark,
    build_snapshot,
    change_snapshot_id,
    heartbeat_snapshot_id,
    mark_of,
    marks_snapshot_id,
    newer,
)
from btcbot.ledger.positions import (
    bot_pnl,
    check_fill,
    day_start_ns,
    fee_rate_from_marks,
    fill_from_event,
    needs_fee_rate,
    split_symbol,
    value,
)
from btcbot.ledger.store import ExecutionEvent, FeeRate, FillResult, Incoming, Origin, Store, StoreUnavailable
from btcbot.ledger.tasks import Batcher
from btcbot.runtime.bus import Delivery, Publisher
from btcbot.runtime.errors import DependencyUnavailable, Poison

__all__ = ["ExecutionEvent", "Ledger", "Log"]

_NOT_HALTED = "not halted"


class Log(Protocol):
    """The part of a structlog logger the handlers use (a recorder stands in for it in tests)."""

    def info(self, event: str, **fields: Any) -> Any:
        """Routine event."""

    def warning(self, event: str, **fields: Any) -> Any:
        """Something to look at."""

    def error(self, event: str, **fields: Any) -> Any:
        """An alert."""


@dataclass
class Ledger:
    """The ledger's handlers and the little in-memory state they share (marks, what was published)."""

    store: Store
    bus: Publisher
    account: str
    quote_asset: str
    now_ns: Callable[[], int]
    log: Log
    marks: dict[str, Mark] = field(default_factory=dict)
    # The books behind the last snapshot published; a difference means a revaluation is due.
    published_marks: frozenset[tuple[str, str]] | None = None
    dirty: bool = True
    # When set, execution events are applied many per transaction (see tasks.Batcher).
    batcher: Batcher[Incoming, FillResult] | None = None
    # The EXECUTION durable's ack floor (every message up to it committed or dead-lettered); None: unknown (0).
    ack_floor: Callable[[], Awaitable[int]] | None = None
    # The last ack floor read: it only grows, so an old value is still a safe lower bound when NATS is slow.
    known_floor: int = 0
    # Trading days for day_pnl start at midnight UTC+offset.
    day_offset_minutes: int = 0
    # A snapshot at least this often (ns) even when nothing moved: a heartbeat that tells fresh from stale.
    heartbeat_ns: int = 5_000_000_000
    last_published_ns: int | None = None
    # Checks a symbol's assets against the exchange for a resume: None when they match, else why not.
    reconcile_assets: Callable[[tuple[str, ...]], Awaitable[tuple[str | None, dict[str, Decimal]]]] | None = None
    # The operator keys a ResumeSymbol must be signed with (BTCBOT_SIGNING_KEYS); None skips the check (handler
    # tests only: the service always sets it, and with no key configured every resume is refused).
    resume_keys: Mapping[str, bytes] | None = None

    async def on_execution(self, event: ExecutionEvent, delivery: Delivery) -> None:
        """Apply one execution event exactly once (alone, or in the batcher's next transaction)."""
        item = self.incoming(event, delivery)
        if self.batcher is not None:
            await self.batcher.submit(item)
        else:
            await self.apply([item])

    def incoming(self, event: ExecutionEvent, delivery: Delivery) -> Incoming:
        """Check a fill can be booked and take the mark for a third-asset fee now, at fill time."""
        origin = Origin(delivery.subject, delivery.stream, delivery.sequence)
        if not isinstance(event, OrderFilled):
            return Incoming(event, origin)
        try:
            fill = fill_from_event(event)
            check_fill(fill)
        except ValueError as exc:
            # Unbookable as sent (unknown quote asset, zero quantity ...): retrying cannot help.
            raise Poison(f"invalid fill {event.id}: {exc}") from exc
        rate: FeeRate | None = None
        if needs_fee_rate(fill):
            found = fee_rate_from_marks(fill.fee_asset, fill.quote_asset, {s: m.mid for s, m in self.marks.items()})
            if found is None:
                self.log.warning(
                    "ledger.fee_unpriced", message_id=event.id, fee_asset=fill.fee_asset, quote=fill.quote_asset
                )
            else:
                rate = (found[0], self.marks[found[1]].book_id)
        return Incoming(event, origin, rate)

    async def apply(self, items: Sequence[Incoming]) -> list[FillResult]:
        """Apply items in one transaction, report what happened, then publish one snapshot if anything moved."""
        try:
            results = await self.store.apply_batch(items, self.now_ns())
        except StoreUnavailable as exc:
            raise DependencyUnavailable(str(exc)) from exc
        ledger_instruments().batch_size.record(len(items))
        last_change = ""
        for item, result in zip(items, results, strict=True):
            self._report(item.event, result)
            # Order events do not move money, unless an OrderAccepted released its quarantined fills.
            if (result.changed and isinstance(item.event, OrderFilled)) or result.released:
                last_change = item.event.id
        if last_change:
            await self.publish_snapshot(change_snapshot_id(self.account, last_change), cause=last_change)
        return results

    def _report(self, event: ExecutionEvent, result: FillResult) -> None:
        if not result.changed:
            self.log.info("ledger.duplicate", message_id=event.id, status=result.status)
            return
        if result.released:
            self.log.warning(
                "ledger.quarantine_released", message_id=event.id, fills=result.released, resolution="order_accepted"
            )
        if not isinstance(event, OrderFilled):
            return
        if result.status == "quarantined":
            # An alert: a fill for an order the ledger does not know is held, not booked.
            ledger_instruments().integrity_alerts.add(1, {"kind": "quarantine", "symbol": event.symbol})
            self.log.error("ledger.fill_quarantined", alert=True, symbol=event.symbol, message_id=event.id,
                           client_order_id=event.client_order_id, trade_id=event.trade_id,
                           quantity=str(event.quantity), price=str(event.price))  # fmt: skip
            return
        if result.unknown_order:
            self.log.warning(
                "ledger.fill_for_unknown_order", message_id=event.id, client_order_id=event.client_order_id
            )
        if result.oversell is not None and result.status == "halted":
            # An alert: the books disagree with the exchange until the missing fills arrive.
            ledger_instruments().integrity_alerts.add(1, {"kind": "oversell", "symbol": event.symbol})
            self.log.error(
                "ledger.oversell",
                alert=True,
                symbol=event.symbol,
                message_id=event.id,
                trade_id=result.oversell.trade_id,
                held=str(result.oversell.held),
                delivered=str(result.oversell.delivered),
            )
        if result.resumed:
            self.log.warning("ledger.position_resumed", symbol=event.symbol, message_id=event.id)
        if result.status in ("applied", "halted"):
            report_fill(event, self.quote_asset, self.now_ns())

    async def on_book(self, book: BookSnapshot, delivery: Delivery) -> None:
        """Keep the latest mid per symbol (in memory; a restart waits for the next book)."""
        mark = mark_of(book)
        if mark is not None and newer(self.marks.get(book.symbol), mark):
            self.marks[book.symbol] = mark

    def mids(self) -> dict[str, Decimal]:
        """The latest mid per symbol."""
        return {symbol: mark.mid for symbol, mark in self.marks.items()}

    def _marks_key(self) -> frozenset[tuple[str, str]]:
        return frozenset((symbol, mark.book_id) for symbol, mark in self.marks.items())

    async def publish_snapshot(
        self, snapshot_id: str | None, *, cause: str, heartbeat: bool = False
    ) -> PortfolioSnapshot | None:
        """Read state, value it at the marks, record equity and publish; None if it could not be done now.

        `snapshot_id` None means "because marks moved": the id then derives from the last applied
        message and the books used.
        """
        marks = dict(self.marks)
        marks_key = self._marks_key()
        now = self.now_ns()
        floor = await self._floor()
        try:
            state = await self.store.state(exec_floor=floor, day_start_ns=day_start_ns(now, self.day_offset_minutes))
            valuation = value(state.positions, state.balances, {s: m.mid for s, m in marks.items()}, self.quote_asset)
            bot = bot_pnl(
                valuation,
                state.positions,
                previous_peak=state.bot_peak,
                day_start_pnl=state.day_start_bot_pnl,
                day_fees=state.day_fees,
            )
            if valuation.complete and not valuation.missing_marks:
                peak, drawdown = await self.store.record_equity(
                    valuation.equity, cause, now, marks=valuation.marks, bot_pnl=bot.pnl, bot_peak=bot.peak
                )
            else:
                # Without a price for every asset, equity is partial: do not let it move peak or drawdown.
                self.log.warning("ledger.unpriced_assets", assets=list(valuation.unpriced))
                peak = state.peak if state.peak is not None else valuation.equity
                drawdown = state.last_drawdown
        except StoreUnavailable as exc:
            self.dirty = True
            self.log.warning("ledger.snapshot_deferred", reason=str(exc), cause=cause)
            return None
        if heartbeat:
            snapshot_id = heartbeat_snapshot_id(self.account, state.exec_seq, now, self.heartbeat_ns)
        elif snapshot_id is None:
            snapshot_id = marks_snapshot_id(self.account, state.last_message_id, marks)
        snapshot = build_snapshot(
            snapshot_id=snapshot_id,
            ts_ns=now,
            account=self.account,
            quote_asset=self.quote_asset,
            positions=state.positions,
            balances=state.balances,
            valuation=valuation,
            peak=peak,
            drawdown=drawdown,
            fills=state.fills,
            last_fill_id=state.last_fill_id,
            halted=tuple(state.halted),
            exec_seq=state.exec_seq,
            exec_seqs_above=state.exec_seqs_above,
            bot=bot,
        )
        if state.quarantined:
            snapshot = msgspec.structs.replace(snapshot, quarantined=state.quarantined)
        try:
            await self.bus.publish(subjects.portfolio(self.account), snapshot)
        except Exception as exc:  # the change is committed; the revaluation loop publishes it later
            self.dirty = True
            self.log.warning("ledger.snapshot_publish_failed", error=f"{type(exc).__name__}: {exc}", cause=cause)
            return None
        self.dirty = False
        report_portfolio(snapshot)
        self.published_marks = marks_key
        self.last_published_ns = now
        if state.halted:
            self.log.warning("ledger.halted_symbols", symbols=sorted(state.halted))
        return snapshot

    async def _floor(self) -> int:
        if self.ack_floor is not None:
            try:
                self.known_floor = max(self.known_floor, await self.ack_floor())
            except Exception as exc:  # NATS slow or away: the last floor read is still a lower bound
                self.log.warning("ledger.ack_floor_unknown", error=f"{type(exc).__name__}: {exc}")
        return self.known_floor

    async def revalue(self) -> PortfolioSnapshot | None:
        """Publish a fresh snapshot if marks moved (or a publish failed) since the last one, or as a heartbeat
        when none was published for `heartbeat_ns`."""
        now = self.now_ns()
        due = self.last_published_ns is None or now - self.last_published_ns >= self.heartbeat_ns
        if due:
            return await self.publish_snapshot(None, cause="heartbeat", heartbeat=True)
        if not self.dirty and self.published_marks == self._marks_key():
            return None
        return await self.publish_snapshot(None, cause="marks")

    async def on_resume(self, command: ResumeSymbol, delivery: Delivery) -> None:
        """An operator asks to clear a symbol's integrity halt: only once the exchange confirms its assets."""
        symbol = command.symbol
        if self.resume_keys is not None and (problem := verify(command, self.resume_keys)) is not None:
            # Not from an operator key: refused with an alert, never retried (a new, signed command is needed).
            self.log.error("ledger.resume_unsigned", alert=True, symbol=symbol, operator=command.operator,
                           problem=problem, key_id=key_id_of(command), command_id=command.id)  # fmt: skip
            try:
                await self.store.record_alert(
                    "resume_unsigned", symbol, {"why": f"signature {problem}", "operator": command.operator,
                                                "command_id": command.id}, self.now_ns(),
                )  # fmt: skip
            except StoreUnavailable as exc:
                raise DependencyUnavailable(str(exc)) from exc
            return
        why = await self._resume(command)
        if why == _NOT_HALTED:
            self.log.info("ledger.resume_not_needed", symbol=symbol, operator=command.operator)
            return
        if why is None:
            self.log.warning("ledger.halt_resumed", symbol=symbol, operator=command.operator, reason=command.reason)
            await self.publish_snapshot(f"portfolio:{self.account}:resume:{command.id}", cause=f"resume:{command.id}")
            return
        self.log.error(
            "ledger.resume_refused",
            alert=True,
            symbol=symbol,
            operator=command.operator,
            why=why,
            command_id=command.id,
        )
        try:
            await self.store.record_alert(
                "resume_refused", symbol, {"why": why, "operator": command.operator, "command_id": command.id},
                self.now_ns(),
            )  # fmt: skip
        except StoreUnavailable as exc:
            raise DependencyUnavailable(str(exc)) from exc

    async def _resume(self, command: ResumeSymbol) -> str | None:
        try:
            base, quote = split_symbol(command.symbol)
        except ValueError as exc:
            return str(exc)
        try:
            state = await self.store.state()
        except StoreUnavailable as exc:
            raise DependencyUnavailable(str(exc)) from exc
        if command.symbol not in state.halted:
            return _NOT_HALTED
        if self.reconcile_assets is None:
            return "reconciliation with the exchange is off (no credentials or LEDGER_RECONCILE_INTERVAL=0)"
        mismatch, exchange = await self.reconcile_assets((base, quote))
        if mismatch is not None:
            return mismatch
        try:
            return await self.store.resume_symbol(
                command.symbol, exchange.get(base, Decimal(0)), f"resume:{command.operator}", self.now_ns()
            )
        except StoreUnavailable as exc:
            raise DependencyUnavailable(str(exc)) from exc
