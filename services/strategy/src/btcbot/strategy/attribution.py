"""Which strategy holds what: positions per strategy from the fills of its own orders (OrderFilled.strategy).

With several strategies on one account, the ledger's position of a symbol is theirs together; a strategy may
sell only what it bought. Fills come from the live EXECUTION consumer and from a new owner's history read;
a fill counts once whatever the number of copies. What was bought before the history read began is not
attributed, so a strategy can only under-count what it holds (it never sells another's). Pure.
"""

from __future__ import annotations

from collections import OrderedDict
from decimal import Decimal

from btcbot.contracts.messages import OrderFilled
from btcbot.strategy.api import Holding

_ZERO = Decimal(0)
_REMEMBERED = 50_000


class Attribution:
    """Quantity and cost per (strategy, symbol)."""

    def __init__(self) -> None:
        self._held: dict[tuple[str, str], tuple[Decimal, Decimal]] = {}
        self._keys: OrderedDict[tuple[str, str, str], None] = OrderedDict()

    def add(self, fill: OrderFilled) -> bool:
        """Count one fill of a strategy's order; False for a copy already counted or an uncountable one."""
        key = (fill.symbol, fill.trade_id, fill.exchange_order_id)
        if key in self._keys or not (fill.quantity.is_finite() and fill.price.is_finite()) or fill.quantity <= 0:
            return False
        self._keys[key] = None
        while len(self._keys) > _REMEMBERED:
            self._keys.popitem(last=False)
        slot = (fill.strategy, fill.symbol)
        quantity, cost = self._held.get(slot, (_ZERO, _ZERO))
        base = fill.base_asset.upper()
        charge = abs(fill.fee) + abs(fill.tax)
        in_base = bool(base) and (fill.fee_asset or "").upper() == base
        if fill.side == "buy":
            quantity += fill.quantity - (charge if in_base else _ZERO)
            cost += fill.price * fill.quantity + (_ZERO if in_base else charge)
        else:
            sold = min(fill.quantity + (charge if in_base else _ZERO), quantity)
            cost -= cost * sold / quantity if quantity > 0 else _ZERO
            quantity -= sold
        self._held[slot] = (max(quantity, _ZERO), max(cost, _ZERO))
        return True

    def holding(self, strategy: str, symbol: str) -> Holding:
        """What `strategy` holds of `symbol` by its own fills."""
        quantity, cost = self._held.get((strategy, symbol), (_ZERO, _ZERO))
        if quantity <= 0:
            return Holding()
        return Holding(quantity, cost / quantity)
