"""Decode, decide, publish: books become intents (or cancels); execution and ledger events update state."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from btcbot.contracts import subjects
from btcbot.contracts.messages import (
    BookSnapshot,
    CancelOrder,
    OrderAccepted,
    OrderCanceled,
    OrderDenied,
    OrderFilled,
    OrderIntent,
    OrderRejected,
    PortfolioSnapshot,
)
from btcbot.runtime.bus import Delivery, Publisher
from btcbot.runtime.metrics import BOOK_TO_INTENT, observe_stage
from btcbot.strategy.signals import Decision, Engine, Hold, OrderEvent

ExecutionEvent = OrderAccepted | OrderRejected | OrderCanceled | OrderFilled


@dataclass(frozen=True)
class History:
    """What a new owner of a symbol reads from the streams: recent intents and order events, and every fill of the
    symbol the EXECUTION stream held from `first` to `upto` with its stream sequence."""

    intents: Sequence[OrderIntent]
    events: Sequence[OrderEvent]
    first: int = 0
    upto: int = 0
    fills: Sequence[tuple[OrderFilled, int]] = ()


HistoryReader = Callable[[str], Awaitable[History]]


def _everything(symbol: str) -> bool:
    return True


class StrategyHandlers:
    """The strategy's consumers, sharing one engine; they act only on the symbols this replica `owns`.

    Books, execution events and denials reach every replica (fan-out); the owner of a symbol acts on them,
    the others drop them. Portfolio snapshots are kept by all, so a new owner knows the position already.
    """

    def __init__(
        self,
        engine: Engine,
        bus: Publisher,
        clock: Callable[[], int],
        account: str,
        log: Any,
        owns: Callable[[str], bool] = _everything,
        history: HistoryReader | None = None,
    ) -> None:
        self._engine = engine
        self._bus = bus
        self._clock = clock
        self._account = account
        self._log = log
        self._owns = owns
        self._history = history
        self._unknown: dict[str, str] = {}

    def set_owner(self, owns: Callable[[str], bool]) -> None:
        """Use this ownership test from now on (the leases are built after the handlers)."""
        self._owns = owns

    async def on_acquire(self, symbol: str) -> None:
        """This replica now owns `symbol`: rebuild what is in flight from recent history before acting."""
        if self._history is None:
            self._engine.reset(symbol)
            return
        history = await self._history(symbol)
        if history.upto:
            self._engine.read_history(symbol, history.first, history.upto, history.fills)
        inflight = self._engine.rebuild(symbol, history.intents, history.events, self._clock())
        self._log.info(
            "strategy.took_over",
            symbol=symbol,
            intents=len(history.intents),
            events=len(history.events),
            fills=len(history.fills),
            inflight=inflight.client_order_id if inflight is not None else None,
        )

    def start_at(self, sequence: int) -> None:
        """Our EXECUTION consumer delivers everything after `sequence`."""
        self._engine.start_at(sequence)
        self._log.info("strategy.execution_coverage", after=sequence)

    async def on_lose(self, symbol: str) -> None:
        """Another replica owns `symbol` now: forget its order state (nothing acts on it here any more)."""
        self._engine.reset(symbol)
        self._log.info("strategy.gave_up", symbol=symbol)

    async def on_book(self, book: BookSnapshot, delivery: Delivery) -> None:
        """Decide on a book and publish the intent or cancel it produced."""
        if not self._owns(book.symbol):
            return
        now_ns = self._clock()
        for decision in self._engine.decide(book, now_ns):
            await self._act(book, decision, now_ns)

    async def _act(self, book: BookSnapshot, decision: Decision, now_ns: int) -> None:
        """Publish one strategy's intent or cancel; log why it holds."""
        if isinstance(decision, Hold):
            if decision.reason.startswith("position unknown"):
                # Why we do not trade: worth an info line, once per change of reason and symbol.
                if self._unknown.get(book.symbol) != decision.reason:
                    self._unknown[book.symbol] = decision.reason
                    self._log.info("strategy.position_unknown", symbol=book.symbol, reason=decision.reason)
            else:
                if self._unknown.pop(book.symbol, None) is not None:
                    self._log.info("strategy.position_known", symbol=book.symbol)
                self._log.debug("strategy.hold", symbol=book.symbol, book_id=book.id, reason=decision.reason)
            return
        if self._unknown.pop(book.symbol, None) is not None:
            self._log.info("strategy.position_known", symbol=book.symbol)
        if isinstance(decision, OrderIntent):
            try:
                await self._bus.publish(subjects.intent(decision.symbol), decision)
            except BaseException:
                self._engine.forget(decision)
                raise
            observe_stage(BOOK_TO_INTENT, book.received_ts_ns, now_ns)
            self._log.info(
                "strategy.intent",
                intent_id=decision.id,
                strategy=decision.strategy,
                symbol=decision.symbol,
                side=decision.side,
                price=str(decision.price),
                quantity=str(decision.quantity),
                reason=decision.reason,
            )
            return
        await self._send_cancel(decision)

    async def _send_cancel(self, cancel: CancelOrder) -> None:
        try:
            await self._bus.publish(subjects.cancel(cancel.symbol), cancel)
        except BaseException:
            self._engine.cancel_not_sent(cancel)
            raise
        self._log.info(
            "strategy.cancel", client_order_id=cancel.client_order_id, symbol=cancel.symbol, reason=cancel.reason
        )

    async def on_execution(self, event: ExecutionEvent, delivery: Delivery) -> None:
        """Count fills in the position (every symbol, owned or not) and track the order in flight."""
        if not self._engine.on_execution_seen(delivery.sequence):
            self._log.warning("strategy.execution_gap", sequence=delivery.sequence)
        if isinstance(event, OrderFilled) and self._engine.saw_fill(event, delivery.sequence):
            self._log.info(
                "strategy.fill_seen",
                symbol=event.symbol,
                side=event.side,
                quantity=str(event.quantity),
                sequence=delivery.sequence,
                client_order_id=event.client_order_id,
            )
        if not self._owns(event.symbol):
            return
        now = self._clock()
        if isinstance(event, OrderAccepted):
            matched = self._engine.on_accepted(event)
        elif isinstance(event, OrderRejected):
            matched = self._engine.on_rejected(event, now)
        elif isinstance(event, OrderCanceled):
            matched = self._engine.on_canceled(event, now)
        else:
            matched = self._engine.on_filled(event, now)
        if matched:
            self._log.info(
                "strategy.execution",
                kind=type(event).__name__,
                client_order_id=event.client_order_id,
                symbol=event.symbol,
            )

    async def on_denied(self, event: OrderDenied, delivery: Delivery) -> None:
        """Risk refused one of our intents: free the symbol for the next decision."""
        if not self._owns(event.symbol):
            return
        if self._engine.on_denied(event, self._clock()):
            self._log.info("strategy.denied", intent_id=event.intent_id, symbol=event.symbol, reason=event.reason)

    async def on_portfolio(self, snapshot: PortfolioSnapshot, delivery: Delivery) -> None:
        """Take positions from this account's ledger snapshots."""
        if snapshot.account != self._account:
            return
        self._engine.on_portfolio(snapshot)
