"""Parse and validate a submit-order request the way BTCTurk does, returning its message codes."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from decimal import Decimal, InvalidOperation

from btcbot.sim.book import Method, Side
from btcbot.sim.config import SymbolRules
from btcbot.sim.engine import OrderRequest, Rejected

# BTCTurk documents the message strings but not their numeric codes (only 1152 and 429 were seen);
# these numbers are the simulator's own choice and clients should key on `message`.
ERROR_CODES: dict[str, int] = {
    "FAILED_ORDER_PARAMETER": 1001,
    "INVALID_QUANTITY_SCALE": 1002,
    "INVALID_PRICE_SCALE": 1003,
    "ORDER_METHOD_NOT_SUPPORTED": 1004,
    "FAILED_MIN_TOTAL_AMOUNT": 1005,
    "PRICE_MUST_BE_LESS_THAN_MAXPRICE": 1006,
    "ORDER_MIN_PRICE_EXCEEDED": 1007,
    "ORDER_MAX_PRICE_EXCEEDED": 1008,
    "BALANCE_NOT_ENOUGH": 1009,
    "FAILED_ORDER_WITH_OPEN_ORDERS": 1010,
    "FAILED_MARKET_ORDER": 1011,
    "NO_ORDER_MATCHES_YOUR_REQUEST": 1101,
    "ORDER_COULD_NOT_BE_CANCELED": 1102,
    "Order not found": 1152,
}

MAX_CLIENT_ID = 50
MAX_PAIR_SYMBOL = 20
# swagger pattern for quantity/price: up to 12 integer and 16 fraction digits.
_DECIMAL_TEXT = re.compile(r"^\d{1,12}(\.\d{1,16})?$")
# Limit prices further than this factor from the last price are refused.
PRICE_BAND_FACTOR = Decimal(10)


def parse_decimal(value: object) -> Decimal | None:
    """A positive decimal from a JSON string or number, or None if malformed."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | Decimal):
        text = format(Decimal(value), "f")
    elif isinstance(value, str):
        text = value.strip()
    else:
        return None
    if not _DECIMAL_TEXT.match(text):
        return None
    try:
        number = Decimal(text)
    except InvalidOperation:
        return None
    return number if number > 0 else None


def _decimals(value: Decimal) -> int:
    exponent = value.normalize().as_tuple().exponent
    assert isinstance(exponent, int)
    return max(0, -exponent)


def parse_order(
    params: Mapping[str, object],
    account: str,
    lookup: Callable[[str], SymbolRules | None],
    new_client_id: Callable[[], str],
) -> OrderRequest | Rejected:
    """Turn submit-order parameters into an engine request, or the reason they are malformed."""
    bad = Rejected("FAILED_ORDER_PARAMETER")
    pair = params.get("pairSymbol")
    if not isinstance(pair, str) or not pair or len(pair) > MAX_PAIR_SYMBOL:
        return bad
    rules = lookup(pair)
    if rules is None:
        return bad
    side = str(params.get("orderType", "")).lower()
    method = str(params.get("orderMethod", "")).lower()
    if side not in ("buy", "sell"):
        return bad
    if method in ("stoplimit", "stopmarket"):
        return Rejected("ORDER_METHOD_NOT_SUPPORTED")
    if method not in ("limit", "market"):
        return bad
    quantity = parse_decimal(params.get("quantity"))
    if quantity is None:
        return bad
    price: Decimal | None = None
    if method == "limit":
        price = parse_decimal(params.get("price"))
        if price is None:
            return bad
    # ccxt sends `newClientOrderId`; the documented name wins when both are present.
    client_id = params.get("newOrderClientId", params.get("newClientOrderId"))
    if client_id is None or client_id == "":
        client_id = new_client_id()
    if not isinstance(client_id, str) or len(client_id) > MAX_CLIENT_ID:
        return bad
    order_side: Side = "buy" if side == "buy" else "sell"
    order_method: Method = "limit" if method == "limit" else "market"
    return OrderRequest(
        account=account,
        client_id=client_id,
        pair=rules.name,
        side=order_side,
        method=order_method,
        quantity=quantity,
        price=price,
    )


def check_order(
    req: OrderRequest,
    rules: SymbolRules,
    *,
    quote_precision: int,
    reference_price: Decimal | None,
    best_bid: Decimal | None,
) -> Rejected | None:
    """Exchange rules for an order: scales, tick size, price bands and minimum notional."""
    market_buy = req.method == "market" and req.side == "buy"
    quantity_scale = quote_precision if market_buy else rules.numerator_scale
    if _decimals(req.quantity) > quantity_scale:
        return Rejected("INVALID_QUANTITY_SCALE")
    if req.method == "limit":
        price = req.price
        assert price is not None
        if _decimals(price) > rules.denominator_scale or price % rules.tick_size != 0:
            return Rejected("INVALID_PRICE_SCALE")
        if price < rules.min_price:
            return Rejected("FAILED_ORDER_PARAMETER")
        if price > rules.max_price:
            return Rejected("PRICE_MUST_BE_LESS_THAN_MAXPRICE")
        if reference_price is not None:
            if price > reference_price * PRICE_BAND_FACTOR:
                return Rejected("ORDER_MAX_PRICE_EXCEEDED")
            if price < reference_price / PRICE_BAND_FACTOR:
                return Rejected("ORDER_MIN_PRICE_EXCEEDED")
        notional: Decimal | None = price * req.quantity
    elif market_buy:
        notional = req.quantity
    else:
        notional = req.quantity * best_bid if best_bid is not None else None
    if notional is not None and notional < rules.min_exchange_value:
        return Rejected("FAILED_MIN_TOTAL_AMOUNT")
    return None
