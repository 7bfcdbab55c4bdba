"""The strategy engine: runs the configured strategies (api.py plug-ins) over books, fills and snapshots.

Per strategy and symbol the engine keeps the order in flight (from execution events) and when it last sent an
intent; per symbol it knows the account's position (the ledger's last PortfolioSnapshot plus the fills seen
after that snapshot's watermark, see positions.py) and, with several strategies, which part each one holds
(attribution.py: a strategy never sells another's). On each book it asks every strategy for proposals, rounds
them to the symbol's exchange rules (no rules: nothing is sent) and returns one decision per strategy: an
OrderIntent (its id carries the strategy's name), a CancelOrder for an order resting too long, or a Hold.
Everything here is synchronous and takes the time as an argument, so replay runs the same code.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from decimal import ROUND_DOWN, Decimal

from btcbot.btcturk.rulebook import SymbolRules
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
)
from btcbot.contracts.signing import UNSIGNED
from btcbot.strategy.api import BookContext, Holding, Proposal, Strategy
from btcbot.strategy.attribution import Attribution
from btcbot.strategy.orders import InFlight
from btcbot.strategy.positions import Known, PositionBook, Unknown
from btcbot.strategy.sizing import Sized, fit, free_quote, share
from btcbot.strategy.strategies.profit_v1 import NAME as PROFIT_V1
from btcbot.strategy.strategies.profit_v1 import ProfitV1 as ProfitV1Rules
from btcbot.strategy.strategies.profit_v1 import ProfitV1Params

STRATEGY = PROFIT_V1
_BPS = Decimal(10_000)
_ZERO = Decimal(0)
# Used only when no rule source is given at all (a replay without exchangeinfo): 8 decimals, no minimum.
_LENIENT = SymbolRules(symbol="*", trading=True, price_scale=8, quantity_scale=8)


@dataclass(frozen=True)
class ProfitParams:
    """The engine's limits (times in ns) and profit_v1's knobs (money in the quote asset), defaults the
    original bot's: entry min(free quote, 100) when the spread <= 1 %, sell 25 % at +30 bps."""

    order_notional: Decimal = Decimal(100)
    max_order_notional: Decimal = Decimal(5000)
    max_spread_bps: Decimal = Decimal(100)
    take_profit_bps: Decimal = Decimal(30)
    sell_fraction: Decimal = Decimal("0.25")
    stop_loss_bps: Decimal | None = None
    dust_notional: Decimal | None = None
    cooldown_ns: int = 2_000_000_000
    intent_timeout_ns: int = 15_000_000_000
    order_ttl_ns: int = 60_000_000_000
    max_drift_bps: Decimal | None = Decimal(50)
    max_book_age_ns: int = 5_000_000_000
    require_portfolio: bool = True

    def profit_v1(self) -> ProfitV1Params:
        """profit_v1's own parameters."""
        return ProfitV1Params(
            order_notional=self.order_notional,
            max_order_notional=self.max_order_notional,
            max_spread_bps=self.max_spread_bps,
            take_profit_bps=self.take_profit_bps,
            sell_fraction=self.sell_fraction,
            stop_loss_bps=self.stop_loss_bps,
            dust_notional=self.dust_notional,
        )


@dataclass(frozen=True)
class Slot:
    """One strategy the engine runs, with its share of the account."""

    name: str
    strategy: Strategy
    weight: Decimal = Decimal(1)
    capital: Decimal | None = None


@dataclass(frozen=True)
class Hold:
    """No action on this book, and why."""

    reason: str


Decision = OrderIntent | CancelOrder | Hold
OrderEvent = OrderAccepted | OrderRejected | OrderCanceled | OrderFilled | OrderDenied
RuleSource = Callable[[str], SymbolRules | None]


@dataclass
class SymbolState:
    """What the engine knows about one strategy's orders in one symbol."""

    quantity: Decimal = _ZERO
    avg_cost: Decimal = _ZERO
    inflight: InFlight | None = None
    last_intent_ns: int | None = None
    queued: list[Proposal] = field(default_factory=list)


def round_down(quantity: Decimal, scale: int) -> Decimal:
    """`quantity` truncated to `scale` decimals."""
    return quantity.quantize(Decimal(1).scaleb(-scale), rounding=ROUND_DOWN)


def spread_bps(bid: Decimal, ask: Decimal) -> Decimal:
    """Spread relative to the mid price, in basis points."""
    mid = (bid + ask) / 2
    return (ask - bid) / mid * _BPS


class Engine:
    """The decision engine for a set of symbols and strategies."""

    def __init__(
        self,
        symbols: tuple[str, ...],
        params: ProfitParams,
        *,
        track_fills: bool = False,
        slots: Sequence[Slot] | None = None,
        rules: RuleSource | None = None,
    ) -> None:
        """`track_fills`: the live service, whose EXECUTION consumer reports every stream sequence (see
        positions.py). Without it (a replay that has no stream sequences) the position is the last snapshot's.
        `slots`: the strategies (default: profit_v1 with `params`). `rules`: the exchange rules by symbol; the
        service always passes them (a symbol without rules is never traded); None means lenient rules."""
        self.params = params
        self.symbols = symbols
        self.slots = tuple(slots) if slots else (Slot(PROFIT_V1, ProfitV1Rules(params.profit_v1())),)
        names = [s.name for s in self.slots]
        if len(set(names)) != len(names):
            raise ValueError(f"strategy names repeat: {names}")
        self._rules = rules
        self._states: dict[tuple[str, str], SymbolState] = {
            (slot.name, s): SymbolState() for slot in self.slots for s in symbols
        }
        self.book = PositionBook(symbols)
        self.attribution = Attribution()
        self.marks: dict[str, Decimal] = {}
        self.track_fills = track_fills

    def state(self, symbol: str, strategy: str | None = None) -> SymbolState:
        """The state of one configured symbol for a strategy (the first by default; KeyError for others)."""
        return self._states[(strategy or self.slots[0].name, symbol)]

    def _slot_states(self, symbol: str) -> Iterable[tuple[Slot, SymbolState]]:
        for slot in self.slots:
            state = self._states.get((slot.name, symbol))
            if state is not None:
                yield slot, state

    # -- inputs -----------------------------------------------------------------------------------------

    def on_portfolio(self, snapshot: PortfolioSnapshot) -> bool:
        """Take a ledger snapshot; one reflecting less of the EXECUTION stream than the last is ignored."""
        if not self.book.on_snapshot(snapshot):
            return False
        if not self.track_fills:
            self._refresh_all()
        for slot in self.slots:
            self._queue(slot, slot.strategy.on_portfolio(snapshot, snapshot.ts_ns))
        return True

    def on_execution_seen(self, sequence: int) -> bool:
        """Every EXECUTION delivery's stream sequence (whatever its symbol); False when it reveals a gap."""
        return self.book.on_sequence(sequence)

    def start_at(self, sequence: int) -> None:
        """Our EXECUTION consumer delivers everything after `sequence` (its ack floor when we started)."""
        self.book.start_at(sequence)

    def saw_fill(self, event: OrderFilled, sequence: int) -> bool:
        """A fill at `sequence` (of any owner): it counts in the position until a snapshot reflects it."""
        if event.symbol in self.book.symbols:
            self.attribution.add(event)
        return self.book.on_fill(event, sequence)

    def position(self, symbol: str) -> Known | Unknown:
        """The account's (bot's own) position in `symbol` now, or why it is not known."""
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

    def holding(self, slot: Slot, symbol: str, known: Known) -> Holding:
        """What `slot` may count as its own in `symbol`: the whole position when it runs alone, else its own
        fills' (never more than the account holds)."""
        if len(self.slots) == 1:
            return Holding(known.quantity, known.avg_cost) if known.quantity > 0 else Holding()
        own = self.attribution.holding(slot.name, symbol)
        quantity = min(own.quantity, known.quantity)
        return Holding(quantity, own.avg_cost) if quantity > 0 else Holding()

    def _refresh_all(self) -> None:
        for symbol in self.symbols:
            known = self.position(symbol)
            if isinstance(known, Known):
                for slot, state in self._slot_states(symbol):
                    held = self.holding(slot, symbol, known)
                    state.quantity, state.avg_cost = held.quantity, held.avg_cost

    def on_accepted(self, event: OrderAccepted) -> bool:
        """The exchange took our order: it may now rest, so it no longer expires."""
        found = self._inflight(event.symbol, event.client_order_id)
        if found is None:
            return False
        found[1].accepted = True
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
        found = self._inflight(event.symbol, event.client_order_id)
        if found is not None and event.filled_quantity > found[1].filled:
            found[1].filled = event.filled_quantity
        return self._finish(event.symbol, event.client_order_id, now_ns)

    def on_filled(self, event: OrderFilled, now_ns: int) -> bool:
        """One fill of our order; the order is done when filled completely."""
        if not self.track_fills and event.symbol in self.book.symbols:
            self.attribution.add(event)
        found = self._inflight(event.symbol, event.client_order_id)
        if found is None:
            return False
        slot, inflight = found
        self._queue(slot, slot.strategy.on_fill(event, now_ns))
        if inflight.add_fill(event.trade_id, event.quantity):
            self._finish(event.symbol, event.client_order_id, now_ns)
        return True

    def forget(self, intent: OrderIntent) -> None:
        """Undo an intent that could not be published, so the next book may try again."""
        state = self._states.get((intent.strategy, intent.symbol))
        if state is not None and state.inflight is not None and state.inflight.intent_id == intent.id:
            state.inflight = None
            state.last_intent_ns = None

    def cancel_not_sent(self, cancel: CancelOrder) -> None:
        """Undo a cancel that could not be published, so the next book asks again."""
        found = self._inflight(cancel.symbol, cancel.client_order_id)
        if found is not None:
            found[1].cancel_requested = False

    def reset(self, symbol: str) -> None:
        """Forget what is in flight for `symbol` (ownership moved); the position from the ledger stays."""
        for slot, state in list(self._slot_states(symbol)):
            self._states[(slot.name, symbol)] = SymbolState(quantity=state.quantity, avg_cost=state.avg_cost)

    def read_history(self, symbol: str, first: int, last: int, fills: Iterable[tuple[OrderFilled, int]]) -> None:
        """Every fill of `symbol` the EXECUTION stream held from `first` to `last`, with its sequence (a takeover)."""
        fills = list(fills)
        for event, _ in fills:
            if event.symbol == symbol:
                self.attribution.add(event)
        self.book.read_history(symbol, first, last, fills)

    def rebuild(
        self, symbol: str, intents: Iterable[OrderIntent], events: Iterable[OrderEvent], now_ns: int
    ) -> InFlight | None:
        """Take over `symbol` from another replica: each strategy's order in flight from recent intents and
        their outcomes (its latest intent; its events, in time order, through the same code as live ones).
        Returns the first strategy's order in flight."""
        self.reset(symbol)
        intents = list(intents)
        for slot, state in self._slot_states(symbol):
            ours = [i for i in intents if i.symbol == symbol and i.strategy == slot.name]
            if not ours:
                continue
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
        for _, state in self._slot_states(symbol):
            inflight = state.inflight
            if inflight is not None and inflight.expired(now_ns, self.params.intent_timeout_ns):
                state.inflight = None
        first = self._states.get((self.slots[0].name, symbol))
        return first.inflight if first is not None else None

    # -- decision ---------------------------------------------------------------------------------------

    def on_book(self, book: BookSnapshot, now_ns: int) -> Decision:
        """One decision on a book: the first intent or cancel of any strategy, else the first hold."""
        decisions = self.decide(book, now_ns)
        return next((d for d in decisions if not isinstance(d, Hold)), decisions[0])

    def decide(self, book: BookSnapshot, now_ns: int) -> list[Decision]:
        """One decision per strategy on a book: an intent, a cancel of a stale order, or a reasoned hold."""
        if (self.slots[0].name, book.symbol) not in self._states:
            return [Hold(f"{book.symbol} is not traded by this strategy")]
        if book.bids and book.asks and book.bids[0].price < book.asks[0].price:
            self.marks[book.symbol] = (book.bids[0].price + book.asks[0].price) / 2
        out: list[Decision] = []
        gate = self._gate(book, now_ns)
        for slot, state in self._slot_states(book.symbol):
            pending = self._pending(book, state, slot.name, now_ns)
            if isinstance(gate, Hold):
                out.append(pending if pending is not None else gate)
                continue
            rules, known = gate
            ctx = self._context(slot, book, rules, known, now_ns)
            proposals = [*self._take_queued(state, book.symbol), *slot.strategy.on_book(ctx)]
            if pending is not None:
                out.append(pending)  # the strategy saw the book (its indicators), but one order at a time
            elif state.last_intent_ns is not None and now_ns - state.last_intent_ns < self.params.cooldown_ns:
                out.append(Hold("cooling down after the last intent"))
            else:
                out.append(self._first_sendable(slot, state, ctx, proposals))
        return out

    def _gate(self, book: BookSnapshot, now_ns: int) -> Hold | tuple[SymbolRules, Known]:
        """Why no strategy may act on this book, or the rules and position they act on."""
        if book.stale or now_ns - book.exchange_ts_ns > self.params.max_book_age_ns:
            return Hold("book is stale")
        if not book.bids or not book.asks:
            return Hold("book is empty on one side")
        rules = _LENIENT if self._rules is None else self._rules(book.symbol)
        if rules is None:
            return Hold(f"no exchange rules for {book.symbol} (exchangeinfo not loaded or the pair not listed)")
        if not rules.trading:
            return Hold(f"{book.symbol} is not trading at the exchange")
        known = self.position(book.symbol)
        if isinstance(known, Unknown):
            return Hold(f"position unknown ({known.code}): {known.detail}")
        bid, ask = book.bids[0].price, book.asks[0].price
        if ask <= bid:
            return Hold(f"crossed book: bid {bid} >= ask {ask}")
        return rules, known

    def _context(self, slot: Slot, book: BookSnapshot, rules: SymbolRules, known: Known, now_ns: int) -> BookContext:
        holdings: dict[str, Holding] = {}
        for symbol in self.symbols:
            other = known if symbol == book.symbol else self.position(symbol)
            holdings[symbol] = self.holding(slot, symbol, other) if isinstance(other, Known) else Holding()
        holding = holdings[book.symbol]
        state = self._states[(slot.name, book.symbol)]
        state.quantity, state.avg_cost = holding.quantity, holding.avg_cost
        return BookContext(
            book=book,
            now_ns=now_ns,
            rules=rules,
            holding=holding,
            cash=self.cash(slot, holdings),
            holdings=holdings,
            marks=dict(self.marks),
        )

    def cash(self, slot: Slot, holdings: dict[str, Holding]) -> Decimal:
        """Quote `slot` may spend now (sizing.py)."""
        committed: list[Decimal] = []
        for symbol in self.symbols:
            committed += [f.price * f.quantity + f.quote_charge for f in self.book.pending(symbol) if f.side == "buy"]
        for state in self._states.values():
            inflight = state.inflight
            if inflight is not None and inflight.side == "buy" and inflight.price is not None:
                committed.append((inflight.quantity - inflight.filled) * inflight.price)
        free = free_quote(self.book.snapshot, committed)
        total_weight = sum((s.weight for s in self.slots), _ZERO)
        return share(free, slot.weight, total_weight, slot.capital, holdings)

    def _first_sendable(self, slot: Slot, state: SymbolState, ctx: BookContext, proposals: list[Proposal]) -> Decision:
        if not proposals:
            return Hold(f"{slot.name}: nothing to do")
        reasons: list[str] = []
        for proposal in proposals:
            if proposal.symbol != ctx.book.symbol:
                self._queue(slot, (proposal,))
                continue
            sized = fit(ctx, proposal)
            if isinstance(sized, str):
                reasons.append(f"{slot.name}: {sized}")
                continue
            return self._intent(slot, ctx.book, state, sized, proposal.reason, ctx.now_ns)
        return Hold("; ".join(reasons) or f"{slot.name}: proposals for other symbols queued")

    def _queue(self, slot: Slot, proposals: Iterable[Proposal]) -> None:
        for proposal in proposals:
            state = self._states.get((slot.name, proposal.symbol))
            if state is not None:
                state.queued.append(proposal)

    def _take_queued(self, state: SymbolState, symbol: str) -> list[Proposal]:
        queued, state.queued = state.queued, []
        return [p for p in queued if p.symbol == symbol]

    def _pending(self, book: BookSnapshot, state: SymbolState, strategy: str, now_ns: int) -> Decision | None:
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
                    requested_by=strategy,
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

    def _intent(
        self,
        slot: Slot,
        book: BookSnapshot,
        state: SymbolState,
        sized: Sized,
        reason: str,
        now_ns: int,
    ) -> OrderIntent:
        side, price, quantity = sized.side, sized.price, sized.quantity
        intent = OrderIntent(
            id=ids.intent_id(slot.name, book.symbol, book.id),
            ts_ns=now_ns,
            strategy=slot.name,
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
            side=intent.side,
            quantity=quantity,
            sent_ns=now_ns,
            price=price,
        )
        state.last_intent_ns = now_ns
        return intent

    # -- bookkeeping ------------------------------------------------------------------------------------

    def _inflight(self, symbol: str, client_order_id: str) -> tuple[Slot, InFlight] | None:
        for slot, state in self._slot_states(symbol):
            if state.inflight is not None and state.inflight.client_order_id == client_order_id:
                return slot, state.inflight
        return None

    def _finish(self, symbol: str, client_order_id: str, now_ns: int) -> bool:
        found = self._inflight(symbol, client_order_id)
        if found is None:
            return False
        self._states[(found[0].name, symbol)].inflight = None
        return True


# The engine is still what replay and older callers know as ProfitV1 (its default strategy).
ProfitV1 = Engine
