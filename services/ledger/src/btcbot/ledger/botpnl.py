"""The bot's own PnL as readers show it: realized and unrealized on what the bot bought, never on the holdings the
account started with, and every figure at its asset's scale.

Pure: rows in, figures out. `queries.py` reads the rows; `btcbot report` and `btcbot up`'s summary print these.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal

ZERO = Decimal(0)
# Decimals an amount of an asset is shown with. The ledger stores exact numerics (27 decimals after an average);
# readers show what the exchange would: fiat and stable coins at cents, coins at BTCTurk's 8 decimals.
ASSET_SCALES: Mapping[str, int] = {"TRY": 2, "USDT": 2, "USDC": 2, "EUR": 2, "USD": 2}
DEFAULT_SCALE = 8


def scale_of(asset: str) -> int:
    """Decimals an amount of `asset` is shown with."""
    return ASSET_SCALES.get(asset.upper(), DEFAULT_SCALE)


def at_scale(value: Decimal, asset: str) -> Decimal:
    """`value` rounded (half even) to the scale of `asset`."""
    return value.quantize(Decimal(1).scaleb(-scale_of(asset)), rounding=ROUND_HALF_EVEN)


@dataclass(frozen=True)
class Holding:
    """One symbol's position as the ledger stores it (quantity includes the opening holdings still held)."""

    symbol: str
    base_asset: str
    quantity: Decimal
    opening_quantity: Decimal
    cost: Decimal
    realized_pnl: Decimal
    fees: Decimal
    fills: int
    halted_reason: str | None = None

    @property
    def own_quantity(self) -> Decimal:
        """What the bot bought and still holds (the opening holdings left out)."""
        return self.quantity - self.opening_quantity

    @property
    def avg_cost(self) -> Decimal | None:
        """Average cost of the bot's own quantity (None when it holds none)."""
        own = self.own_quantity
        return self.cost / own if own > 0 else None


@dataclass(frozen=True)
class PositionPnl:
    """A symbol's bot PnL at a mark."""

    holding: Holding
    mark: Decimal | None
    unrealized: Decimal

    @property
    def total(self) -> Decimal:
        """Realized plus unrealized."""
        return self.holding.realized_pnl + self.unrealized


def unrealized(holding: Holding, mark: Decimal | None) -> Decimal:
    """Mark x the bot's own quantity - its cost basis; zero without a mark or without own quantity."""
    own = holding.own_quantity
    if mark is None or own <= 0:
        return ZERO
    return mark * own - holding.cost


def position_pnl(holdings: Iterable[Holding], marks: Mapping[str, Decimal]) -> list[PositionPnl]:
    """Every symbol's bot PnL at the given marks."""
    return [PositionPnl(h, marks.get(h.symbol), unrealized(h, marks.get(h.symbol))) for h in holdings]


@dataclass(frozen=True)
class BotTotals:
    """The bot's PnL over all symbols, in the quote asset."""

    realized: Decimal
    unrealized: Decimal
    fees: Decimal

    @property
    def pnl(self) -> Decimal:
        """Realized plus unrealized (fees are already in both)."""
        return self.realized + self.unrealized


def totals(rows: Iterable[PositionPnl]) -> BotTotals:
    """Sum the per-symbol figures."""
    rows = list(rows)
    return BotTotals(
        realized=sum((r.holding.realized_pnl for r in rows), ZERO),
        unrealized=sum((r.unrealized for r in rows), ZERO),
        fees=sum((r.holding.fees for r in rows), ZERO),
    )


@dataclass(frozen=True)
class TradeCounts:
    """How many fills, and of which side."""

    count: int
    buys: int
    sells: int


def count_trades(sides: Iterable[str]) -> TradeCounts:
    """Count fills by side."""
    sides = list(sides)
    buys = sum(1 for s in sides if s == "buy")
    return TradeCounts(len(sides), buys, len(sides) - buys)
