"""What an OrderRejected means, read the same way by every service (risk's cooldown, the universe's filter)."""

from __future__ import annotations

import re

from btcbot.contracts.messages import OrderRejected

# BTCTurk's "order total below the minimum" (code 1123); the simulator and execution report its message code.
MIN_TOTAL_CODES = frozenset({"1123", "FAILED_MIN_TOTAL_AMOUNT", "MIN_TOTAL_AMOUNT", "MIN_NOTIONAL"})
_CODE_IN_DETAIL = re.compile(r"\bcode[=: ]+(\d+)", re.IGNORECASE)


def is_min_total_reject(event: OrderRejected) -> bool:
    """True if the exchange refused the order for a total below its minimum (BTCTurk code 1123)."""
    return event.reason.upper() in MIN_TOTAL_CODES or "1123" in _CODE_IN_DETAIL.findall(event.detail)
