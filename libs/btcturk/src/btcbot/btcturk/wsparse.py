"""Pure WebSocket frame building and parsing (frames are ``[type, {"type": type, ...}]``)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import msgspec

from btcbot.btcturk.errors import ProtocolError
from btcbot.btcturk.models import Level
from btcbot.btcturk.parse import (
    Fields,
    decode_json,
    normalise_pair,
    opt_decimal,
    opt_int,
    parse_method,
    parse_side,
    parse_user_trade,
    to_bool,
    to_decimal,
    to_int,
)
from btcbot.btcturk.wsmodels import (
    BalanceUpdated,
    BookChange,
    BookDiff,
    BookSnapshot,
    Hello,
    LevelChange,
    LoginResult,
    OrderEvent,
    OrderEventKind,
    OrderMatch,
    SubscriptionAck,
    TickerAll,
    TradeList,
    Unknown,
    UserTradeEvent,
    WsMessage,
    WsTicker,
    WsTrade,
)

SUBSCRIBE = 151


def subscribe_frame(channel: str, event: str, *, join: bool = True) -> str:
    """Frame 151 that joins (or with ``join=False`` leaves) ``channel``/``event``."""
    return msgspec.json.encode(
        [SUBSCRIBE, {"type": SUBSCRIBE, "channel": channel, "event": event, "join": join}]
    ).decode()


def encode_frame(frame: list[Any]) -> str:
    """JSON text of an outgoing frame."""
    return msgspec.json.encode(frame).decode()


def decode_frame(raw: str | bytes) -> WsMessage:
    """Parse one text frame into a typed message (unknown types become :class:`Unknown`)."""
    decoded = decode_json(raw.encode() if isinstance(raw, str) else raw)
    if isinstance(decoded, list) and len(decoded) == 2 and isinstance(decoded[1], Mapping):
        msg_type, payload = decoded
    elif isinstance(decoded, Mapping) and "type" in decoded:
        msg_type, payload = decoded["type"], decoded
    else:
        raise ProtocolError(f"unexpected frame shape: {str(decoded)[:120]}")
    code = to_int(msg_type)
    parser = _PARSERS.get(code)
    if parser is None:
        return Unknown(type=code, payload=payload)
    return parser(payload)


def _hello(p: Any) -> Hello:
    f = Fields(p, "991")
    current, minimum = f.opt("current"), f.opt("min")
    return Hello(current=None if current is None else str(current), min=None if minimum is None else str(minimum))


def _ack(p: Any) -> SubscriptionAck:
    f = Fields(p, "100")
    message = str(f.opt("message") or "")
    join: bool | None = None
    channel = event = None
    action, sep, target = message.partition("|")
    if sep:
        join = {"join": True, "leave": False}.get(action.lower())
        channel, _, event = target.partition(":")
    return SubscriptionAck(
        ok=to_bool(f.opt("ok") or False), message=message, join=join, channel=channel or None, event=event or None
    )


def _login(p: Any) -> LoginResult:
    f = Fields(p, "114")
    message = f.opt("message")
    return LoginResult(ok=to_bool(f.opt("ok") or False), message=None if message is None else str(message))


def _ticker(p: Any) -> WsTicker:
    f = Fields(p, "ticker")

    def dec(key: str) -> Any:
        return opt_decimal(f.opt(key))

    ns, ds = f.opt("NS"), f.opt("DS")
    return WsTicker(
        pair=normalise_pair(f.req("PS")),
        bid=dec("B"),
        ask=dec("A"),
        bid_amount=dec("BA"),
        ask_amount=dec("AA"),
        last=dec("LA"),
        open=dec("O"),
        high=dec("H"),
        low=dec("L"),
        volume=dec("V"),
        average=dec("AV"),
        daily=dec("D"),
        daily_percent=dec("DP"),
        numerator=None if ns is None else str(ns),
        denominator=None if ds is None else str(ds),
        pair_id=opt_int(f.opt("PId")),
    )


def _ticker_all(p: Any) -> TickerAll:
    items = Fields(p, "401").opt("items") or []
    return TickerAll(items=tuple(_ticker(i) for i in items))


def _trade(p: Any, pair: str | None) -> WsTrade:
    f = Fields(p, "trade")
    side = f.opt("S")
    return WsTrade(
        pair=normalise_pair(f.opt("PS") or pair or ""),
        trade_id=str(f.req("I")),
        timestamp_ms=to_int(f.req("D")),
        price=to_decimal(f.req("P")),
        amount=to_decimal(f.req("A")),
        side=None if side is None else parse_side(to_int(side)),
    )


def _trade_list(p: Any) -> TradeList:
    f = Fields(p, "421")
    pair = normalise_pair(f.opt("symbol") or f.opt("event") or "")
    return TradeList(pair=pair, trades=tuple(_trade(i, pair) for i in f.opt("items") or []))


def _trade_single(p: Any) -> WsTrade:
    return _trade(p, Fields(p, "422").opt("event"))


def _level(raw: Any) -> Level:
    f = Fields(raw, "book level")
    return (to_decimal(f.req("P")), to_decimal(f.req("A")))


def _change(raw: Any) -> LevelChange:
    f = Fields(raw, "book change")
    try:
        change = BookChange(to_int(f.req("CP")))
    except ValueError:
        raise ProtocolError(f"unknown CP {f.opt('CP')!r}") from None
    return LevelChange(price=to_decimal(f.req("P")), amount=to_decimal(f.opt("A") or 0), change=change)


def _book_pair(f: Fields) -> str:
    return normalise_pair(f.opt("PS") or f.req("event"))


def _snapshot(p: Any) -> BookSnapshot:
    f = Fields(p, "431")
    channel = f.opt("channel")
    return BookSnapshot(
        pair=_book_pair(f),
        cs=to_int(f.req("CS")),
        bids=tuple(_level(x) for x in f.opt("BO") or []),
        asks=tuple(_level(x) for x in f.opt("AO") or []),
        channel=None if channel is None else str(channel),
    )


def _diff(p: Any) -> BookDiff:
    f = Fields(p, "432")
    return BookDiff(
        pair=_book_pair(f),
        cs=to_int(f.req("CS")),
        bids=tuple(_change(x) for x in f.opt("BO") or []),
        asks=tuple(_change(x) for x in f.opt("AO") or []),
    )


def _client_id(value: Any) -> str | None:
    return None if value is None or value == "" else str(value)


def _order_event(p: Any) -> OrderEvent:
    f = Fields(p, "order event")
    return OrderEvent(
        kind=OrderEventKind(to_int(f.req("type"))),
        order_id=to_int(f.req("id")),
        pair=normalise_pair(f.req("symbol")),
        side=parse_side(f.req("orderType")),
        method=parse_method(f.req("method")),
        price=to_decimal(f.req("price")),
        amount=to_decimal(f.req("amount")),
        num_left=opt_decimal(f.opt("numLeft")),
        denom_left=opt_decimal(f.opt("denomLeft")),
        client_order_id=_client_id(f.opt("newOrderClientId", "orderClientId")),
        pair_id=opt_int(f.opt("pairId")),
        user_id=opt_int(f.opt("userId")),
    )


def _order_match(p: Any) -> OrderMatch:
    f = Fields(p, "441")
    method = f.opt("method")
    pair = f.opt("symbol")
    pair_id = f.opt("pair", "pairId")
    return OrderMatch(
        order_id=to_int(f.req("id")),
        pair=normalise_pair(pair if pair is not None else ""),
        side=parse_side("buy" if to_bool(f.req("isBid")) else "sell"),
        method=None if method is None else parse_method(method),
        price=to_decimal(f.req("price")),
        amount=to_decimal(f.req("amount")),
        timestamp_ms=opt_int(f.opt("timestamp")),
        client_order_id=_client_id(f.opt("clientId", "newOrderClientId", "orderClientId")),
        # "pair" is the numeric pair id in live frames; tolerate a symbol there.
        pair_id=opt_int(pair_id) if str(pair_id).isdigit() else None,
        num_total=opt_decimal(f.opt("numTotal")),
        num_left=opt_decimal(f.opt("numLeft")),
        denom_total=opt_decimal(f.opt("denomTotal")),
        denom_left=opt_decimal(f.opt("denomLeft")),
    )


def _user_trade(p: Any) -> UserTradeEvent:
    return UserTradeEvent(trade=parse_user_trade(p))


def _balance(p: Any) -> BalanceUpdated:
    f = Fields(p, "201")
    payload = f.opt("payload")
    return BalanceUpdated(user_id=opt_int(f.opt("userId")), payload=None if payload is None else str(payload))


_PARSERS: dict[int, Callable[[Any], WsMessage]] = {
    991: _hello,
    100: _ack,
    114: _login,
    401: _ticker_all,
    402: _ticker,
    421: _trade_list,
    422: _trade_single,
    431: _snapshot,
    432: _diff,
    451: _order_event,
    452: _order_event,
    453: _order_event,
    441: _order_match,
    423: _user_trade,
    201: _balance,
}
