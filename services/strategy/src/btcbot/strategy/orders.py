"""What a strategy has in flight for one symbol, driven by execution events.

An order is in flight from the intent until it is filled completely, rejected or canceled. An intent that
never hears back (risk denied it, execution is down) expires after a timeout, so the strategy cannot wedge;
an accepted order is never forgotten that way, because it may still trade.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

from btcbot.contracts.messages import Side


@dataclass
class InFlight:
    """One order between intent and its final execution event."""

    intent_id: str
    client_order_id: str
    side: Side
    quantity: Decimal
    sent_ns: int
    price: Decimal | None = None
    accepted: bool = False
    filled: Decimal = Decimal(0)
    trade_ids: set[str] = field(default_factory=set)
    cancel_requested: bool = False

    @property
    def heard_back(self) -> bool:
        """True once execution said anything about the order."""
        return self.accepted or self.filled > 0

    def expired(self, now_ns: int, timeout_ns: int) -> bool:
        """True if no execution event came within `timeout_ns` of the intent."""
        return not self.heard_back and now_ns - self.sent_ns >= timeout_ns

    def add_fill(self, trade_id: str, quantity: Decimal) -> bool:
        """Count one fill (once per trade id); True when the order is now filled completely."""
        if trade_id not in self.trade_ids:
            self.trade_ids.add(trade_id)
            self.filled += quantity
        return self.filled >= self.quantity
