"""Pure parsers from decoded BTCTurk JSON to typed models, tolerant of the known wire quirks.

Quirks handled: numbers sent as JSON numbers or strings, comma decimal separators
("27223,72"), capitalised or lowercase enums ("Buy"/"buy"), lowercase legacy keys
("pairsymbol"), optional fields that are missing or null, float-typed millisecond stamps.
Decode JSON with :data:`JSON_DECODER` so JSON numbers arrive as exact Decimals.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

import msgspec

from btcbot.btcturk.errors import ProtocolError, Rejected
from btcbot.btcturk.models import (
    Balance,
    Candle,
    CurrencyInfo,
    ExchangeInfo,
    Kline,
    Level,
    Order,
    OrderAck,
    OrderBook,
    OrderMethod,
    OrderStatus,
    PublicTrade,
    ServerTime,
    Side,
    SymbolInfo,
    Ticker,
    Transaction,
    TransactionType,
    UserTrade,
)

JSON_DECODER = msgspec.json.Decoder(float_hook=Decimal)
# Graph-api times are seconds; a time above this is milliseconds (the legacy /api/v2/ohlc convention).
_MS_CUTOFF = 100_000_000_000

_METHODS = {m.value: m for m in OrderMethod}
_METHOD_CODES = {0: OrderMethod.LIMIT, 1: OrderMethod.MARKET, 2: OrderMethod.STOP_LIMIT}
_STATUSES = {s.value.lower(): s for s in OrderStatus} | {"cancelled": OrderStatus.CANCELED}


def decode_json(raw: bytes) -> Any:
    """Decode JSON bytes with exact Decimals for non-integer numbers."""
    try:
        return JSON_DECODER.decode(raw)
    except msgspec.DecodeError as exc:
        raise ProtocolError(f"invalid JSON: {exc}") from exc


class Fields:
    """Key lookup on a JSON object that falls back to a case-insensitive match."""

    def __init__(self, obj: Any, what: str) -> None:
        if not isinstance(obj, Mapping):
            raise ProtocolError(f"{what}: expected an object, got {type(obj).__name__}")
        self._obj: Mapping[str, Any] = obj
        self._lower = {str(k).lower(): v for k, v in obj.items()}
        self._what = what

    def opt(self, *keys: str) -> Any:
        """First present, non-null value among ``keys``, else None."""
        for key in keys:
            value = self._obj.get(key)
            if value is None:
                value = self._lower.get(key.lower())
            if value is not None:
                return value
        return None

    def req(self, *keys: str) -> Any:
        """Like :meth:`opt` but a missing value is a ProtocolError."""
        value = self.opt(*keys)
        if value is None:
            raise ProtocolError(f"{self._what}: missing field {keys[0]!r}")
        return value


def to_decimal(value: Any) -> Decimal:
    """Parse a BTCTurk number: JSON number, dotted string, or comma-decimal string."""
    if isinstance(value, bool):
        raise ProtocolError(f"not a number: {value!r}")
    if isinstance(value, Decimal):
        return value
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, float):
        return Decimal(repr(value))
    if isinstance(value, str):
        text = value.strip().replace(" ", "")
        if "," in text:
            text = _normalise_separators(text)
        try:
            result = Decimal(text)
        except InvalidOperation:
            raise ProtocolError(f"not a number: {value!r}") from None
        if not result.is_finite():
            raise ProtocolError(f"not a finite number: {value!r}")
        return result
    raise ProtocolError(f"not a number: {value!r}")


def _normalise_separators(text: str) -> str:
    # The separator that comes last is the decimal one; the other one groups thousands.
    if "." in text and text.rfind(".") > text.rfind(","):
        return text.replace(",", "")
    if text.count(",") > 1:
        raise ProtocolError(f"ambiguous number: {text!r}")
    return text.replace(".", "").replace(",", ".")


def opt_decimal(value: Any) -> Decimal | None:
    """Like :func:`to_decimal` but None or an empty string give None."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    return to_decimal(value)


def to_int(value: Any) -> int:
    """Parse an integer sent as a number, a string, or a float with a zero fraction."""
    number = to_decimal(value)
    if number != number.to_integral_value():
        raise ProtocolError(f"not an integer: {value!r}")
    return int(number)


def opt_int(value: Any) -> int | None:
    """Like :func:`to_int` but None gives None."""
    return None if value is None else to_int(value)


def to_bool(value: Any) -> bool:
    """Parse a JSON bool, tolerating "true"/"false" strings."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise ProtocolError(f"not a bool: {value!r}")


def parse_side(value: Any) -> Side:
    """Parse "buy"/"Buy"/"BUY", or the WebSocket codes 0 (buy) / 1 (sell)."""
    if isinstance(value, int) and not isinstance(value, bool):
        if value in (0, 1):
            return Side.BUY if value == 0 else Side.SELL
    elif isinstance(value, str):
        lowered = value.strip().lower()
        if lowered in ("buy", "sell"):
            return Side(lowered)
    raise ProtocolError(f"unknown side: {value!r}")


def parse_method(value: Any) -> OrderMethod:
    """Parse "limit", "Limit", "stopLimit", "STOP_LIMIT" or the WebSocket codes 0/1/2."""
    if isinstance(value, int) and not isinstance(value, bool):
        method = _METHOD_CODES.get(value)
    elif isinstance(value, str):
        method = _METHODS.get(value.strip().lower().replace("_", ""))
    else:
        method = None
    if method is None:
        raise ProtocolError(f"unknown order method: {value!r}")
    return method


def parse_status(value: Any) -> OrderStatus:
    """Parse an order status case-insensitively."""
    status = _STATUSES.get(str(value).strip().lower())
    if status is None:
        raise ProtocolError(f"unknown order status: {value!r}")
    return status


def normalise_pair(value: Any) -> str:
    """``BTC_TRY`` or ``btctry`` -> ``BTCTRY``."""
    return str(value).replace("_", "").upper()


def _pair(fields: Fields) -> str:
    return normalise_pair(fields.req("pairSymbol", "pair", "pairSymbolNormalized", "pairNormalized"))


def _list(data: Any, what: str) -> list[Any]:
    if not isinstance(data, list):
        raise ProtocolError(f"{what}: expected a list, got {type(data).__name__}")
    return data


def parse_server_time(obj: Any) -> ServerTime:
    """Parse ``/api/v2/server/time`` (bare object, no envelope)."""
    f = Fields(obj, "server time")
    iso = f.opt("serverTime2")
    return ServerTime(server_time_ms=to_int(f.req("serverTime")), iso=None if iso is None else str(iso))


def parse_symbol(obj: Any) -> SymbolInfo:
    """Parse one exchangeinfo symbol, flattening its PRICE_FILTER."""
    f = Fields(obj, "symbol")
    price_filter: Fields | None = None
    for raw in f.opt("filters") or []:
        candidate = Fields(raw, "symbol filter")
        if str(candidate.opt("filterType") or "").upper() == "PRICE_FILTER":
            price_filter = candidate
            break

    def pf(key: str) -> Decimal | None:
        return None if price_filter is None else opt_decimal(price_filter.opt(key))

    methods = tuple(parse_method(m) for m in f.opt("orderMethods") or [])
    name = normalise_pair(f.req("name", "nameNormalized"))
    has_fraction = f.opt("hasFraction")
    return SymbolInfo(
        id=to_int(f.req("id")),
        name=name,
        name_normalized=str(f.opt("nameNormalized") or name),
        status=str(f.opt("status") or "UNKNOWN"),
        numerator=str(f.req("numerator")).upper(),
        denominator=str(f.req("denominator")).upper(),
        numerator_scale=to_int(f.req("numeratorScale")),
        denominator_scale=to_int(f.req("denominatorScale")),
        has_fraction=True if has_fraction is None else to_bool(has_fraction),
        tick_size=pf("tickSize"),
        min_price=pf("minPrice"),
        max_price=pf("maxPrice"),
        min_exchange_value=pf("minExchangeValue"),
        min_amount=pf("minAmount"),
        max_amount=pf("maxAmount"),
        order_methods=methods,
        minimum_limit_order_price=opt_decimal(f.opt("minimumLimitOrderPrice")),
        maximum_limit_order_price=opt_decimal(f.opt("maximumLimitOrderPrice")),
        commission_from_numerator=to_bool(f.opt("commissionFromNumerator") or False),
    )


def parse_exchange_info(data: Any) -> ExchangeInfo:
    """Parse the ``data`` of ``/api/v2/server/exchangeinfo``."""
    f = Fields(data, "exchangeinfo")
    currencies = []
    for raw in f.opt("currencies") or []:
        c = Fields(raw, "currency")
        currencies.append(
            CurrencyInfo(
                id=opt_int(c.opt("id")),
                symbol=str(c.req("symbol")).upper(),
                precision=opt_int(c.opt("precision")),
                min_withdrawal=opt_decimal(c.opt("minWithdrawal")),
                min_deposit=opt_decimal(c.opt("minDeposit")),
            )
        )
    return ExchangeInfo(
        server_time_ms=opt_int(f.opt("serverTime")),
        symbols=tuple(parse_symbol(s) for s in _list(f.req("symbols"), "symbols")),
        currencies=tuple(currencies),
    )


def parse_ticker(obj: Any) -> Ticker:
    """Parse one REST ticker."""
    f = Fields(obj, "ticker")
    return Ticker(
        pair=normalise_pair(f.req("pair", "pairNormalized")),
        timestamp_ms=to_int(f.req("timestamp")),
        last=to_decimal(f.req("last")),
        high=to_decimal(f.req("high")),
        low=to_decimal(f.req("low")),
        bid=to_decimal(f.req("bid")),
        ask=to_decimal(f.req("ask")),
        open=to_decimal(f.req("open")),
        volume=to_decimal(f.req("volume")),
        average=opt_decimal(f.opt("average")),
        daily=opt_decimal(f.opt("daily")),
        daily_percent=opt_decimal(f.opt("dailyPercent")),
        numerator=f.opt("numeratorSymbol"),
        denominator=f.opt("denominatorSymbol"),
    )


def parse_tickers(data: Any) -> list[Ticker]:
    """Parse ``/api/v2/ticker`` data (always a list; a lone object is tolerated)."""
    items = [data] if isinstance(data, Mapping) else _list(data, "ticker")
    return [parse_ticker(item) for item in items]


def _level(raw: Any) -> Level:
    if isinstance(raw, Mapping):
        f = Fields(raw, "book level")
        return (to_decimal(f.req("P", "price")), to_decimal(f.req("A", "amount")))
    if isinstance(raw, list) and len(raw) >= 2:
        return (to_decimal(raw[0]), to_decimal(raw[1]))
    raise ProtocolError(f"bad book level: {raw!r}")


def parse_orderbook(data: Any) -> OrderBook:
    """Parse ``/api/v2/orderbook`` data; ``timestamp`` may be a float."""
    f = Fields(data, "orderbook")
    return OrderBook(
        timestamp_ms=to_int(f.req("timestamp")),
        bids=tuple(_level(x) for x in _list(f.opt("bids") or [], "bids")),
        asks=tuple(_level(x) for x in _list(f.opt("asks") or [], "asks")),
    )


def parse_public_trades(data: Any) -> list[PublicTrade]:
    """Parse ``/api/v2/trades`` data."""
    trades = []
    for raw in _list(data, "trades"):
        f = Fields(raw, "trade")
        side = f.opt("side")
        trades.append(
            PublicTrade(
                pair=_pair(f),
                trade_id=str(f.req("tid")),
                timestamp_ms=to_int(f.req("date")),
                price=to_decimal(f.req("price")),
                amount=to_decimal(f.req("amount")),
                side=None if side is None else parse_side(side),
            )
        )
    return trades


def _seconds(value: Any) -> int:
    stamp = to_int(value)
    return stamp // 1000 if stamp >= _MS_CUTOFF else stamp


def parse_ohlc(data: Any) -> list[Candle]:
    """Parse graph-api ``/v1/ohlcs`` (bare list, time in s) or legacy ``/api/v2/ohlc`` data (time in ms)."""
    candles = []
    for raw in _list(data, "ohlc"):
        f = Fields(raw, "candle")
        candles.append(
            Candle(
                pair=_pair(f),
                time_s=_seconds(f.req("time")),
                open=to_decimal(f.req("open")),
                high=to_decimal(f.req("high")),
                low=to_decimal(f.req("low")),
                close=to_decimal(f.req("close")),
                volume=to_decimal(f.req("volume")),
                total=opt_decimal(f.opt("total")),
                average=opt_decimal(f.opt("average")),
                daily_change_amount=opt_decimal(f.opt("dailyChangeAmount")),
                daily_change_percentage=opt_decimal(f.opt("dailyChangePercentage")),
            )
        )
    return candles


_KLINE_KEYS = ("t", "o", "h", "l", "c", "v")


def parse_klines(data: Any) -> list[Kline]:
    """Parse graph-api ``/v1/klines/history`` (TradingView UDF: ``s`` plus parallel arrays)."""
    f = Fields(data, "klines")
    status = str(f.req("s")).lower()
    if status == "no_data":
        return []
    if status == "error":
        text = str(f.opt("errmsg") or "klines error")
        raise Rejected(text, message_code=text, endpoint="klines")
    if status != "ok":
        raise ProtocolError(f"klines: unknown status {status!r}")
    columns = [_list(f.opt(key) or [], f"klines {key}") for key in _KLINE_KEYS]
    if len({len(c) for c in columns}) != 1:
        raise ProtocolError(f"klines: arrays of different lengths {[len(c) for c in columns]}")
    return [
        Kline(
            time_s=_seconds(t),
            open=to_decimal(o),
            high=to_decimal(h),
            low=to_decimal(lo),
            close=to_decimal(c),
            volume=to_decimal(v),
        )
        for t, o, h, lo, c, v in zip(*columns, strict=True)
    ]


def parse_balances(data: Any) -> list[Balance]:
    """Parse ``/api/v1/users/balances`` data; comma decimals are accepted."""
    balances = []
    for raw in _list(data, "balances"):
        f = Fields(raw, "balance")
        name = f.opt("assetname", "assetName")
        balances.append(
            Balance(
                asset=str(f.req("asset")).upper(),
                asset_name=None if name is None else str(name),
                balance=to_decimal(f.req("balance")),
                locked=to_decimal(f.req("locked")),
                free=to_decimal(f.req("free")),
                order_fund=opt_decimal(f.opt("orderFund")),
                request_fund=opt_decimal(f.opt("requestFund")),
                precision=opt_int(f.opt("precision")),
                timestamp_ms=opt_int(f.opt("timestamp")),
            )
        )
    return balances


def _client_id(value: Any) -> str | None:
    return None if value is None or value == "" else str(value)


def _stop_price(value: Any) -> Decimal | None:
    # Non-stop orders report stopPrice as null or "0.00"; both mean "none".
    price = opt_decimal(value)
    return None if price is None or price == 0 else price


def parse_order_ack(data: Any) -> OrderAck:
    """Parse the ``data`` of a successful ``POST /api/v1/order``."""
    f = Fields(data, "order ack")
    return OrderAck(
        id=to_int(f.req("id")),
        timestamp_ms=opt_int(f.opt("datetime")),
        side=parse_side(f.req("type", "orderType")),
        method=parse_method(f.req("method", "orderMethod")),
        pair=_pair(f),
        quantity=to_decimal(f.req("quantity")),
        price=opt_decimal(f.opt("price")),
        stop_price=_stop_price(f.opt("stopPrice")),
        client_order_id=_client_id(f.opt("newOrderClientId", "orderClientId")),
    )


def parse_order(obj: Any) -> Order:
    """Parse one order of openOrders / allOrders / order/{id}."""
    f = Fields(obj, "order")
    quantity = f.opt("quantity", "amount")
    amount = f.opt("amount", "quantity")
    if quantity is None or amount is None:
        raise ProtocolError("order: missing field 'quantity'")
    left = f.opt("leftAmount")
    time_ms = opt_int(f.opt("time"))
    return Order(
        id=to_int(f.req("id")),
        pair=_pair(f),
        side=parse_side(f.req("type", "orderType")),
        method=parse_method(f.req("method", "orderMethod")),
        status=parse_status(f.req("status")),
        price=to_decimal(f.opt("price") or 0),
        amount=to_decimal(amount),
        quantity=to_decimal(quantity),
        left_amount=to_decimal(left) if left is not None else to_decimal(quantity),
        stop_price=_stop_price(f.opt("stopPrice")),
        client_order_id=_client_id(f.opt("orderClientId", "newOrderClientId")),
        # ``time`` is 0 in several live samples; 0 is not a real time.
        time_ms=time_ms or None,
        update_time_ms=opt_int(f.opt("updateTime")),
    )


def parse_open_orders(data: Any) -> list[Order]:
    """Parse ``/api/v1/openOrders`` data (``{"asks": [...], "bids": [...]}``, or a plain list)."""
    if isinstance(data, list):
        return [parse_order(o) for o in data]
    f = Fields(data, "open orders")
    asks = _list(f.opt("asks") or [], "asks")
    bids = _list(f.opt("bids") or [], "bids")
    return [parse_order(o) for o in (*bids, *asks)]


def parse_orders(data: Any) -> list[Order]:
    """Parse ``/api/v1/allOrders`` data."""
    return [parse_order(o) for o in _list(data, "orders")]


def parse_user_trade(obj: Any) -> UserTrade:
    """Parse one user trade (REST 3.6 or WebSocket 423)."""
    f = Fields(obj, "user trade")
    return UserTrade(
        id=to_int(f.req("id")),
        order_id=to_int(f.req("orderId")),
        timestamp_ms=to_int(f.req("timestamp")),
        price=to_decimal(f.req("price")),
        amount=to_decimal(f.req("amount")),
        fee=to_decimal(f.opt("fee") or 0),
        tax=to_decimal(f.opt("tax") or 0),
        side=parse_side(f.req("orderType", "type")),
        numerator=str(f.req("numeratorSymbol")).upper(),
        denominator=str(f.req("denominatorSymbol")).upper(),
        client_order_id=_client_id(f.opt("orderClientId")),
        precise_amount=opt_decimal(f.opt("preciseAmount")),
    )


def parse_user_trades(data: Any) -> list[UserTrade]:
    """Parse ``/api/v1/users/transactions/trade`` data."""
    return [parse_user_trade(t) for t in _list(data, "user trades")]


def parse_transaction_type(value: Any) -> TransactionType:
    """Parse ``Deposit``/``deposit``/``Withdrawal`` (``withdraw`` tolerated)."""
    lowered = str(value).strip().lower()
    if lowered in ("withdraw", "withdrawal"):
        return TransactionType.WITHDRAWAL
    if lowered == "deposit":
        return TransactionType.DEPOSIT
    raise ProtocolError(f"unknown transaction type: {value!r}")


def parse_transaction(obj: Any) -> Transaction:
    """Parse one crypto or fiat transaction."""
    f = Fields(obj, "transaction")
    return Transaction(
        id=to_int(f.req("id")),
        timestamp_ms=to_int(f.req("timestamp")),
        type=parse_transaction_type(f.req("balanceType", "type")),
        currency=str(f.req("currencySymbol", "symbol")).upper(),
        amount=to_decimal(f.req("amount")),
        funds=opt_decimal(f.opt("funds")),
        fee=to_decimal(f.opt("fee") or 0),
        tax=to_decimal(f.opt("tax") or 0),
    )


def parse_transactions(data: Any) -> list[Transaction]:
    """Parse ``/api/v1/users/transactions/crypto`` or ``/fiat`` data."""
    return [parse_transaction(t) for t in _list(data, "transactions")]
