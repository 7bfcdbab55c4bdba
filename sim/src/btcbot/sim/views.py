"""JSON shapes of BTCTurk payloads, built from engine objects. Decimals that BTCTurk sends as strings
are formatted here; those it sends as numbers stay Decimal and are encoded as JSON numbers."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from btcbot.sim.book import Order
from btcbot.sim.candles import Bar
from btcbot.sim.config import Currency, SymbolRules
from btcbot.sim.engine import Fill, MatchingEngine, UserTrade
from btcbot.sim.funding import Transfer
from btcbot.sim.wallet import Balance

Json = dict[str, Any]


def plain(value: Decimal) -> str:
    """Exact decimal text without exponent or trailing zeros ("0.5", "100")."""
    if value == 0:
        return "0"
    text = format(value, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text


def fixed(value: Decimal, scale: int) -> str:
    """Decimal text with exactly `scale` fraction digits ("66800.00")."""
    return format(value.quantize(Decimal(1).scaleb(-scale), ROUND_HALF_UP), "f")


def number(value: Decimal, scale: int | None = None) -> Decimal:
    """A Decimal that encodes as a plain JSON number, rounded to `scale` if given."""
    if scale is not None:
        value = value.quantize(Decimal(1).scaleb(-scale), ROUND_HALF_UP)
    return Decimal(plain(value))


def negative(value: Decimal) -> str:
    """Fees and sold amounts are reported as negative strings."""
    return plain(-value) if value else "0"


def server_time(now_ms: int) -> Json:
    """The bare /api/v2/server/time object (no envelope)."""
    moment = datetime.fromtimestamp(now_ms / 1000, tz=UTC)
    # .NET prints seven fractional digits; milliseconds are all the simulator has.
    iso = moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now_ms % 1000:03d}0000+00:00"
    return {"serverTime": now_ms, "serverTime2": iso}


def symbol_info(rules: SymbolRules, reference: Decimal | None) -> Json:
    """One entry of exchangeinfo `symbols`."""
    ref = reference if reference is not None else rules.initial_price
    return {
        "id": rules.pair_id,
        "name": rules.name,
        "nameNormalized": rules.normalized,
        "status": "TRADING",
        "numerator": rules.numerator,
        "denominator": rules.denominator,
        "numeratorScale": rules.numerator_scale,
        "denominatorScale": rules.denominator_scale,
        "hasFraction": rules.has_fraction,
        "filters": [
            {
                "filterType": "PRICE_FILTER",
                "minPrice": plain(rules.min_price),
                "maxPrice": plain(rules.max_price),
                "tickSize": plain(rules.tick_size),
                "minExchangeValue": plain(rules.min_exchange_value),
                "minAmount": None,
                "maxAmount": None,
            }
        ],
        # Stop orders are not simulated, so they are not advertised.
        "orderMethods": ["MARKET", "LIMIT"],
        "displayFormat": rules.display_format,
        "commissionFromNumerator": False,
        "order": rules.display_order,
        "priceRounding": False,
        "isNew": False,
        "marketPriceWarningThresholdPercentage": Decimal("0.25"),
        "maximumOrderAmount": None,
        "maximumLimitOrderPrice": number(ref * 10, rules.denominator_scale),
        "minimumLimitOrderPrice": number(ref / 10, rules.denominator_scale),
    }


def currency_info(currency: Currency) -> Json:
    """One entry of exchangeinfo `currencies`."""
    return {
        "id": currency.currency_id,
        "symbol": currency.symbol,
        "name": currency.name,
        "minWithdrawal": number(currency.min_withdrawal),
        "minDeposit": number(currency.min_deposit),
        "precision": currency.precision,
        "isAddressRenewable": False,
        "getAutoAddressDisabled": False,
        "isPartialWithdrawalEnabled": False,
    }


def ticker(rules: SymbolRules, engine: MatchingEngine, now_ms: int) -> Json:
    """One /api/v2/ticker element; numbers are JSON numbers."""
    book = engine.books[rules.name]
    zero = Decimal(0)
    stats = engine.day_stats(rules.name, now_ms)
    last = stats.last if stats else zero
    opened = stats.open if stats else zero
    daily = last - opened
    return {
        "pair": rules.name,
        "pairNormalized": rules.normalized,
        "timestamp": now_ms,
        "last": number(last),
        "high": number(stats.high if stats else zero),
        "low": number(stats.low if stats else zero),
        "bid": number(book.best_bid() or zero),
        "ask": number(book.best_ask() or zero),
        "open": number(opened),
        "volume": number(stats.volume if stats else zero, 8),
        "average": number(stats.average if stats else zero, 8),
        "daily": number(daily),
        "dailyPercent": number(daily / opened * 100 if opened else zero, 2),
        "denominatorSymbol": rules.denominator,
        "numeratorSymbol": rules.numerator,
        "order": rules.display_order,
    }


def orderbook(rules: SymbolRules, engine: MatchingEngine, limit: int, now_ms: int) -> Json:
    """The /api/v2/orderbook payload: [price, amount] strings, bids descending, asks ascending."""
    bids, asks = engine.books[rules.name].depth(limit)
    return {
        "timestamp": now_ms,
        "bids": [[fixed(p, rules.denominator_scale), fixed(a, rules.numerator_scale)] for p, a in bids],
        "asks": [[fixed(p, rules.denominator_scale), fixed(a, rules.numerator_scale)] for p, a in asks],
    }


def public_trade(rules: SymbolRules, fill: Fill) -> Json:
    """One /api/v2/trades element."""
    return {
        "pair": rules.name,
        "pairNormalized": rules.normalized,
        "numerator": rules.numerator,
        "denominator": rules.denominator,
        "date": fill.ts_ms,
        "tid": str(fill.trade_id),
        "price": fixed(fill.price, rules.denominator_scale),
        "amount": fixed(fill.amount, rules.numerator_scale),
        "side": fill.taker_side,
    }


def balance(currency: Currency, bal: Balance, now_ms: int, *, comma: bool) -> Json:
    """One /api/v1/users/balances element."""

    def text(value: Decimal) -> str:
        out = plain(value)
        return out.replace(".", ",") if comma else out

    return {
        "asset": currency.symbol,
        "assetname": currency.name,
        "balance": text(bal.total),
        "locked": text(bal.locked),
        "free": text(bal.free),
        "orderFund": text(bal.locked),
        "requestFund": "0",
        "precision": currency.precision,
        "timestamp": now_ms,
    }


def _quantity_text(order: Order, rules: SymbolRules, value: Decimal) -> str:
    # A market buy counts in quote currency, every other order in base.
    if order.method == "market" and order.side == "buy":
        return plain(value)
    return fixed(value, rules.numerator_scale)


def _price_text(order: Order, rules: SymbolRules) -> str:
    price = order.price if order.method == "limit" else (order.first_fill_price or Decimal(0))
    return fixed(price, rules.denominator_scale)


def order(order: Order, rules: SymbolRules) -> Json:
    """The order object of openOrders, allOrders and order/{id}."""
    quantity = _quantity_text(order, rules, order.quantity)
    return {
        "id": order.order_id,
        "price": _price_text(order, rules),
        "amount": quantity,
        "quantity": quantity,
        "stopPrice": fixed(Decimal(0), rules.denominator_scale),
        "pairSymbol": rules.name,
        "pairSymbolNormalized": rules.normalized,
        "type": order.side,
        "method": order.method,
        "orderClientId": order.client_id,
        "time": order.created_ms,
        "updateTime": order.updated_ms,
        "status": order.status,
        "leftAmount": _quantity_text(order, rules, order.left),
    }


def submitted(order: Order, rules: SymbolRules) -> Json:
    """The data of a successful POST /api/v1/order."""
    return {
        "id": order.order_id,
        "datetime": order.created_ms,
        "type": order.side,
        "method": order.method,
        "price": fixed(order.price, rules.denominator_scale),
        "stopPrice": None,
        "quantity": _quantity_text(order, rules, order.quantity),
        "pairSymbol": rules.name,
        "pairSymbolNormalized": rules.normalized,
        "newOrderClientId": order.client_id,
    }


def user_trade(trade: UserTrade, rules: SymbolRules, amount_scale: int | None) -> Json:
    """One /api/v1/users/transactions/trade element; amount, fee and tax are negative where paid."""
    signed = trade.amount if trade.side == "buy" else -trade.amount
    shown = signed if amount_scale is None else signed.quantize(Decimal(1).scaleb(-amount_scale))
    return {
        "id": trade.trade_id,
        "timestamp": trade.ts_ms,
        "amount": plain(shown),
        "preciseAmount": number(signed),
        "fee": negative(trade.fee),
        "tax": negative(trade.tax),
        "price": fixed(trade.price, rules.denominator_scale),
        "numeratorSymbol": rules.numerator,
        "denominatorSymbol": rules.denominator,
        "orderType": trade.side,
        "orderId": trade.order_id,
        "orderClientId": trade.client_id,
    }


def _change(bar: Bar) -> tuple[Decimal, Decimal]:
    amount = bar.close - bar.open
    return amount, (amount / bar.open * 100 if bar.open else Decimal(0))


def ohlc_day(rules: SymbolRules, bar: Bar) -> Json:
    """One graph-api /v1/ohlcs element: JSON numbers, `time` the day start in seconds."""
    change, percent = _change(bar)
    return {
        "pair": rules.name,
        "time": bar.start_s,
        "open": number(bar.open),
        "high": number(bar.high),
        "low": number(bar.low),
        "close": number(bar.close),
        "volume": number(bar.volume),
        "total": number(bar.quote_volume),
        "average": number(bar.average, 2),
        "dailyChangeAmount": number(change),
        "dailyChangePercentage": number(percent, 2),
    }


def legacy_ohlc(rules: SymbolRules, bar: Bar) -> Json:
    """One legacy /api/v2/ohlc element: decimals as strings, `time` the day start in ms."""
    change, percent = _change(bar)
    return {
        "pairSymbol": rules.name,
        "pairSymbolNormalized": rules.normalized,
        "time": bar.start_s * 1000,
        "open": fixed(bar.open, rules.denominator_scale),
        "high": fixed(bar.high, rules.denominator_scale),
        "low": fixed(bar.low, rules.denominator_scale),
        "close": fixed(bar.close, rules.denominator_scale),
        "volume": fixed(bar.volume, rules.numerator_scale),
        "total": plain(bar.quote_volume),
        "average": fixed(bar.average, rules.denominator_scale),
        "dailyChangeAmount": fixed(change, rules.denominator_scale),
        "dailyChangePercentage": fixed(percent, 2),
    }


def klines(rules: SymbolRules, bars: list[Bar]) -> Json:
    """graph-api /v1/klines/history in TradingView UDF shape; `"s":"no_data"` when empty."""
    if not bars:
        return {"s": "no_data"}
    return {
        "s": "ok",
        "t": [b.start_s for b in bars],
        "o": [number(b.open) for b in bars],
        "h": [number(b.high) for b in bars],
        "l": [number(b.low) for b in bars],
        "c": [number(b.close) for b in bars],
        "v": [number(b.volume, rules.numerator_scale) for b in bars],
    }


def transfer(item: Transfer) -> Json:
    """One transactions/crypto or /fiat element, numbers as in the docs sample."""
    return {
        "balanceType": item.kind.capitalize(),
        "currencySymbol": item.currency,
        "id": item.transfer_id,
        "timestamp": item.ts_ms,
        "funds": number(item.funds),
        "amount": number(item.amount),
        "fee": number(item.fee),
        "tax": number(item.tax),
    }
