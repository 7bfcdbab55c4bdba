"""The last check before an order leaves: does it satisfy its symbol's exchange rules? Pure, no I/O.

Risk checks an intent against the same rules, but execution is the edge: whatever reaches it (a bug upstream,
a forged command on ORDERS) must not put a price of -1, 0 or NaN on the exchange. The arithmetic is the
client library's (`btcbot.btcturk.rules.check_order`); this module adds what it cannot take for granted
(finite, positive, not absurd numbers) and names the outcome with the exchange's own message codes, so an
order refused here looks to risk, strategy and the ledger exactly like one the exchange refused.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from btcbot.btcturk.models import OrderMethod, SymbolInfo
from btcbot.btcturk.models import Side as BtcTurkSide
from btcbot.btcturk.rulebook import RulesHolder, symbol_key
from btcbot.btcturk.rules import check_order
from btcbot.execution.orders import Order

# Reason codes of an OrderRejected that execution decided without calling the exchange (besides the exchange's
# own codes returned by check_order, e.g. FAILED_MIN_TOTAL_AMOUNT, invalidPriceScale, ORDER_MIN_PRICE_EXCEEDED).
INVALID_NUMBER = "FAILED_ORDER_PARAMETER"  # BTCTurk's code for a parameter it cannot accept
UNKNOWN_SYMBOL = "UNKNOWN_SYMBOL"
# exchangeinfo could not be read for as long as a command may wait: rejected unsent (fail closed, but answered).
RULES_NOT_LOADED = "RULES_NOT_LOADED"

# 10^18 of anything is no order (see btcbot.runtime.sanity): refuse before the arithmetic overflows.
_CEILING = Decimal("1E+18")

_METHODS = {"limit": OrderMethod.LIMIT, "market": OrderMethod.MARKET}
_SIDES = {"buy": BtcTurkSide.BUY, "sell": BtcTurkSide.SELL}


@dataclass(frozen=True)
class Refusal:
    """Why an order must not be sent: an exchange-style code and words for humans."""

    reason: str
    detail: str


def rules_by_symbol(symbols: Iterable[SymbolInfo]) -> dict[str, SymbolInfo]:
    """exchangeinfo's symbols keyed as our contracts spell them (BTCTRY)."""
    return {symbol_key(info.name): info for info in symbols}


def _bad_number(value: Decimal | None) -> bool:
    return value is not None and (not value.is_finite() or value <= 0 or value >= _CEILING)


def refusal(order: Order, rules: Mapping[str, SymbolInfo]) -> Refusal | None:
    """Why `order` breaks its symbol's rules, or None when it may be sent."""
    info = rules.get(order.symbol)
    if info is None:
        return Refusal(UNKNOWN_SYMBOL, f"{order.symbol} is not listed in the exchange's rules")
    if _bad_number(order.quantity) or _bad_number(order.price):
        return Refusal(INVALID_NUMBER, f"price {order.price} / quantity {order.quantity} is not a positive number")
    if order.order_type == "limit" and order.price is None:
        return Refusal(INVALID_NUMBER, "a limit order needs a price")
    try:
        code = check_order(
            info, _SIDES[order.side], _METHODS[order.order_type], order.quantity, order.price, reference_price=None
        )
    except InvalidOperation:  # a value the exchange's steps cannot even divide
        code = INVALID_NUMBER
    if code is None:
        return None
    return Refusal(code, f"{order.side} {order.quantity} {order.symbol} @ {order.price} breaks the exchange rules")


class ExchangeRules(RulesHolder[SymbolInfo]):
    """The rules execution holds (the kit's holder): None until exchangeinfo was read once (then nothing is sent)."""
