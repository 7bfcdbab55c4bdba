"""What the pre-trade limits read of the ledger's snapshot, and which execution events they react to.

The limits that depend on orders in flight (open orders, cooldowns, cash reserve, no oversell, exposure caps)
are decided atomically across replicas by the reservation script (btcbot.runtime.reservations); this module
turns a PortfolioSnapshot into the holdings that script compares against (minimum-total rejects: contracts.rejects).

Exposure here is the bot's own: a position's quantity above its opening holdings, at its mark (its average
cost when the ledger has no mark), so holdings the account had before the bot traded never use up the budget.
The position a sell is checked against is the whole quantity the account holds (opening holdings included).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from btcbot.contracts.messages import PortfolioSnapshot, Position

_ZERO = Decimal(0)


@dataclass(frozen=True)
class Holdings:
    """What one snapshot says for one symbol (quote amounts in the snapshot's quote asset)."""

    snap_seq: int = 0
    position: Decimal = _ZERO
    symbol_value: Decimal = _ZERO
    exposure: Decimal = _ZERO
    cash: Decimal = _ZERO


def bot_value(position: Position) -> Decimal:
    """Value of the part of a position the bot bought (above the opening holdings), never negative."""
    own = position.quantity - position.opening_quantity
    if own <= 0:
        return _ZERO
    price = position.mark if position.mark is not None and position.mark > 0 else position.avg_cost
    return own * max(price, _ZERO)


def holdings(snapshot: PortfolioSnapshot | None, symbol: str) -> Holdings:
    """Holdings of `symbol` per `snapshot`; with no snapshot, nothing is held (every buy and sell is denied)."""
    if snapshot is None:
        return Holdings()
    cash = sum((b.total for b in snapshot.balances if b.asset == snapshot.quote_asset), _ZERO)
    position = _ZERO
    value = _ZERO
    exposure = _ZERO
    for p in snapshot.positions:
        worth = bot_value(p)
        exposure += worth
        if p.symbol == symbol:
            position = p.quantity
            value = worth
    return Holdings(snapshot.exec_seq, max(position, _ZERO), value, exposure, max(cash, _ZERO))
