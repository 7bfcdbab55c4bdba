"""The WebSocket source against the in-process simulator: a book kept from obdiff diffs equals the
simulator's book at the same change-set, across an injected sequence gap and a dropped socket, with REST
books published while the socket is down."""

import asyncio
import base64
import time
from collections.abc import AsyncIterator, Callable
from decimal import Decimal

import httpx
import pytest
from aiohttp.test_utils import TestServer
from websockets.asyncio.client import connect

from btcbot.btcturk import BtcTurkClient, BtcTurkWebSocket, RetryPolicy
from btcbot.contracts.messages import BookSnapshot, TradeTick
from btcbot.marketdata import app
from btcbot.marketdata.feed import WsFeed
from btcbot.marketdata.settings import MarketdataSettings
from btcbot.runtime.memory import InMemoryBus
from btcbot.sim.admin import ADMIN_HEADER
from btcbot.sim.app import create_app
from btcbot.sim.config import Account, SimConfig

ADMIN_TOKEN = "test-sim-admin-token"
ADMIN = {ADMIN_HEADER: ADMIN_TOKEN}  # /sim/* needs the simulator's admin token

KEY = "md-ws-key"
SECRET = base64.b64encode(b"md-ws-secret-0123456789abcdef").decode()
PAIR = "BTCTRY"


class Log:
    def __init__(self):
        self.events = []

    def _add(self, event, **kw):
        self.events.append((event, kw))

    info = warning = error = _add

    def bind(self, **kw):
        return self


class Service:
    def __init__(self):
        self.bus = InMemoryBus()
        self.log = Log()
        self.tasks = {}
        self.checks = {}

    def now_ns(self):
        return time.time_ns()

    def task(self, name, fn):
        self.tasks[name] = fn

    def readiness(self, name, check):
        self.checks[name] = check


@pytest.fixture
async def server() -> AsyncIterator[TestServer]:
    account = Account(KEY, SECRET, {"TRY": Decimal(1_000_000), "BTC": Decimal(2)})
    config = SimConfig(
        admin_token=ADMIN_TOKEN,
        accounts=(account,),
        run_market=False,
        rate_limits_enabled=False,
        ws_book_interval=0.02,
        ws_snapshot_interval=0.05,
    )
    srv = TestServer(create_app(config))
    await srv.start_server()
    try:
        yield srv
    finally:
        await srv.close()


async def until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        # The state belongs to tasks that signal nothing; polling it is the honest way to wait.
        while not predicate():  # noqa: ASYNC110
            await asyncio.sleep(0.01)


async def tick(admin: httpx.AsyncClient, ticks: int = 3) -> None:
    (await admin.post("/sim/market", json={"ticks": ticks})).raise_for_status()


async def assert_book_equals_simulators(feed: WsFeed, admin: httpx.AsyncClient) -> int:
    """Capture the local book at its CS (no await in between) and compare every level with the simulator's."""
    book = feed.books.book(PAIR)
    assert feed.books.synced(PAIR)
    cs, bids, asks = book.cs, book.bids(), book.asks()
    reply = await admin.get("/sim/obdiff", params={"pair": PAIR, "cs": str(cs)})
    assert reply.status_code == 200, reply.text
    sim = reply.json()
    assert [(Decimal(p), Decimal(a)) for p, a in sim["bids"]] == list(bids)
    assert [(Decimal(p), Decimal(a)) for p, a in sim["asks"]] == list(asks)
    assert len(bids) > 10
    assert len(asks) > 10
    return cs


async def advance(feed: WsFeed, admin: httpx.AsyncClient) -> int:
    """Move the market until the local book has applied diffs past its snapshot; returns the CS reached."""
    start = feed.books.book(PAIR).cs
    assert start is not None
    for _ in range(20):
        await tick(admin)
        try:
            await until(lambda: (feed.books.book(PAIR).cs or 0) > start, timeout=0.5)
            break
        except TimeoutError:
            continue
    cs = feed.books.book(PAIR).cs
    assert cs is not None
    assert cs > start
    return cs


async def test_ws_book_equals_the_simulators_book_across_a_gap_and_a_drop(server, monkeypatch):
    http = str(server.make_url("")).rstrip("/")
    ws_url = "ws" + http.removeprefix("http") + "/ws"
    offline = False

    async def connector(url):
        if offline:
            raise OSError("network down (test)")
        return await connect(url, compression=None, open_timeout=5)

    env = {
        "BTCTURK_API_KEY": KEY,
        "BTCTURK_API_SECRET": SECRET,
        "BTCBOT_SYMBOLS": PAIR,
        "MARKETDATA_POLL_INTERVAL": "0.05",
        "MARKETDATA_TRADES_INTERVAL": "0.05",
        "MARKETDATA_STALE_AFTER": "3",
        "MARKETDATA_DEPTH": "5",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    settings = MarketdataSettings()
    assert settings.source == "ws"
    svc = Service()
    # Slow enough reconnects that an outage of half a second stays far below the 15-per-minute guard.
    socket = BtcTurkWebSocket(ws_url, backoff=RetryPolicy(base_delay=0.2, max_delay=0.3), connector=connector)
    stop = asyncio.Event()
    async with BtcTurkClient(http, KEY, SECRET) as client, httpx.AsyncClient(headers=ADMIN, base_url=http) as admin:
        wired = app.register(svc, settings, client, socket)
        feed = wired.feed
        assert feed is not None
        assert set(svc.tasks) == {"ws", f"book:{PAIR}", f"trades:{PAIR}", "book-age"}
        runner = asyncio.gather(*(fn(stop) for fn in svc.tasks.values()))
        try:
            await until(lambda: feed.books.synced(PAIR))
            await advance(feed, admin)
            first_cs = await assert_book_equals_simulators(feed, admin)
            await until(lambda: svc.checks["marketdata"]())

            # An injected CS gap: the feed resubscribes once and rebuilds from a fresh snapshot.
            for _ in range(5):
                (await admin.post("/sim/faults", json={"ws_sequence_gap_next": 1})).raise_for_status()
                await tick(admin)
                try:
                    await until(lambda: feed.books.gaps == 1, timeout=1.0)
                    break
                except TimeoutError:
                    continue
            assert feed.books.gaps == 1
            await until(lambda: feed.books.synced(PAIR))
            resubscribed_cs = feed.books.book(PAIR).cs
            assert resubscribed_cs is not None
            assert resubscribed_cs > first_cs + 100_000  # a new subscription's counter, not the old one
            await advance(feed, admin)
            await assert_book_equals_simulators(feed, admin)
            sim_subs = (await admin.get("/sim/obdiff", params={"pair": PAIR})).json()["subscriptions"]
            assert len(sim_subs) == 1  # the old subscription was left, not leaked

            # A dropped socket that cannot reconnect for a while: REST books fill the gap.
            books_before_drop = len(svc.bus.of_type(BookSnapshot))
            offline = True
            (await admin.post("/sim/faults", json={"ws_drop_next": 1})).raise_for_status()
            await until(lambda: not feed.connected())
            await tick(admin)
            await until(lambda: any(b.source == "rest" for b in svc.bus.of_type(BookSnapshot)[books_before_drop:]))
            offline = False
            await until(lambda: feed.books.synced(PAIR), timeout=10)
            await advance(feed, admin)
            await assert_book_equals_simulators(feed, admin)

            # Trades came over the socket (421 on join, 422 as the crowd traded), each once.
            await tick(admin, 10)
            await until(lambda: len(svc.bus.of_type(TradeTick)) > 0)
        finally:
            stop.set()
            await asyncio.wait_for(runner, 5)

    books = svc.bus.of_type(BookSnapshot)
    sequences = [b.sequence for b in books]
    assert sequences == sorted(set(sequences)), "published sequences must strictly increase"
    assert len({b.id for b in books}) == len(books)
    sources = [b.source for b in books]
    assert sources[0] in ("ws", "rest")
    after_drop = sources[books_before_drop:]
    # REST books appear only between the drop and the resync; WebSocket books resume after it.
    assert "rest" in after_drop
    assert after_drop[-1] == "ws"
    first_rest = after_drop.index("rest")
    assert all(s == "ws" for s in sources[books_before_drop : books_before_drop + first_rest])
    assert all(len(b.bids) == 5 and len(b.asks) == 5 and not b.stale for b in books)
    trades = svc.bus.of_type(TradeTick)
    assert len({t.trade_id for t in trades}) == len(trades)
    events = [e for e, _ in svc.log.events]
    assert events.count("ws.book_gap") == 1
    assert "ws.disconnected" in events
