"""What the pre-trade limits read of the ledger's snapshot, and which execution events they react to.

The limits that depend on orders in flight (open orders, cooldowns, cash reserve, no oversell, exposure caps)
are decided atomically across replicas by the reservation script (btcbot.runtime.reservations); this module
turns a PortfolioSnapshot into the holdings that script compares against, and recognises minimum-total rejects.

Exposure here is the bot's own: a position's quantity above its opening holdings, at its mark (its average
cost when the ledger has no mark), so holdings the account had before the bot traded never use up the budget.
The position a sell is checked against is the whole quantity the account holds (opening holdings included).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal

from btcbot.contracts.messages import OrderRejected, PortfolioSnapshot, Position

_ZERO = Decimal(0)
# BTCTurk's "order total below the minimum" (code 1123); the simulator and execution report its message code.
MIN_TOTAL_CODES = frozenset({"1123", "FAILED_MIN_TOTAL_AMOUNT", "MIN_TOTAL_AMOUNT", "MIN_NOTIONAL"})
_CODE_IN_DETAIL = re.compile(r"\bcode[=: ]+(\d+)", re.IGNORECASE)


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


def is_min_total_reject(event: OrderRejected) -> bool:
    """True if the exchange refused the order for a total below its minimum (BTCTurk code 1123)."""
    return event.reason.upper() in MIN_TOTAL_CODES or "1123" in _CODE_IN_DETAIL.findall(event.detail)
