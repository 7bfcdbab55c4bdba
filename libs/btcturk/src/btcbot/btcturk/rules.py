"""Pure symbol rules: round prices and quantities to what a pair accepts, and pre-check an order.

:func:`check_order` returns the reason BTCTurk would give (its message codes) instead of raising,
so risk can turn it into an ``OrderDenied`` without a round trip to the exchange.
"""

from __future__ import annotations

from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal

from btcbot.btcturk.models import OrderMethod, Side, SymbolInfo


def price_step(info: SymbolInfo) -> Decimal:
    """Smallest price increment: the tick size, but never finer than the price scale allows."""
    scale_step = Decimal(1).scaleb(-info.denominator_scale)
    if info.tick_size is None or info.tick_size <= 0:
        return scale_step
    return max(info.tick_size, scale_step)


def quantity_step(info: SymbolInfo) -> Decimal:
    """Smallest base-quantity increment."""
    return Decimal(1).scaleb(-info.numerator_scale)


def _to_step(value: Decimal, step: Decimal, rounding: str) -> Decimal:
    # normalize() drops trailing zeros; adding 0 turns "1E+2" back into plain "100".
    return ((value / step).to_integral_value(rounding=rounding) * step).normalize() + 0


def round_price(info: SymbolInfo, price: Decimal, *, up: bool) -> Decimal:
    """Round to the price step; ``up`` for sells (never cheaper), down for buys (never dearer)."""
    return _to_step(price, price_step(info), ROUND_CEILING if up else ROUND_FLOOR)


def round_quantity(info: SymbolInfo, quantity: Decimal) -> Decimal:
    """Round a base quantity down to the pair's scale (never more than asked)."""
    return _to_step(quantity, quantity_step(info), ROUND_FLOOR)


def _on_step(value: Decimal, step: Decimal) -> bool:
    return value % step == 0


def check_order(
    info: SymbolInfo,
    side: Side,
    method: OrderMethod,
    quantity: Decimal,
    price: Decimal | None = None,
    stop_price: Decimal | None = None,
    *,
    reference_price: Decimal | None = None,
) -> str | None:
    """The BTCTurk message code this order would be rejected with, or None if it looks valid.

    Market buys carry ``quantity`` in quote currency; ``reference_price`` (e.g. last or mid) is
    needed to price a market sell's notional, and is skipped when absent.
    """
    if not info.trading:
        return "PAIR_NOT_TRADING"
    if info.order_methods and method not in info.order_methods:
        return "orderMethodNotSupported"
    if quantity <= 0:
        return "FAILED_ORDER_PARAMETER"
    market_buy = method is OrderMethod.MARKET and side is Side.BUY
    if not market_buy and not _on_step(quantity, quantity_step(info)):
        return "invalidQuantityScale"
    limit_like = method in (OrderMethod.LIMIT, OrderMethod.STOP_LIMIT)
    if limit_like:
        if price is None or price <= 0:
            return "FAILED_ORDER_PARAMETER"
        reason = _check_price(info, price, "invalidPriceScale")
        if reason is not None:
            return reason
    if method in (OrderMethod.STOP_LIMIT, OrderMethod.STOP_MARKET):
        if stop_price is None or stop_price <= 0:
            return "FAILED_ORDER_PARAMETER"
        if not _on_step(stop_price, price_step(info)):
            return "invalidStopPriceScale"
    notional: Decimal | None
    if market_buy:
        notional = quantity
    elif limit_like and price is not None:
        notional = quantity * price
    else:
        notional = None if reference_price is None else quantity * reference_price
    if info.min_exchange_value is not None and notional is not None and notional < info.min_exchange_value:
        return "FAILED_MIN_TOTAL_AMOUNT"
    return None


def _check_price(info: SymbolInfo, price: Decimal, scale_reason: str) -> str | None:
    if not _on_step(price, price_step(info)):
        return scale_reason
    if info.min_price is not None and price < info.min_price:
        return "ORDER_MIN_PRICE_EXCEEDED"
    if info.max_price is not None and price > info.max_price:
        return "PRICE_MUST_BE_LESS_THAN_MAXPRICE"
    if info.minimum_limit_order_price is not None and price < info.minimum_limit_order_price:
        return "ORDER_MIN_PRICE_EXCEEDED"
    if info.maximum_limit_order_price is not None and price > info.maximum_limit_order_price:
        return "PRICE_MUST_BE_LESS_THAN_MAXPRICE"
    return None
