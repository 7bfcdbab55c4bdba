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

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from btcbot.contracts import subjects
from btcbot.contracts.messages import (
    BookSnapshot,
    OrderAccepted,
    OrderCanceled,
    OrderFilled,
    OrderRejected,
    PortfolioSnapshot,
)
from btcbot.ledger.portfolio import (
    Mark,
    build_snapshot,
    change_snapshot_id,
    mark_of,
    marks_snapshot_id,
    newer,
)
from btcbot.ledger.positions import check_fill, fill_from_event, value
from btcbot.ledger.store import Origin, Store, StoreUnavailable
from btcbot.runtime.bus import Delivery, Publisher
from btcbot.runtime.errors import DependencyUnavailable, Poison

ExecutionEvent = OrderAccepted | OrderRejected | OrderCanceled | OrderFilled


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

    async def on_execution(self, event: ExecutionEvent, delivery: Delivery) -> None:
        """Apply one execution event exactly once; publish a snapshot when it moved the books."""
        origin = Origin(delivery.subject, delivery.stream, delivery.sequence)
        if isinstance(event, OrderFilled):
            try:
                check_fill(fill_from_event(event))
            except ValueError as exc:
                # Unbookable as sent (unknown quote asset, zero quantity ...): retrying cannot help.
                raise Poison(f"invalid fill {event.id}: {exc}") from exc
        try:
            if isinstance(event, OrderFilled):
                result = await self.store.apply_fill(event, origin, self.now_ns())
            else:
                applied = await self.store.apply_order_event(event, origin, self.now_ns())
                if not applied:
                    self.log.info("ledger.duplicate", message_id=event.id)
                return
        except StoreUnavailable as exc:
            raise DependencyUnavailable(str(exc)) from exc
        if result.unknown_order and result.changed:
            self.log.warning(
                "ledger.fill_for_unknown_order", message_id=event.id, client_order_id=event.client_order_id
            )
        if result.oversell is not None and result.status == "halted":
            # An alert: the books disagree with the exchange until the missing fills arrive.
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
        if not result.changed:
            self.log.info("ledger.duplicate", message_id=event.id, status=result.status)
            return
        await self.publish_snapshot(change_snapshot_id(self.account, event.id), cause=event.id)

    async def on_book(self, book: BookSnapshot, delivery: Delivery) -> None:
        """Keep the latest mid per symbol (in memory; a restart waits for the next book)."""
        mark = mark_of(book)
        if mark is not None and newer(self.marks.get(book.symbol), mark):
            self.marks[book.symbol] = mark

    def _marks_key(self) -> frozenset[tuple[str, str]]:
        return frozenset((symbol, mark.book_id) for symbol, mark in self.marks.items())

    async def publish_snapshot(self, snapshot_id: str | None, *, cause: str) -> PortfolioSnapshot | None:
        """Read state, value it at the marks, record equity and publish; None if it could not be done now.

        `snapshot_id` None means "because marks moved": the id then derives from the last applied
        message and the books used.
        """
        marks = dict(self.marks)
        marks_key = self._marks_key()
        now = self.now_ns()
        try:
            state = await self.store.state()
            valuation = value(state.positions, state.balances, {s: m.mid for s, m in marks.items()}, self.quote_asset)
            if valuation.complete:
                peak, drawdown = await self.store.record_equity(valuation.equity, cause, now)
            else:
                # Without a price for every asset, equity is partial: do not let it move peak or drawdown.
                self.log.warning("ledger.unpriced_assets", assets=list(valuation.unpriced))
                peak = state.peak if state.peak is not None else valuation.equity
                drawdown = state.last_drawdown
        except StoreUnavailable as exc:
            self.dirty = True
            self.log.warning("ledger.snapshot_deferred", reason=str(exc), cause=cause)
            return None
        if snapshot_id is None:
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
        )
        try:
            await self.bus.publish(subjects.portfolio(self.account), snapshot)
        except Exception as exc:  # the change is committed; the revaluation loop publishes it later
            self.dirty = True
            self.log.warning("ledger.snapshot_publish_failed", error=f"{type(exc).__name__}: {exc}", cause=cause)
            return None
        self.dirty = False
        self.published_marks = marks_key
        if state.halted:
            self.log.warning("ledger.halted_symbols", symbols=sorted(state.halted))
        return snapshot

    async def revalue(self) -> PortfolioSnapshot | None:
        """Publish a fresh snapshot if marks moved (or a publish failed) since the last one."""
        if not self.dirty and self.published_marks == self._marks_key():
            return None
        return await self.publish_snapshot(None, cause="marks")
