"""profit_v1: buy when flat and the spread is tight, sell the whole position at a small profit.

Per symbol the strategy knows its position (the ledger's last PortfolioSnapshot plus the fills it saw after that
snapshot's watermark, see positions.py), the order it has in flight (from execution events) and when it last
sent an intent. When it cannot know the position it holds, and says why. It decides on each book and returns one
decision: an OrderIntent, a CancelOrder for an order resting too long, or a Hold that says why not.
Everything here is synchronous and takes the time as an argument, so replay runs the same code.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from decimal import ROUND_DOWN, Decimal

from btcbot.contracts import ids
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
    Side,
)
from btcbot.contracts.signing import UNSIGNED
from btcbot.strategy.orders import InFlight
from btcbot.strategy.positions import Known, PositionBook, Unknown

STRATEGY = "profit_v1"
_BPS = Decimal(10_000)
_ZERO = Decimal(0)


@dataclass(frozen=True)
class ProfitParams:
    """Tunable limits of profit_v1 (money in the quote asset, times in ns)."""

    order_notional: Decimal = Decimal(1000)
    max_order_notional: Decimal = Decimal(5000)
    max_spread_bps: Decimal = Decimal(30)
    take_profit_bps: Decimal = Decimal(5)
    stop_loss_bps: Decimal | None = None
    dust_notional: Decimal = Decimal(100)
    cooldown_ns: int = 2_000_000_000
    intent_timeout_ns: int = 15_000_000_000
    order_ttl_ns: int = 60_000_000_000
    max_drift_bps: Decimal | None = Decimal(50)
    max_book_age_ns: int = 5_000_000_000
    quantity_scale: int = 8
    require_portfolio: bool = True


@dataclass(frozen=True)
class Hold:
    """No action on this book, and why."""

    reason: str


Decision = OrderIntent | CancelOrder | Hold
OrderEvent = OrderAccepted | OrderRejected | OrderCanceled | OrderFilled | OrderDenied


@dataclass
class SymbolState:
    """What the strategy knows about one symbol."""

    quantity: Decimal = _ZERO
    avg_cost: Decimal = _ZERO
    inflight: InFlight | None = None
    last_intent_ns: int | None = None


def round_down(quantity: Decimal, scale: int) -> Decimal:
    """`quantity` truncated to `scale` decimals."""
    return quantity.quantize(Decimal(1).scaleb(-scale), rounding=ROUND_DOWN)


def spread_bps(bid: Decimal, ask: Decimal) -> Decimal:
    """Spread relative to the mid price, in basis points."""
    mid = (bid + ask) / 2
    return (ask - bid) / mid * _BPS


class ProfitV1:
    """The profit_v1 decision engine for a set of symbols."""

    def __init__(self, symbols: tuple[str, ...], params: ProfitParams, *, track_fills: bool = False) -> None:
        """`track_fills`: the live service, whose EXECUTION consumer reports every stream sequence (see
        positions.py). Without it (a replay that has no stream sequences) the position is the last snapshot's."""
        self.params = params
        self.symbols = symbols
        self._states: dict[str, SymbolState] = {s: SymbolState() for s in symbols}
        self.book = PositionBook(symbols)
        self.track_fills = track_fills

    def state(self, symbol: str) -> SymbolState:
        """The state of one configured symbol (KeyError for others)."""
        return self._states[symbol]

    # -- inputs -----------------------------------------------------------------------------------------

    def on_portfolio(self, snapshot: PortfolioSnapshot) -> bool:
        """Take a ledger snapshot; one reflecting less of the EXECUTION stream than the last is ignored."""
        if not self.book.on_snapshot(snapshot):
            return False
        if not self.track_fills:
            self._refresh_all()
        return True

    def on_execution_seen(self, sequence: int) -> bool:
        """Every EXECUTION delivery's stream sequence (whatever its symbol); False when it reveals a gap."""
        return self.book.on_sequence(sequence)

    def start_at(self, sequence: int) -> None:
        """Our EXECUTION consumer delivers everything after `sequence` (its ack floor when we started)."""
        self.book.start_at(sequence)

    def saw_fill(self, event: OrderFilled, sequence: int) -> bool:
        """A fill at `sequence` (of any owner): it counts in the position until a snapshot reflects it."""
        return self.book.on_fill(event, sequence)

    def position(self, symbol: str) -> Known | Unknown:
        """The bot's own position in `symbol` now, or why it is not known."""
        if not self.track_fills:
            snapshot = self.book.snapshot
            if snapshot is None:
                if self.params.require_portfolio:
                    return Unknown("NO_SNAPSHOT", "no portfolio snapshot yet")
                return Known(_ZERO, _ZERO)
            held = next((p for p in snapshot.positions if p.symbol == symbol), None)
            if held is None:
                return Known(_ZERO, _ZERO)
            return Known(held.quantity - held.opening_quantity, held.avg_cost)
        return self.book.position(symbol)

    def _refresh_all(self) -> None:
        for symbol, state in self._states.items():
            known = self.position(symbol)
            if isinstance(known, Known):
                state.quantity, state.avg_cost = known.quantity, known.avg_cost

    def on_accepted(self, event: OrderAccepted) -> bool:
        """The exchange took our order: it may now rest, so it no longer expires."""
        inflight = self._inflight(event.symbol, event.client_order_id)
        if inflight is None:
            return False
        inflight.accepted = True
        return True

    def on_rejected(self, event: OrderRejected, now_ns: int) -> bool:
        """The order was refused: nothing in flight any more (unless the refusal was of a forged command)."""
        if event.reason == UNSIGNED:
            # Execution refused a command risk did not sign: whoever sent it chose the id; ours is still in flight.
            return False
        return self._finish(event.symbol, event.client_order_id, now_ns)

    def on_denied(self, event: OrderDenied, now_ns: int) -> bool:
        """Risk refused the intent: nothing in flight any more (the cooldown still applies)."""
        return self._finish(event.symbol, ids.client_order_id(event.intent_id), now_ns)

    def on_canceled(self, event: OrderCanceled, now_ns: int) -> bool:
        """The order left the book: nothing in flight any more."""
        inflight = self._inflight(event.symbol, event.client_order_id)
        if inflight is not None and event.filled_quantity > inflight.filled:
            inflight.filled = event.filled_quantity
        return self._finish(event.symbol, event.client_order_id, now_ns)

    def on_filled(self, event: OrderFilled, now_ns: int) -> bool:
        """One fill of our order; the order is done when filled completely."""
        inflight = self._inflight(event.symbol, event.client_order_id)
        if inflight is None:
            return False
        if inflight.add_fill(event.trade_id, event.quantity):
            self._finish(event.symbol, event.client_order_id, now_ns)
        return True

    def forget(self, intent: OrderIntent) -> None:
        """Undo an intent that could not be published, so the next book may try again."""
        state = self._states.get(intent.symbol)
        if state is not None and state.inflight is not None and state.inflight.intent_id == intent.id:
            state.inflight = None
            state.last_intent_ns = None

    def cancel_not_sent(self, cancel: CancelOrder) -> None:
        """Undo a cancel that could not be published, so the next book asks again."""
        inflight = self._inflight(cancel.symbol, cancel.client_order_id)
        if inflight is not None:
            inflight.cancel_requested = False

    def reset(self, symbol: str) -> None:
        """Forget what is in flight for `symbol` (ownership moved); the position from the ledger stays."""
        state = self._states.get(symbol)
        if state is not None:
            self._states[symbol] = SymbolState(quantity=state.quantity, avg_cost=state.avg_cost)

    def read_history(self, symbol: str, first: int, last: int, fills: Iterable[tuple[OrderFilled, int]]) -> None:
        """Every fill of `symbol` the EXECUTION stream held from `first` to `last`, with its sequence (a takeover)."""
        self.book.read_history(symbol, first, last, fills)

    def rebuild(
        self, symbol: str, intents: Iterable[OrderIntent], events: Iterable[OrderEvent], now_ns: int
    ) -> InFlight | None:
        """Take over `symbol` from another replica: the order in flight from recent intents and their outcomes.

        The latest intent of this strategy is the candidate (one order at a time per symbol); its execution and
        denial events, in time order, then play through the same code as live ones.
        """
        self.reset(symbol)
        state = self._states.get(symbol)
        ours = [i for i in intents if i.symbol == symbol and i.strategy == STRATEGY]
        if state is None or not ours:
            return None
        latest = max(ours, key=lambda i: i.ts_ns)
        state.last_intent_ns = latest.ts_ns
        state.inflight = InFlight(
            intent_id=latest.id,
            client_order_id=ids.client_order_id(latest.id),
            side=latest.side,
            quantity=latest.quantity,
            sent_ns=latest.ts_ns,
            price=latest.price,
        )
        for event in sorted(events, key=lambda e: e.ts_ns):
            if event.symbol != symbol:
                continue
            if isinstance(event, OrderAccepted):
                self.on_accepted(event)
            elif isinstance(event, OrderFilled):
                self.on_filled(event, event.ts_ns)
            elif isinstance(event, OrderCanceled):
                self.on_canceled(event, event.ts_ns)
            elif isinstance(event, OrderRejected):
                self.on_rejected(event, event.ts_ns)
            else:
                self.on_denied(event, event.ts_ns)
        inflight = state.inflight
        if inflight is not None and inflight.expired(now_ns, self.params.intent_timeout_ns):
            state.inflight = None
        return state.inflight

    # -- decision ---------------------------------------------------------------------------------------

    def on_book(self, book: BookSnapshot, now_ns: int) -> Decision:
        """Decide on one book: an intent, a cancel of a stale order, or a reasoned hold."""
        state = self._states.get(book.symbol)
        if state is None:
            return Hold(f"{book.symbol} is not traded by this strategy")
        p = self.params
        pending = self._pending(book, state, now_ns)
        if pending is not None:
            return pending
        if book.stale or now_ns - book.exchange_ts_ns > p.max_book_age_ns:
            return Hold("book is stale")
        if not book.bids or not book.asks:
            return Hold("book is empty on one side")
        known = self.position(book.symbol)
        if isinstance(known, Unknown):
            return Hold(f"position unknown ({known.code}): {known.detail}")
        state.quantity, state.avg_cost = known.quantity, known.avg_cost
        if state.last_intent_ns is not None and now_ns - state.last_intent_ns < p.cooldown_ns:
            return Hold("cooling down after the last intent")
        bid, ask = book.bids[0].price, book.asks[0].price
        if ask <= bid:
            return Hold(f"crossed book: bid {bid} >= ask {ask}")
        if state.quantity * bid < p.dust_notional:
            return self._entry(book, state, bid, ask, now_ns)
        return self._exit(book, state, bid, now_ns)

    def _pending(self, book: BookSnapshot, state: SymbolState, now_ns: int) -> Decision | None:
        inflight = state.inflight
        if inflight is None:
            return None
        p = self.params
        if inflight.expired(now_ns, p.intent_timeout_ns):
            state.inflight = None
            return None
        if inflight.heard_back and not inflight.cancel_requested:
            reason = None
            if now_ns - inflight.sent_ns >= p.order_ttl_ns:
                reason = "ttl"
            elif (drift := self._drift_bps(book, inflight)) is not None and drift > (p.max_drift_bps or Decimal(0)):
                reason = "drift"
            if reason is not None:
                # A replacement waits for the cancel's confirmation: the symbol stays in flight until then.
                inflight.cancel_requested = True
                return CancelOrder(
                    id=ids.cancel_command_id(inflight.client_order_id, reason),
                    ts_ns=now_ns,
                    client_order_id=inflight.client_order_id,
                    symbol=book.symbol,
                    reason=reason,
                    requested_by=STRATEGY,
                )
        return Hold(f"order {inflight.client_order_id} in flight")

    def _drift_bps(self, book: BookSnapshot, inflight: InFlight) -> Decimal | None:
        """How far a resting order's price is from the mid, in bps (None without a price, a book or a limit)."""
        if self.params.max_drift_bps is None or inflight.price is None or book.stale or not book.bids or not book.asks:
            return None
        mid = (book.bids[0].price + book.asks[0].price) / 2
        if mid <= 0:
            return None
        return abs(inflight.price - mid) / mid * _BPS

    def _entry(self, book: BookSnapshot, state: SymbolState, bid: Decimal, ask: Decimal, now_ns: int) -> Decision:
        p = self.params
        spread = spread_bps(bid, ask)
        if spread > p.max_spread_bps:
            return Hold(f"flat, spread {spread:.2f}bps > {p.max_spread_bps}bps")
        quantity = round_down(p.order_notional / ask, p.quantity_scale)
        if quantity <= 0:
            return Hold(f"order notional {p.order_notional} buys nothing at {ask}")
        reason = f"entry: flat, spread {spread:.2f}bps <= {p.max_spread_bps}bps, buy {p.order_notional} at ask"
        return self._intent(book, state, "buy", ask, quantity, reason, now_ns)

    def _exit(self, book: BookSnapshot, state: SymbolState, bid: Decimal, now_ns: int) -> Decision:
        p = self.params
        # A position bigger than one order may carry is sold in slices, so risk's size limit cannot wedge us.
        quantity = round_down(min(state.quantity, p.max_order_notional / bid), p.quantity_scale)
        if state.avg_cost <= 0 or quantity <= 0:
            return Hold("holding a position without a cost basis")
        target = state.avg_cost * (1 + p.take_profit_bps / _BPS)
        if bid >= target:
            reason = f"take profit: bid {bid} >= avg cost {state.avg_cost} + {p.take_profit_bps}bps"
            return self._intent(book, state, "sell", bid, quantity, reason, now_ns)
        if p.stop_loss_bps is not None:
            floor = state.avg_cost * (1 - p.stop_loss_bps / _BPS)
            if bid <= floor:
                reason = f"stop loss: bid {bid} <= avg cost {state.avg_cost} - {p.stop_loss_bps}bps"
                return self._intent(book, state, "sell", bid, quantity, reason, now_ns)
        return Hold(f"holding, bid {bid} below take-profit {target:.8f}")

    def _intent(
        self,
        book: BookSnapshot,
        state: SymbolState,
        side: Side,
        price: Decimal,
        quantity: Decimal,
        reason: str,
        now_ns: int,
    ) -> OrderIntent:
        intent = OrderIntent(
            id=ids.intent_id(STRATEGY, book.symbol, book.id),
            ts_ns=now_ns,
            strategy=STRATEGY,
            symbol=book.symbol,
            side=side,
            order_type="limit",
            price=price,
            quantity=quantity,
            reason=reason,
            book_id=book.id,
            reduce_only=side == "sell",
            book_ts_ns=book.received_ts_ns,
        )
        state.inflight = InFlight(
            intent_id=intent.id,
            client_order_id=ids.client_order_id(intent.id),
            side=side,
            quantity=quantity,
            sent_ns=now_ns,
            price=price,
        )
        state.last_intent_ns = now_ns
        return intent

    # -- bookkeeping ------------------------------------------------------------------------------------

    def _inflight(self, symbol: str, client_order_id: str) -> InFlight | None:
        state = self._states.get(symbol)
        if state is None or state.inflight is None:
            return None
        if state.inflight.client_order_id != client_order_id:
            return None
        return state.inflight

    def _finish(self, symbol: str, client_order_id: str, now_ns: int) -> bool:
        inflight = self._inflight(symbol, client_order_id)
        if inflight is None:
            return False
        self._states[symbol].inflight = None
        return True
