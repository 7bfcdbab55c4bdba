"""BTCTurk REST endpoints: public /api/v2 and private /api/v1."""

from __future__ import annotations

import json
import logging
from decimal import Decimal
from typing import Any

from aiohttp import web

from btcbot.sim import views
from btcbot.sim.book import Order
from btcbot.sim.config import SymbolRules
from btcbot.sim.engine import Rejected
from btcbot.sim.funding import select
from btcbot.sim.responses import STATE, account_of, fail, ok, raw
from btcbot.sim.rules import check_order, parse_order
from btcbot.sim.state import SimState

log = logging.getLogger(__name__)

PAIR_NOT_FOUND = "PAIR_NOT_FOUND"
ORDER_NOT_FOUND = "Order not found"
DAY_MS = 86_400_000
# Times below this are taken as seconds: ccxt sends allOrders startTime in seconds.
_SECONDS_CUTOFF = 100_000_000_000


def _state(request: web.Request) -> SimState:
    return request.app[STATE]


def _int_param(request: web.Request, name: str) -> int | None:
    """An optional integer query parameter; ValueError if present but malformed."""
    value = request.query.get(name)
    if value is None or value == "":
        return None
    return int(value)


def _pair(state: SimState, request: web.Request, *, required: bool) -> SymbolRules | None | web.Response:
    name = request.query.get("pairSymbol")
    if not name:
        return fail(400, PAIR_NOT_FOUND) if required else None
    rules = state.symbol(name)
    return rules if rules is not None else fail(400, PAIR_NOT_FOUND)


# -- public ------------------------------------------------------------------------------------


async def server_time(request: web.Request) -> web.Response:
    """GET /api/v2/server/time (bare object, no envelope)."""
    return raw(views.server_time(_state(request).now_ms()))


async def exchange_info(request: web.Request) -> web.Response:
    """GET /api/v2/server/exchangeinfo."""
    state = _state(request)
    return ok(
        {
            "timeZone": "UTC",
            "serverTime": state.now_ms(),
            "symbols": [views.symbol_info(s, state.engine.reference_price(s.name)) for s in state.config.symbols],
            "currencies": [views.currency_info(c) for c in state.currencies.values()],
            "currencyOperationBlocks": [
                {"currencySymbol": c, "depositDisabled": False, "withdrawalDisabled": False} for c in state.currencies
            ],
        }
    )


async def ticker(request: web.Request) -> web.Response:
    """GET /api/v2/ticker[?pairSymbol=]: always an array."""
    state = _state(request)
    rules = _pair(state, request, required=False)
    if isinstance(rules, web.Response):
        return rules
    pairs = [rules] if rules is not None else list(state.config.symbols)
    now = state.now_ms()
    return ok([views.ticker(p, state.engine, now) for p in pairs])


async def ticker_currency(request: web.Request) -> web.Response:
    """GET /api/v2/ticker/currency?symbol=USDT: tickers of pairs that trade that currency."""
    state = _state(request)
    symbol = request.query.get("symbol", "").upper()
    pairs = [s for s in state.config.symbols if symbol in (s.numerator, s.denominator)]
    now = state.now_ms()
    return ok([views.ticker(p, state.engine, now) for p in pairs])


async def orderbook(request: web.Request) -> web.Response:
    """GET /api/v2/orderbook?pairSymbol=&limit= (503 while the stale-book fault is on)."""
    state = _state(request)
    if state.faults.stale_book:
        return fail(503, "ORDER_BOOK_IS_NOT_AVAILABLE", 503)
    rules = _pair(state, request, required=True)
    if not isinstance(rules, SymbolRules):
        return rules or fail(400, PAIR_NOT_FOUND)
    try:
        limit = _int_param(request, "limit") or state.config.orderbook_default_limit
    except ValueError:
        return fail(400, "FAILED_ORDER_PARAMETER")
    limit = max(1, min(limit, state.config.orderbook_max_limit))
    return ok(views.orderbook(rules, state.engine, limit, state.now_ms()))


async def trades(request: web.Request) -> web.Response:
    """GET /api/v2/trades?pairSymbol=&last=: newest first."""
    state = _state(request)
    rules = _pair(state, request, required=True)
    if not isinstance(rules, SymbolRules):
        return rules or fail(400, PAIR_NOT_FOUND)
    try:
        last = _int_param(request, "last") or 50
    except ValueError:
        return fail(400, "FAILED_ORDER_PARAMETER")
    last = max(1, min(last, state.config.max_trades_last))
    return ok([views.public_trade(rules, f) for f in state.engine.public_trades(rules.name, last)])


# -- private -----------------------------------------------------------------------------------


async def balances(request: web.Request) -> web.Response:
    """GET /api/v1/users/balances: every listed currency plus anything else the account holds."""
    state = _state(request)
    wallet = state.engine.wallet(account_of(request).api_key)
    now = state.now_ms()
    comma = state.config.balance_decimal_comma
    assets = list(state.currencies) + [a for a in wallet.assets() if a not in state.currencies]
    data = []
    for asset in assets:
        currency = state.currencies.get(asset)
        if currency is None:
            continue
        data.append(views.balance(currency, wallet.balance(asset), now, comma=comma))
    return ok(data, "SUCCESS")


async def _order_params(request: web.Request) -> dict[str, Any] | None:
    """Body (JSON or form) merged with the query string, the query winning as the 2019 docs say."""
    params: dict[str, Any] = {}
    if request.can_read_body:
        text = await request.text()
        if text.strip():
            if request.content_type == "application/x-www-form-urlencoded":
                params.update((await request.post()).items())
            else:
                try:
                    body = json.loads(text, parse_float=Decimal)
                except ValueError:
                    return None
                if not isinstance(body, dict):
                    return None
                params.update(body)
    params.update(request.query.items())
    return params


async def submit_order(request: web.Request) -> web.StreamResponse:
    """POST /api/v1/order. Duplicate newOrderClientId values are accepted, like BTCTurk."""
    state = _state(request)
    account = account_of(request)
    params = await _order_params(request)
    if params is None:
        return fail(400, "FAILED_ORDER_PARAMETER")
    parsed = parse_order(params, account.api_key, state.symbol, state.new_client_id)
    if isinstance(parsed, Rejected):
        return fail(400, parsed.code)
    rules = state.engine.symbols[parsed.pair]
    book = state.engine.books[parsed.pair]
    currency = state.currencies.get(rules.denominator)
    problem = check_order(
        parsed,
        rules,
        quote_precision=currency.precision if currency else rules.denominator_scale,
        reference_price=state.engine.reference_price(parsed.pair),
        best_bid=book.best_bid(),
    )
    if problem is not None:
        return fail(400, problem.code)
    result = state.engine.place(parsed, state.now_ms())
    state.publish()
    if isinstance(result, Rejected):
        return fail(400, result.code)
    if _lose_response(state):
        log.info("fault: dropping the response to order %s (%s)", result.order_id, result.client_id)
        transport = request.transport
        if transport is not None:
            transport.abort()
        # Nothing can reach the client any more; the body below goes nowhere.
        return web.Response(status=500)
    return ok(views.submitted(result, rules), "OK")


def _lose_response(state: SimState) -> bool:
    faults = state.faults
    if faults.lose_response_next > 0:
        faults.lose_response_next -= 1
        return True
    return bool(faults.lose_response_rate) and state.fault_rng.random() < faults.lose_response_rate


async def cancel_order(request: web.Request) -> web.Response:
    """DELETE /api/v1/order?id=: cancels at once (the 452 event follows on the WS feed)."""
    state = _state(request)
    try:
        order_id = _int_param(request, "id")
    except ValueError:
        order_id = None
    if order_id is None:
        return fail(400, "NO_ORDER_MATCHES_YOUR_REQUEST")
    result = state.engine.cancel(account_of(request).api_key, order_id, state.now_ms())
    state.publish()
    if isinstance(result, Rejected):
        return fail(400, result.code)
    return ok(None, "SUCCESS", with_data=state.config.cancel_response_has_data)


def _order_json(state: SimState, order: Order) -> dict[str, Any]:
    return views.order(order, state.engine.symbols[order.pair])


async def open_orders(request: web.Request) -> web.Response:
    """GET /api/v1/openOrders[?pairSymbol=]: asks are sells, bids are buys."""
    state = _state(request)
    rules = _pair(state, request, required=False)
    if isinstance(rules, web.Response):
        return rules
    orders = state.engine.open_orders(account_of(request).api_key, rules.name if rules else None)
    return ok(
        {
            "asks": [_order_json(state, o) for o in orders if o.side == "sell"],
            "bids": [_order_json(state, o) for o in orders if o.side == "buy"],
        },
        "SUCCESS",
    )


def _ms(value: int | None) -> int | None:
    if value is None:
        return None
    return value * 1000 if value < _SECONDS_CUTOFF else value


async def all_orders(request: web.Request) -> web.Response:
    """GET /api/v1/allOrders: oldest first; with orderId the page starts there, else at the newest."""
    state = _state(request)
    rules = _pair(state, request, required=False)
    if isinstance(rules, web.Response):
        return rules
    try:
        from_id = _int_param(request, "orderId")
        start, end = _ms(_int_param(request, "startTime")), _ms(_int_param(request, "endTime"))
        page = max(1, _int_param(request, "page") or 1)
        limit = max(1, min(_int_param(request, "limit") or 100, 1000))
    except ValueError:
        return fail(400, "FAILED_ORDER_PARAMETER")
    orders = [
        o
        for o in state.engine.orders_of(account_of(request).api_key)
        if (rules is None or o.pair == rules.name)
        and (from_id is None or o.order_id >= from_id)
        and (start is None or o.created_ms >= start)
        and (end is None or o.created_ms <= end)
    ]
    skip = (page - 1) * limit
    if from_id is not None:
        selected = orders[skip : skip + limit]
    else:
        stop = len(orders) - skip
        selected = orders[max(0, stop - limit) : max(0, stop)]
    return ok([_order_json(state, o) for o in selected], "SUCCESS")


async def order_by_id(request: web.Request) -> web.Response:
    """GET /api/v1/order/{id}; unknown ids are HTTP 400 "Order not found" (code 1152)."""
    state = _state(request)
    try:
        order_id = int(request.match_info["order_id"])
    except ValueError:
        return fail(400, ORDER_NOT_FOUND)
    order = state.engine.order(order_id)
    if order is None or order.account != account_of(request).api_key:
        return fail(400, ORDER_NOT_FOUND)
    return ok(_order_json(state, order), "SUCCESS")


async def user_trades(request: web.Request) -> web.Response:
    """GET /api/v1/users/transactions/trade: newest first, last 30 days unless dates are given."""
    state = _state(request)
    query = request.query
    sides = {s.lower() for s in query.getall("type", [])}
    currencies = {s.upper() for s in query.getall("symbol", [])}
    rules = _pair(state, request, required=False)
    if isinstance(rules, web.Response):
        return rules
    try:
        order_id = _int_param(request, "orderId")
        now = state.now_ms()
        start = _int_param(request, "startDate")
        end = _int_param(request, "endDate")
    except ValueError:
        return fail(400, "FAILED_ORDER_PARAMETER")
    start = start if start is not None else now - 30 * DAY_MS
    end = end if end is not None else now
    selected = []
    for trade in reversed(state.engine.trades_of(account_of(request).api_key)):
        pair = state.engine.symbols[trade.pair]
        if order_id is not None:
            if trade.order_id == order_id:
                selected.append(views.user_trade(trade, pair, state.config.trade_amount_scale))
            continue
        if not start <= trade.ts_ms <= end:
            continue
        if sides and trade.side not in sides:
            continue
        if currencies and not currencies & {pair.numerator, pair.denominator}:
            continue
        if rules is not None and trade.pair != rules.name:
            continue
        selected.append(views.user_trade(trade, pair, state.config.trade_amount_scale))
    return ok(selected, "SUCCESS")


def _repeated(request: web.Request, *names: str) -> list[str]:
    """Every value of a repeatable parameter under any of its spellings (comma lists split too)."""
    values: list[str] = []
    for name in names:
        for value in request.query.getall(name, []):
            values.extend(v.strip() for v in value.split(",") if v.strip())
    return values


async def _transactions(request: web.Request, *, fiat: bool) -> web.Response:
    state = _state(request)
    # type/symbol per the current docs; the 2019 README spells the fiat ones balanceTypes/currencySymbols.
    kinds = {k.lower() for k in _repeated(request, "type", "balanceTypes")}
    currencies = {c.upper() for c in _repeated(request, "symbol", "currencySymbols")}
    if kinds - {"deposit", "withdrawal"}:
        return fail(400, "FAILED_ORDER_PARAMETER")
    try:
        start = _int_param(request, "startDate")
        end = _int_param(request, "endDate")
    except ValueError:
        return fail(400, "FAILED_ORDER_PARAMETER")
    now = state.now_ms()
    selected = select(
        state.funding.of(account_of(request).api_key),
        fiat=fiat,
        kinds=kinds,
        currencies=currencies,
        start_ms=start if start is not None else now - 30 * DAY_MS,
        end_ms=end if end is not None else now,
    )
    return ok([views.transfer(t) for t in selected], "SUCCESS")


async def crypto_transactions(request: web.Request) -> web.Response:
    """GET /api/v1/users/transactions/crypto: deposits/withdrawals of crypto, newest first, last 30 days."""
    return await _transactions(request, fiat=False)


async def fiat_transactions(request: web.Request) -> web.Response:
    """GET /api/v1/users/transactions/fiat: deposits/withdrawals of TRY, USD, EUR, newest first, last 30 days."""
    return await _transactions(request, fiat=True)


def add_routes(app: web.Application) -> None:
    """Register every BTCTurk path (both spellings where the docs disagree on case)."""
    r = app.router
    r.add_get("/api/v2/server/time", server_time, name="server_time")
    r.add_get("/api/v2/server/exchangeinfo", exchange_info, name="exchangeinfo")
    r.add_get("/api/v2/ticker", ticker, name="ticker")
    r.add_get("/api/v2/ticker/currency", ticker_currency, name="ticker_currency")
    r.add_get("/api/v2/orderbook", orderbook, name="orderbook")
    r.add_get("/api/v2/orderBook", orderbook, name="orderbook_alias")
    r.add_get("/api/v2/trades", trades, name="trades")
    r.add_get("/api/v1/users/balances", balances, name="balances")
    order = r.add_resource("/api/v1/order", name="order")
    order.add_route("POST", submit_order)
    order.add_route("DELETE", cancel_order)
    r.add_get("/api/v1/openOrders", open_orders, name="open_orders")
    r.add_get("/api/v1/allOrders", all_orders, name="all_orders")
    r.add_get("/api/v1/order/{order_id}", order_by_id, name="order_by_id")
    r.add_get("/api/v1/users/transactions/trade", user_trades, name="user_trades")
    r.add_get("/api/v1/users/transactions/crypto", crypto_transactions, name="crypto_transactions")
    r.add_get("/api/v1/users/transactions/fiat", fiat_transactions, name="fiat_transactions")
