"""Contract tests: the WebSocket client and LocalBook against the simulator's feed."""

import asyncio
import base64
from collections.abc import AsyncIterator, Callable
from decimal import Decimal

import httpx
import pytest
from aiohttp.test_utils import TestServer

from btcbot.btcturk import BookGapError, BtcTurkClient, BtcTurkWebSocket, LocalBook, OrderMethod, RetryPolicy, Side
from btcbot.btcturk.wsmodels import (
    BookDiff,
    BookSnapshot,
    Connected,
    Disconnected,
    Hello,
    OrderEvent,
    OrderEventKind,
    OrderMatch,
    TradeList,
    UserTradeEvent,
    WsMessage,
    WsTicker,
    WsTrade,
)
from btcbot.sim.admin import ADMIN_HEADER
from btcbot.sim.app import create_app
from btcbot.sim.config import Account, SimConfig

ADMIN_TOKEN = "test-sim-admin-token"
ADMIN = {ADMIN_HEADER: ADMIN_TOKEN}  # /sim/* needs the simulator's admin token

KEY = "contract-ws-key"
SECRET = base64.b64encode(b"contract-ws-secret-0123456789ab").decode()
FAST = RetryPolicy(base_delay=0.01, max_delay=0.05)


@pytest.fixture
async def server() -> AsyncIterator[TestServer]:
    account = Account(KEY, SECRET, {"TRY": Decimal(1_000_000), "BTC": Decimal(2)})
    config = SimConfig(
        admin_token=ADMIN_TOKEN, accounts=(account,), run_market=False, ws_book_interval=0.02, ws_snapshot_interval=0.05
    )
    srv = TestServer(create_app(config))
    await srv.start_server()
    try:
        yield srv
    finally:
        await srv.close()


def urls(srv: TestServer) -> tuple[str, str]:
    http = str(srv.make_url("")).rstrip("/")
    return http, "ws" + http.removeprefix("http") + "/ws"


class Feed:
    """Runs ws.messages() in a task and lets the test wait for a matching message."""

    def __init__(self, ws: BtcTurkWebSocket, book: LocalBook | None = None) -> None:
        self.ws = ws
        self.book = book
        self.queue: asyncio.Queue[WsMessage] = asyncio.Queue()
        self.gaps = 0
        self.task = asyncio.create_task(self._pump())

    async def _pump(self) -> None:
        async for message in self.ws.messages():
            if self.book is not None:
                await self._track(message)
            await self.queue.put(message)

    async def _track(self, message: WsMessage) -> None:
        assert self.book is not None
        if isinstance(message, Disconnected):
            self.book.invalidate()
        elif isinstance(message, BookSnapshot) and message.pair == self.book.pair:
            self.book.apply_snapshot(message)
        elif isinstance(message, BookDiff) and message.pair == self.book.pair:
            try:
                self.book.apply_diff(message)
            except BookGapError:
                self.gaps += 1
                await self.ws.resubscribe("obdiff", self.book.pair)

    async def expect(self, predicate: Callable[[WsMessage], bool], timeout: float = 5.0) -> WsMessage:
        async with asyncio.timeout(timeout):
            while True:
                message = await self.queue.get()
                if predicate(message):
                    return message

    async def expect_all(self, *predicates: Callable[[WsMessage], bool], timeout: float = 5.0) -> list[WsMessage]:
        """The first message matching each predicate, in whatever order they arrive."""
        found: dict[int, WsMessage] = {}
        async with asyncio.timeout(timeout):
            while len(found) < len(predicates):
                message = await self.queue.get()
                for index, predicate in enumerate(predicates):
                    if index not in found and predicate(message):
                        found[index] = message
                        break
        return [found[i] for i in range(len(predicates))]

    async def close(self) -> None:
        await self.ws.aclose()
        # aclose() alone must end messages(); a hang here is a bug, not a slow test.
        await asyncio.wait_for(self.task, 5)


async def test_private_events_for_our_orders(server):
    http, ws_url = urls(server)
    ws = BtcTurkWebSocket(ws_url, public_key=KEY, private_key=SECRET, backoff=FAST)
    await ws.subscribe("trade", "BTCTRY")
    await ws.subscribe("ticker", "BTCTRY")
    feed = Feed(ws)
    try:
        await feed.expect(lambda m: isinstance(m, Connected))
        await feed.expect(lambda m: isinstance(m, Hello))
        await feed.expect(lambda m: isinstance(m, TradeList) and m.pair == "BTCTRY")
        ticker = await feed.expect(lambda m: isinstance(m, WsTicker) and m.pair == "BTCTRY")
        assert isinstance(ticker, WsTicker)
        assert ticker.bid is not None
        assert ticker.ask is not None
        assert ticker.bid < ticker.ask
        async with BtcTurkClient(http, KEY, SECRET) as client:
            book = await client.orderbook("BTCTRY", limit=1)
            price = (book.bids[0][0] * Decimal("0.9")).quantize(Decimal(1))
            ack = await client.submit_order(
                "BTCTRY", Side.BUY, OrderMethod.LIMIT, Decimal("0.001"), price=price, client_order_id="ws-1"
            )
            inserted = await feed.expect(lambda m: isinstance(m, OrderEvent) and m.order_id == ack.id)
            assert isinstance(inserted, OrderEvent)
            assert inserted.kind is OrderEventKind.INSERT
            assert (inserted.side, inserted.price, inserted.client_order_id) == (Side.BUY, price, "ws-1")
            await client.cancel_order(ack.id)
            deleted = await feed.expect(lambda m: isinstance(m, OrderEvent) and m.kind is OrderEventKind.DELETE)
            assert isinstance(deleted, OrderEvent)
            assert deleted.order_id == ack.id

            market = await client.submit_order("BTCTRY", "buy", "market", Decimal(500), client_order_id="ws-mkt")
            match, public, fill = await feed.expect_all(
                lambda m: isinstance(m, OrderMatch) and m.order_id == market.id,
                lambda m: isinstance(m, WsTrade),
                lambda m: isinstance(m, UserTradeEvent) and m.trade.order_id == market.id,
            )
            assert isinstance(match, OrderMatch)
            assert match.side is Side.BUY
            assert isinstance(public, WsTrade)
            assert (public.pair, public.side) == ("BTCTRY", Side.BUY)
            assert isinstance(fill, UserTradeEvent)
            rest_trades = {t.id: t for t in await client.user_trades(order_id=market.id)}
            assert rest_trades[fill.trade.id].price == fill.trade.price
            assert rest_trades[fill.trade.id].fee == fill.trade.fee
    finally:
        await feed.close()


async def test_local_book_matches_rest_book(server):
    http, ws_url = urls(server)
    local = LocalBook("BTCTRY")
    ws = BtcTurkWebSocket(ws_url, backoff=FAST)
    await ws.subscribe("obdiff", "BTCTRY")
    feed = Feed(ws, local)
    try:
        snapshot = await feed.expect(lambda m: isinstance(m, BookSnapshot))
        assert isinstance(snapshot, BookSnapshot)
        async with BtcTurkClient(http, KEY, SECRET) as client:
            best_bid = (await client.orderbook("BTCTRY", limit=1)).bids[0][0]
            await client.submit_order("BTCTRY", Side.BUY, OrderMethod.LIMIT, Decimal("0.1"), price=best_bid)
            await feed.expect(lambda m: isinstance(m, BookDiff))
            rest = await client.orderbook("BTCTRY", limit=10)
        assert local.synced
        assert local.bids(10) == rest.bids
        assert local.asks(10) == rest.asks
    finally:
        await feed.close()


async def test_gap_and_drop_faults_resync_the_book(server):
    http, ws_url = urls(server)
    local = LocalBook("BTCTRY")
    ws = BtcTurkWebSocket(ws_url, backoff=FAST)
    await ws.subscribe("obdiff", "BTCTRY")
    feed = Feed(ws, local)
    try:
        await feed.expect(lambda m: isinstance(m, BookSnapshot))
        async with BtcTurkClient(http, KEY, SECRET) as client, httpx.AsyncClient(headers=ADMIN) as admin:
            # The simulator spends the gap fault on the next diff tick even if that tick has no
            # change to send, so a tick between arming and our order can swallow it: re-arm.
            for _ in range(5):
                (await admin.post(http + "/sim/faults", json={"ws_sequence_gap_next": 1})).raise_for_status()
                best_bid = (await client.orderbook("BTCTRY", limit=1)).bids[0][0]
                await client.submit_order("BTCTRY", Side.BUY, OrderMethod.LIMIT, Decimal("0.01"), price=best_bid)
                try:
                    await feed.expect(lambda m: isinstance(m, BookSnapshot), timeout=1.0)  # after resubscribe
                    break
                except TimeoutError:
                    continue
            assert feed.gaps == 1
            assert local.synced

            (await admin.post(http + "/sim/faults", json={"ws_drop_next": 1})).raise_for_status()
            await feed.expect(lambda m: isinstance(m, Disconnected))
            again = await feed.expect(lambda m: isinstance(m, Connected))
            assert isinstance(again, Connected)
            assert again.connection == 2
            await feed.expect(lambda m: isinstance(m, BookSnapshot))  # re-subscribed on its own
            rest = await client.orderbook("BTCTRY", limit=10)
        assert local.synced
        assert local.bids(10) == rest.bids
    finally:
        await feed.close()
