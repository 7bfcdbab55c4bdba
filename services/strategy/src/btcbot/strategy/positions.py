"""The position the strategy acts on: the ledger's last snapshot plus the fills seen after its watermark.

The ledger's PortfolioSnapshot says up to which EXECUTION stream sequence it reflects every message
(`exec_seq`, plus `exec_seqs_above` it applied out of order). The strategy's own EXECUTION consumer delivers
every message of that stream with its stream sequence, so the position now is the snapshot's position plus
the fills delivered at a sequence the snapshot does not reflect. That needs no waiting for the ledger: a sell
that filled counts at once, so a stale snapshot can never make the strategy sell the same position twice.

The strategy does not know a position (and does not trade the symbol) when:
- no snapshot has arrived yet;
- it has not seen every EXECUTION message after the snapshot's watermark (it started later, or its consumer
  skipped sequences): a fill in that gap could be anywhere;
- it saw a fill of the symbol it cannot count (not a finite positive quantity and price) that the ledger has
  not reflected yet.

Pure: no I/O, no clock.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal

from btcbot.contracts.messages import OrderFilled, PortfolioSnapshot

_ZERO = Decimal(0)
# How many fills to remember by identity, so a second copy under another message id is not counted twice.
_REMEMBERED_FILLS = 50_000


@dataclass(frozen=True)
class Known:
    """A position the strategy may act on: the bot's own quantity and its average cost."""

    quantity: Decimal
    avg_cost: Decimal


@dataclass(frozen=True)
class Unknown:
    """The strategy cannot know the position now, and why (a stable code and a detail)."""

    code: str
    detail: str


@dataclass(frozen=True)
class SeenFill:
    """A fill delivered by the strategy's EXECUTION consumer, and where in the stream."""

    sequence: int
    symbol: str
    side: str
    price: Decimal
    quantity: Decimal
    # Of the base asset (a base-asset fee reduces a buy and adds to what a sell delivers).
    base_charge: Decimal
    # In the quote asset (adds to a buy's cost).
    quote_charge: Decimal
    countable: bool = True


def seen_fill(event: OrderFilled, sequence: int) -> SeenFill:
    """The strategy's view of an OrderFilled delivered at `sequence`."""
    charge = abs(event.fee) + abs(event.tax)
    fee_asset = (event.fee_asset or event.quote_asset).upper()
    countable = (
        event.side in ("buy", "sell")
        and event.price.is_finite()
        and event.quantity.is_finite()
        and charge.is_finite()
        and event.price > 0
        and event.quantity > 0
    )
    base = event.base_asset.upper()
    return SeenFill(
        sequence=sequence,
        symbol=event.symbol,
        side=event.side,
        price=event.price,
        quantity=event.quantity,
        base_charge=charge if base and fee_asset == base else _ZERO,
        quote_charge=charge if fee_asset != base else _ZERO,
        countable=countable,
    )


@dataclass
class Coverage:
    """Which EXECUTION sequences the strategy's consumer delivered: every one from `start` to `last`."""

    # The first sequence seen without a gap before it (None: nothing known about the stream yet).
    start: int | None = None
    last: int = 0

    def see(self, sequence: int) -> bool:
        """Record a delivery; False when it reveals a gap (coverage then restarts at this sequence)."""
        if sequence <= 0:
            return True
        if self.start is None:
            self.start, self.last = sequence, sequence
            return True
        if sequence <= self.last:
            return True  # a redelivery of something already seen
        gap = sequence > self.last + 1
        if gap:
            self.start = sequence
        self.last = sequence
        return not gap

    def covers_after(self, exec_seq: int) -> bool:
        """True when every sequence after `exec_seq` that exists so far was delivered to us."""
        if self.start is None:
            return False
        return self.start <= exec_seq + 1


class PositionBook:
    """Snapshot plus the fills seen since its watermark, per symbol."""

    def __init__(self, symbols: Iterable[str]) -> None:
        self.symbols = frozenset(symbols)
        self.snapshot: PortfolioSnapshot | None = None
        self.coverage = Coverage()
        # Per symbol, a stretch of the stream read from history (a takeover): every fill of the symbol in it is known.
        self.history: dict[str, tuple[int, int]] = {}
        # Identities (symbol, trade id, exchange order id) of fills seen, so another copy is never counted twice.
        self._keys: OrderedDict[tuple[str, str, str], None] = OrderedDict()
        # Fills seen that the last snapshot does not reflect yet, per symbol.
        self._pending: dict[str, list[SeenFill]] = {}

    def start_at(self, sequence: int) -> None:
        """The stream's last sequence when our consumer began: everything after it will be delivered to us."""
        if self.coverage.start is None:
            self.coverage.start = sequence + 1
            self.coverage.last = sequence

    def on_snapshot(self, snapshot: PortfolioSnapshot) -> bool:
        """Take a ledger snapshot unless it reflects less of the stream than the one we have (by watermark, not
        by its clock: a snapshot dated ahead cannot displace a newer one), or it reflects fills applied out of
        order (`exec_seqs_above`): those were folded in another order than the stream's, so a sell may have
        drawn on opening holdings before the buy it sold was booked, and the bot's own quantity in it is not a
        prefix of the stream. The last in-order snapshot plus the fills after it stays exact meanwhile."""
        current = self.snapshot
        if snapshot.exec_seqs_above:
            return False
        if current is not None and snapshot.exec_seq < current.exec_seq:
            return False
        self.snapshot = snapshot
        for symbol, fills in self._pending.items():
            self._pending[symbol] = [f for f in fills if not self._reflected(f.sequence)]
        return True

    def on_sequence(self, sequence: int) -> bool:
        """Any EXECUTION delivery (fill or not) at `sequence`; False when it reveals a gap in what we saw."""
        return self.coverage.see(sequence)

    def on_fill(self, event: OrderFilled, sequence: int) -> bool:
        """Remember a fill of a traded symbol; False if it was already known (another copy)."""
        if event.symbol not in self.symbols:
            return False
        key = (event.symbol, event.trade_id, event.exchange_order_id)
        if key in self._keys:
            return False
        self._keys[key] = None
        while len(self._keys) > _REMEMBERED_FILLS:
            self._keys.popitem(last=False)
        if not self._reflected(sequence):
            self._pending.setdefault(event.symbol, []).append(seen_fill(event, sequence))
        return True

    def read_history(self, symbol: str, first: int, last: int, fills: Iterable[tuple[OrderFilled, int]]) -> None:
        """Every fill of `symbol` the stream held from sequence `first` to `last` (a new owner's history read)."""
        for event, sequence in fills:
            if event.symbol == symbol:
                self.on_fill(event, sequence)
        self.history[symbol] = (first, last)

    def covers(self, symbol: str, exec_seq: int) -> bool:
        """True when every fill of `symbol` after `exec_seq` that exists so far is known to us: the live consumer
        saw everything since, or a history read reaches from there to where the live consumer began."""
        if self.coverage.covers_after(exec_seq):
            return True
        stretch = self.history.get(symbol)
        start = self.coverage.start
        if stretch is None or start is None:
            return False
        return stretch[0] <= exec_seq + 1 and stretch[1] >= start - 1

    def _reflected(self, sequence: int) -> bool:
        snapshot = self.snapshot
        if snapshot is None:
            return False
        return sequence <= snapshot.exec_seq or sequence in snapshot.exec_seqs_above

    def pending(self, symbol: str) -> list[SeenFill]:
        """The fills of `symbol` seen after the snapshot's watermark (not reflected in it)."""
        return [f for f in self._pending.get(symbol, ()) if not self._reflected(f.sequence)]

    def position(self, symbol: str) -> Known | Unknown:
        """The bot's own position in `symbol` now, or why it cannot be known."""
        snapshot = self.snapshot
        if snapshot is None:
            return Unknown("NO_SNAPSHOT", "no portfolio snapshot from the ledger yet")
        if self.coverage.start is None:
            return Unknown("NO_COVERAGE", "where this replica's execution consumer starts is not known yet")
        if not self.covers(symbol, snapshot.exec_seq):
            start = self.coverage.start
            return Unknown(
                "EXECUTION_GAP",
                f"snapshot reflects execution up to {snapshot.exec_seq}, fills seen only from {start}",
            )
        if symbol in snapshot.halted:
            return Unknown("HALTED", f"the ledger halted {symbol}")
        held = next((p for p in snapshot.positions if p.symbol == symbol), None)
        quantity = held.quantity - held.opening_quantity if held is not None else _ZERO
        cost = quantity * held.avg_cost if held is not None else _ZERO
        total = held.quantity if held is not None else _ZERO
        # In stream order a sell beyond the bot's own quantity drew on the opening holdings, as the ledger books it.
        for fill in sorted(self.pending(symbol), key=lambda f: f.sequence):
            if not fill.countable:
                return Unknown("UNCOUNTABLE_FILL", f"fill at sequence {fill.sequence} cannot be counted")
            if fill.side == "buy":
                received = fill.quantity - fill.base_charge
                quantity += received
                total += received
                cost += fill.price * fill.quantity + fill.quote_charge
            else:
                delivered = fill.quantity + fill.base_charge
                total -= delivered
                taken = min(delivered, max(quantity, _ZERO))
                if quantity > 0:
                    cost -= cost * taken / quantity
                quantity -= taken
        # Never more than the account holds in all: what the strategy sells is bounded by it.
        quantity = min(quantity, total)
        if quantity <= 0:
            return Known(_ZERO, _ZERO)
        return Known(quantity, cost / quantity)
