"""BTCTurk WebSocket payloads (`[type, {...}]` frames) and order book diffs. Pure functions."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from btcbot.sim.book import Order
from btcbot.sim.config import SymbolRules
from btcbot.sim.engine import Fill, MatchingEngine, UserTrade
from btcbot.sim.views import fixed, negative, number, plain

Frame = list[Any]
Levels = dict[Decimal, Decimal]

HELLO = 991
ACK = 100
LOGIN = 114
SUBSCRIBE = 151
REQUEST = 101
TICKER_ALL = 401
TICKER_PAIR = 402
TRADE_LIST = 421
TRADE_SINGLE = 422
USER_TRADE = 423
BOOK_FULL = 431
BOOK_DIFF = 432
USER_ORDER_MATCH = 441
ORDER_INSERT = 451
ORDER_DELETE = 452
# Change kinds of a 432 level.
CP_CHANGED, CP_NEW, CP_DELETED = 0, 1, 3
TRADE_DECIMALS = 10
BOOK_LEVELS = 100


def frame(kind: int, body: dict[str, Any]) -> Frame:
    """`[type, {"type": type, ...}]`."""
    return [kind, {"type": kind, **body}]


def hello() -> Frame:
    """The version greeting sent on connect."""
    return frame(HELLO, {"current": "5.1.0", "min": "2.3.0"})


def ack(join: bool, channel: str, event: str) -> Frame:
    """Reply to a 151 subscribe or unsubscribe."""
    return frame(ACK, {"ok": True, "message": f"{'join' if join else 'leave'}|{channel}:{event}"})


def login_reply(ok: bool, message: str) -> Frame:
    """Reply to a 114 login."""
    return frame(LOGIN, {"ok": ok, "message": message})


def _side_code(side: str) -> int:
    return 0 if side == "buy" else 1


def _trade_item(fill: Fill) -> dict[str, Any]:
    return {
        "D": str(fill.ts_ms),
        "I": str(fill.trade_id),
        "A": fixed(fill.amount, TRADE_DECIMALS),
        "P": fixed(fill.price, TRADE_DECIMALS),
        "S": _side_code(fill.taker_side),
    }


def trade_list(pair: str, fills: list[Fill]) -> Frame:
    """421: recent trades, sent once on joining the trade channel."""
    items = [_trade_item(f) for f in fills]
    return frame(TRADE_LIST, {"symbol": pair, "items": items, "channel": "trade", "event": pair})


def trade_single(fill: Fill) -> Frame:
    """422: one new trade; S is the taker's side (0 buy, 1 sell)."""
    return frame(TRADE_SINGLE, {**_trade_item(fill), "PS": fill.pair, "channel": "trade", "event": fill.pair})


def book_levels(engine: MatchingEngine, pair: str, limit: int = BOOK_LEVELS) -> tuple[Levels, Levels]:
    """Top levels as {price: amount} for bids and asks."""
    bids, asks = engine.books[pair].depth(limit)
    return dict(bids), dict(asks)


def _level_list(rules: SymbolRules, levels: Levels, descending: bool) -> list[dict[str, str]]:
    return [
        {"A": fixed(levels[p], rules.numerator_scale), "P": fixed(p, rules.denominator_scale)}
        for p in sorted(levels, reverse=descending)
    ]


def book_full(rules: SymbolRules, bids: Levels, asks: Levels, cs: int, channel: str) -> Frame:
    """431: the whole top of book; AO asks ascending, BO bids descending."""
    return frame(
        BOOK_FULL,
        {
            "CS": cs,
            "PS": rules.name,
            "AO": _level_list(rules, asks, descending=False),
            "BO": _level_list(rules, bids, descending=True),
            "channel": channel,
            "event": rules.name,
        },
    )


def level_changes(rules: SymbolRules, old: Levels, new: Levels, descending: bool) -> list[dict[str, Any]]:
    """CP-tagged changes that turn `old` into `new` (deleted levels carry their last amount)."""
    changes: list[dict[str, Any]] = []
    for price in sorted(old.keys() | new.keys(), reverse=descending):
        before, after = old.get(price), new.get(price)
        if before == after:
            continue
        if after is None:
            assert before is not None
            kind, amount = CP_DELETED, before
        else:
            kind, amount = (CP_NEW if before is None else CP_CHANGED), after
        changes.append(
            {"CP": kind, "P": fixed(price, rules.denominator_scale), "A": fixed(amount, rules.numerator_scale)}
        )
    return changes


def book_diff(rules: SymbolRules, old: tuple[Levels, Levels], new: tuple[Levels, Levels], cs: int) -> Frame | None:
    """432 from one bids/asks state to the next, or None when nothing changed."""
    bids = level_changes(rules, old[0], new[0], descending=True)
    asks = level_changes(rules, old[1], new[1], descending=False)
    if not bids and not asks:
        return None
    body = {"CS": cs, "PS": rules.name, "AO": asks, "BO": bids, "channel": "obdiff", "event": rules.name}
    return frame(BOOK_DIFF, body)


def ticker_fields(rules: SymbolRules, engine: MatchingEngine, now_ms: int, numerator_precision: int) -> dict[str, Any]:
    """The 402 fields of one pair (also the items of 401). Strings, as client typings expect."""
    book = engine.books[rules.name]
    best_bid, best_ask = book.bids.best(), book.asks.best()
    stats = engine.day_stats(rules.name, now_ms)
    zero = Decimal(0)
    last = stats.last if stats else zero
    opened = stats.open if stats else zero
    daily = last - opened
    return {
        "PS": rules.name,
        "B": plain(best_bid.price if best_bid else zero),
        "A": plain(best_ask.price if best_ask else zero),
        "BA": plain(best_bid.total if best_bid else zero),
        "AA": plain(best_ask.total if best_ask else zero),
        "LA": plain(last),
        "O": plain(opened),
        "H": plain(stats.high if stats else zero),
        "L": plain(stats.low if stats else zero),
        "V": plain(number(stats.volume if stats else zero, 8)),
        "AV": plain(number(stats.average if stats else zero, 8)),
        "D": plain(daily),
        "DP": plain(number(daily / opened * 100 if opened else zero, 2)),
        "DS": rules.denominator,
        "NS": rules.numerator,
        "PId": rules.pair_id,
        "NPr": numerator_precision,
        "DPr": rules.denominator_scale,
        "Ord": rules.display_order,
    }


def ticker_pair(fields: dict[str, Any]) -> Frame:
    """402: one pair's ticker."""
    return frame(TICKER_PAIR, {**fields, "channel": "ticker", "event": fields["PS"]})


def ticker_all(items: list[dict[str, Any]]) -> Frame:
    """401: every pair's ticker."""
    return frame(TICKER_ALL, {"items": items, "channel": "ticker", "event": "all"})


def _method_code(order: Order) -> int:
    return 0 if order.method == "limit" else 1


def _lefts(order: Order) -> tuple[Decimal, Decimal]:
    """Base and quote still to trade (a market buy counts its remainder in quote)."""
    if order.method == "market" and order.side == "buy":
        return Decimal(0), order.left
    return order.left, order.left * order.price


def order_event(kind: int, order: Order, rules: SymbolRules, user_id: int) -> Frame:
    """451 OrderInsert / 452 OrderDelete."""
    num_left, denom_left = _lefts(order)
    return frame(
        kind,
        {
            "pairId": rules.pair_id,
            "symbol": rules.name,
            "id": order.order_id,
            "method": _method_code(order),
            "userId": user_id,
            "orderType": _side_code(order.side),
            "price": fixed(order.price, rules.denominator_scale),
            "amount": plain(order.quantity),
            "numLeft": plain(num_left),
            "denomLeft": plain(denom_left),
            "newOrderClientId": order.client_id,
        },
    )


def order_match(order: Order, fill: Fill, rules: SymbolRules) -> Frame:
    """441 UserOrderMatch for the account's order in `fill` (`order` is its state after the fill)."""
    num_left, denom_left = _lefts(order)
    return frame(
        USER_ORDER_MATCH,
        {
            "id": order.order_id,
            "method": _method_code(order),
            "pair": rules.pair_id,
            "symbol": rules.name,
            "isBid": order.side == "buy",
            "price": fixed(fill.price, rules.denominator_scale),
            "amount": plain(fill.amount),
            "timestamp": fill.ts_ms,
            "clientId": order.client_id,
            "numTotal": plain(order.filled_base),
            "numLeft": plain(num_left),
            "denomTotal": plain(order.filled_quote),
            "denomLeft": plain(denom_left),
        },
    )


def user_trade(trade: UserTrade, rules: SymbolRules) -> Frame:
    """423 UserTrade, signed like the REST trade list (sold amounts, fees and tax negative)."""
    signed = trade.amount if trade.side == "buy" else -trade.amount
    return frame(
        USER_TRADE,
        {
            "id": trade.trade_id,
            "orderId": trade.order_id,
            "timestamp": trade.ts_ms,
            "numeratorSymbol": rules.numerator,
            "denominatorSymbol": rules.denominator,
            "amount": plain(signed),
            "price": fixed(trade.price, rules.denominator_scale),
            "fee": negative(trade.fee),
            "tax": negative(trade.tax),
            "orderType": trade.side,
            "orderClientId": trade.client_id,
            "preciseAmount": number(signed),
        },
    )
