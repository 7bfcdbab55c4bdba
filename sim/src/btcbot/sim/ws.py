"""WebSocket feed at `/` and `/ws`: market channels, 114 login and private order/trade events."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import msgspec
from aiohttp import WSCloseCode, WSMsgType, web

from btcbot.sim import wsmessages as m
from btcbot.sim.auth import AuthFailed, authenticate_ws
from btcbot.sim.engine import Event, Fill, OrderEvent
from btcbot.sim.ratelimit import RateLimiter
from btcbot.sim.state import SimState

log = logging.getLogger(__name__)

_encoder = msgspec.json.Encoder(decimal_format="number")
HEARTBEAT_S = 15.0
QUEUE_LIMIT = 10_000
TRADE_LIST_SIZE = 50
# Change-sets each book subscription remembers, so a test can ask what a client should hold at CS n.
BOOK_HISTORY = 256
# Each subscription's CS counter starts this far above the previous one's, so CS values of one
# simulator run never repeat across subscriptions (a diff-per-tick feed needs years to cross it).
CS_SPACING = 1_000_000


@dataclass
class BookSub:
    """An orderbook/obdiff subscription: its own CS counter, the last levels sent and their recent history."""

    cs: int
    last: tuple[m.Levels, m.Levels] = field(default_factory=lambda: ({}, {}))
    history: OrderedDict[int, tuple[m.Levels, m.Levels]] = field(default_factory=OrderedDict)

    def record(self) -> None:
        """Remember `last` as the book a client holds once it has applied change-set `cs`."""
        self.history[self.cs] = self.last
        while len(self.history) > BOOK_HISTORY:
            self.history.popitem(last=False)


@dataclass(eq=False)
class Connection:
    """One client socket: its subscriptions, login and outgoing queue."""

    ws: web.WebSocketResponse
    transport: asyncio.BaseTransport | None
    queue: asyncio.Queue[str | None] = field(default_factory=lambda: asyncio.Queue(QUEUE_LIMIT))
    subs: set[tuple[str, str]] = field(default_factory=set)
    books: dict[tuple[str, str], BookSub] = field(default_factory=dict)
    account: str | None = None

    def send(self, payload: m.Frame) -> None:
        """Queue a frame; a client too slow to drain its queue is disconnected."""
        try:
            self.queue.put_nowait(_encoder.encode(payload).decode())
        except asyncio.QueueFull:
            log.warning("ws client too slow, closing")
            self.close()

    def close(self) -> None:
        """Ask the writer to close the socket after what is queued."""
        with contextlib.suppress(asyncio.QueueFull):
            self.queue.put_nowait(None)


class WsHub:
    """All live connections; turns engine events and periodic snapshots into frames."""

    def __init__(self, state: SimState, *, book_interval: float, snapshot_interval: float) -> None:
        self.state = state
        self.book_interval = book_interval
        self.snapshot_interval = snapshot_interval
        self.connections: list[Connection] = []
        self._limiter = RateLimiter()
        self._cs_base = 0
        state.subscribe(self.on_events)

    # -- engine events ------------------------------------------------------------------------

    def on_events(self, events: list[Event]) -> None:
        """Fan out public trades and each account's order events."""
        for event in events:
            if isinstance(event, Fill):
                self._on_fill(event)
            else:
                self._on_order(event)

    def _on_fill(self, fill: Fill) -> None:
        rules = self.state.engine.symbols[fill.pair]
        public = m.trade_single(fill)
        for conn in self.connections:
            if ("trade", fill.pair) in conn.subs:
                conn.send(public)
            for party in (fill.maker, fill.taker):
                if conn.account is not None and conn.account == party.account:
                    conn.send(m.order_match(party.order, fill, rules))
                    conn.send(m.user_trade(fill.user_trade(party), rules))

    def _on_order(self, event: OrderEvent) -> None:
        order = event.order
        account = self.state.accounts.get(order.account)
        if account is None:
            return
        kind = m.ORDER_INSERT if event.kind == "insert" else m.ORDER_DELETE
        frame = m.order_event(kind, order, self.state.engine.symbols[order.pair], account.user_id)
        for conn in self.connections:
            if conn.account == order.account:
                conn.send(frame)

    # -- periodic -----------------------------------------------------------------------------

    async def run(self) -> None:
        """Send diffs every book interval and full books/tickers every snapshot interval."""
        loop = asyncio.get_running_loop()
        next_snapshot = loop.time()
        while True:
            await asyncio.sleep(self.book_interval)
            try:
                self._drop_faulted()
                self._send_diffs()
                if loop.time() >= next_snapshot:
                    next_snapshot = loop.time() + self.snapshot_interval
                    self._send_snapshots()
            except Exception:
                log.exception("ws periodic send failed")

    def _drop_faulted(self) -> None:
        faults = self.state.faults
        while faults.ws_drop_next > 0 and self.connections:
            conn = self.connections.pop(0)
            faults.ws_drop_next -= 1
            log.info("fault: dropping a websocket connection")
            # Abort without a close frame, like a network failure would.
            if isinstance(conn.transport, asyncio.Transport):
                conn.transport.abort()
            conn.close()

    def _next_cs(self, current: int) -> int:
        faults = self.state.faults
        if faults.ws_sequence_gap_next > 0:
            faults.ws_sequence_gap_next -= 1
            return current + 2
        return current + 1

    def _send_diffs(self) -> None:
        engine = self.state.engine
        current: dict[str, tuple[m.Levels, m.Levels]] = {}
        for conn in self.connections:
            for (channel, pair), sub in conn.books.items():
                if channel != "obdiff":
                    continue
                if pair not in current:
                    current[pair] = m.book_levels(engine, pair)
                new = current[pair]
                diff = m.book_diff(engine.symbols[pair], sub.last, new, sub.cs + 1)
                if diff is not None:
                    # Only frames actually sent consume a sequence-gap fault.
                    sub.cs, sub.last = self._next_cs(sub.cs), new
                    diff[1]["CS"] = sub.cs
                    sub.record()
                    conn.send(diff)

    def _send_snapshots(self) -> None:
        state = self.state
        engine = state.engine
        now = state.now_ms()
        tickers: dict[str, dict[str, Any]] = {}
        for rules in state.config.symbols:
            currency = state.currencies.get(rules.numerator)
            precision = currency.precision if currency else rules.numerator_scale
            tickers[rules.name] = m.ticker_fields(rules, engine, now, precision)
        all_frame = m.ticker_all(list(tickers.values()))
        for conn in self.connections:
            if ("ticker", "all") in conn.subs:
                conn.send(all_frame)
            for channel, event in conn.subs:
                if channel == "ticker" and event in tickers:
                    conn.send(m.ticker_pair(tickers[event]))
            for (channel, pair), sub in conn.books.items():
                if channel == "orderbook":
                    sub.cs += 1
                    bids, asks = m.book_levels(engine, pair)
                    conn.send(m.book_full(engine.symbols[pair], bids, asks, sub.cs, "orderbook"))

    def book_at(self, pair: str, cs: int) -> tuple[m.Levels, m.Levels] | None:
        """The levels an obdiff subscriber of `pair` holds after applying change-set `cs` (None if unknown)."""
        for conn in self.connections:
            sub = conn.books.get(("obdiff", pair))
            if sub is not None and cs in sub.history:
                return sub.history[cs]
        return None

    def book_subscriptions(self, pair: str) -> list[int]:
        """Latest CS of every live obdiff subscription to `pair`."""
        return [sub.cs for conn in self.connections if (sub := conn.books.get(("obdiff", pair))) is not None]

    # -- client messages ----------------------------------------------------------------------

    def _join(self, conn: Connection, channel: str, event: str, join: bool) -> None:
        key = (channel, event)
        conn.send(m.ack(join, channel, event))
        if not join:
            conn.subs.discard(key)
            conn.books.pop(key, None)
            return
        conn.subs.add(key)
        # Unknown or lower-case pairs are acknowledged and then stay silent, as on BTCTurk.
        if event not in self.state.engine.symbols:
            return
        if channel == "trade":
            self._send_trade_list(conn, event)
        elif channel in ("orderbook", "obdiff"):
            self._cs_base += CS_SPACING
            conn.books[key] = BookSub(self._cs_base)
            self._send_book(conn, channel, event)

    def _send_trade_list(self, conn: Connection, pair: str) -> None:
        conn.send(m.trade_list(pair, self.state.engine.public_trades(pair, TRADE_LIST_SIZE)))

    def _send_book(self, conn: Connection, channel: str, pair: str) -> None:
        sub = conn.books[(channel, pair)]
        engine = self.state.engine
        sub.last = m.book_levels(engine, pair)
        sub.record()
        conn.send(m.book_full(engine.symbols[pair], *sub.last, sub.cs, channel))

    def _login(self, conn: Connection, body: dict[str, Any]) -> None:
        result = authenticate_ws(body.get("publicKey"), body.get("nonce"), body.get("signature"), self.state.accounts)
        if isinstance(result, AuthFailed):
            conn.send(m.login_reply(False, result.message))
            return
        conn.account = result.api_key
        conn.send(m.login_reply(True, "Authentication successful"))

    def _request(self, conn: Connection, body: dict[str, Any]) -> None:
        """101: re-send a trade list or a fresh book snapshot (which restarts that book's diffs)."""
        channel, pair, code = body.get("channel"), body.get("event"), body.get("code")
        if not isinstance(pair, str) or pair not in self.state.engine.symbols:
            return
        if code == m.TRADE_LIST:
            self._send_trade_list(conn, pair)
        elif code == m.BOOK_FULL and isinstance(channel, str) and (channel, pair) in conn.books:
            conn.books[(channel, pair)].cs += 1
            self._send_book(conn, channel, pair)

    def handle_text(self, conn: Connection, text: str) -> None:
        """Dispatch one client frame; malformed frames are ignored like unknown types."""
        try:
            message = json.loads(text)
        except ValueError:
            return
        if not isinstance(message, list) or len(message) != 2 or not isinstance(message[1], dict):
            return
        kind, body = message
        if kind == m.SUBSCRIBE:
            channel, event = body.get("channel"), body.get("event")
            if isinstance(channel, str) and isinstance(event, str):
                self._join(conn, channel, event, body.get("join", True) is not False)
        elif kind == m.LOGIN:
            self._login(conn, body)
        elif kind == m.REQUEST:
            self._request(conn, body)

    # -- the socket ---------------------------------------------------------------------------

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """Upgrade, greet with 991, then read client frames until the socket closes."""
        ws = web.WebSocketResponse(heartbeat=HEARTBEAT_S, autoping=True)
        if not ws.can_prepare(request).ok:
            return web.Response(text="BTCTurk simulator: connect with a WebSocket client\n")
        if self.state.config.rate_limits_enabled:
            throttled = self._limiter.check("WS", "connect", request.remote or "unknown", None, self.state.now_ms())
            if throttled is not None:
                return web.Response(status=429, headers={"Retry-After": str(throttled.retry_after)})
        await ws.prepare(request)
        conn = Connection(ws, request.transport)
        self.connections.append(conn)
        conn.send(m.hello())
        writer = asyncio.create_task(self._write(conn))
        try:
            async for msg in ws:
                if msg.type == WSMsgType.TEXT:
                    self.handle_text(conn, msg.data)
        finally:
            if conn in self.connections:
                self.connections.remove(conn)
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await writer
            await ws.close()
        return ws

    async def close_all(self) -> None:
        """Close every socket (server shutdown)."""
        for conn in list(self.connections):
            await conn.ws.close(code=WSCloseCode.GOING_AWAY, message=b"server shutdown")

    async def _write(self, conn: Connection) -> None:
        while True:
            text = await conn.queue.get()
            if text is None or conn.ws.closed:
                await conn.ws.close()
                return
            try:
                await conn.ws.send_str(text)
            except ConnectionError:
                return
