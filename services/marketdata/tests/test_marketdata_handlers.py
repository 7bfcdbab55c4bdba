import asyncio
from dataclasses import dataclass, field
from decimal import Decimal

import pytest

from btcbot.btcturk.errors import Unavailable
from btcbot.btcturk.models import OrderBook, PublicTrade, Side
from btcbot.contracts import subjects
from btcbot.contracts.messages import BookSnapshot, TradeTick
from btcbot.marketdata import app
from btcbot.marketdata.freshness import Freshness
from btcbot.marketdata.handlers import BookPoller, TradePoller
from btcbot.marketdata.polling import poll_forever
from btcbot.marketdata.settings import MarketdataSettings
from btcbot.marketdata.sources import RestBookSource, RestTradeSource
from btcbot.runtime.backoff import Backoff
from btcbot.runtime.errors import DependencyUnavailable
from btcbot.runtime.memory import InMemoryBus

D = Decimal
MS = 1_000_000


class FakeClient:
    """Answers like BtcTurkClient: a scripted list of books (or errors) per call."""

    def __init__(self, books=(), trades=()):
        self.books = list(books)
        self.trades_answer = list(trades)
        self.calls = []

    async def orderbook(self, pair, limit=100):
        self.calls.append(("orderbook", pair, limit))
        item = self.books.pop(0) if len(self.books) > 1 else self.books[0]
        if isinstance(item, Exception):
            raise item
        return item

    async def trades(self, pair, last=50):
        self.calls.append(("trades", pair, last))
        return self.trades_answer


def ob(ts_ms, bid="100", ask="101"):
    return OrderBook(timestamp_ms=ts_ms, bids=((D(bid), D("1")), (D("99"), D("2"))), asks=((D(ask), D("1")),))


class Clock:
    def __init__(self, now):
        self.now = now

    def __call__(self):
        return self.now


class FlakyBus(InMemoryBus):
    def __init__(self, failures):
        super().__init__()
        self.failures = failures

    async def publish(self, subject, message):
        if self.failures:
            self.failures -= 1
            raise DependencyUnavailable("nats down")
        await super().publish(subject, message)


def poller(bus, client, clock, freshness=None, depth=1):
    return BookPoller(
        bus,
        RestBookSource(client, depth),
        depth=depth,
        stale_after_ns=5_000 * MS,
        clock=clock,
        freshness=freshness or Freshness(("BTCTRY",), 5_000 * MS),
    )


async def test_book_poller_publishes_only_moved_books():
    bus = InMemoryBus()
    clock = Clock(1_000 * MS)
    freshness = Freshness(("BTCTRY",), 5_000 * MS)
    client = FakeClient([ob(1_000), ob(1_000), ob(1_500)])
    p = poller(bus, client, clock, freshness)
    first = await p.poll("BTCTRY")
    assert first is not None
    assert client.calls == [("orderbook", "BTCTRY", 1)]
    assert len(first.bids) == 1
    assert await p.poll("BTCTRY") is None
    clock.now = 1_600 * MS
    assert (await p.poll("BTCTRY")) is not None
    assert bus.subjects() == [subjects.book("BTCTRY")] * 2
    assert [b.sequence for b in bus.of_type(BookSnapshot)] == [1_000, 1_500]
    assert freshness.last_ok("BTCTRY") == 1_600 * MS


async def test_book_poller_flags_stale_books():
    bus = InMemoryBus()
    p = poller(bus, FakeClient([ob(1_000)]), Clock(7_000 * MS))
    snap = await p.poll("BTCTRY")
    assert snap is not None
    assert snap.stale


async def test_failed_publish_is_retried_with_the_same_id():
    bus = FlakyBus(failures=1)
    freshness = Freshness(("BTCTRY",), 5_000 * MS)
    p = poller(bus, FakeClient([ob(1_000)]), Clock(1_000 * MS), freshness)
    with pytest.raises(DependencyUnavailable):
        await p.poll("BTCTRY")
    assert freshness.last_ok("BTCTRY") is None
    snap = await p.poll("BTCTRY")
    assert snap is not None
    assert bus.of_type(BookSnapshot) == [snap]


async def test_trade_poller_publishes_new_trades_once():
    bus = InMemoryBus()
    trades = [
        PublicTrade(pair="BTCTRY", trade_id="2", timestamp_ms=20, price=D("100"), amount=D("0.1"), side=Side.SELL),
        PublicTrade(pair="BTCTRY", trade_id="1", timestamp_ms=10, price=D("99"), amount=D("0.2"), side=Side.BUY),
    ]
    client = FakeClient(trades=trades)
    p = TradePoller(bus, RestTradeSource(client, 50), clock=Clock(5))
    assert [t.trade_id for t in await p.poll("BTCTRY")] == ["1", "2"]
    assert await p.poll("BTCTRY") == []
    ticks = bus.of_type(TradeTick)
    assert [(t.trade_id, t.taker_side) for t in ticks] == [("1", "buy"), ("2", "sell")]
    assert bus.subjects() == [subjects.trade("BTCTRY")] * 2
    assert client.calls[0] == ("trades", "BTCTRY", 50)


@dataclass
class Log:
    events: list = field(default_factory=list)

    def warning(self, event, **kw):
        self.events.append((event, kw))

    def info(self, event, **kw):
        self.events.append((event, kw))

    def bind(self, **kw):
        return self


async def test_poll_loop_backs_off_on_expected_errors_and_recovers():
    import random

    stop = asyncio.Event()
    outcomes = [Unavailable("503"), Unavailable("503"), None, "stop"]

    async def step():
        item = outcomes.pop(0)
        if item == "stop":
            stop.set()
        elif item is not None:
            raise item

    log = Log()
    await poll_forever(
        stop,
        step,
        interval=0.001,
        backoff=Backoff(0.001, 0.002, random.Random(0)),
        expected=(Unavailable,),
        log=log,
        what="book",
    )
    assert [e for e, _ in log.events] == ["poll.failed", "poll.failed", "poll.recovered"]
    assert log.events[0][1]["error_class"] == "Unavailable"
    assert log.events[1][1]["failures"] == 2


async def test_poll_loop_lets_bugs_through():
    import random

    async def step():
        raise KeyError("bug")

    with pytest.raises(KeyError):
        await poll_forever(
            asyncio.Event(),
            step,
            interval=0.001,
            backoff=Backoff(0.001, 0.002, random.Random()),
            expected=(Unavailable,),
            log=Log(),
            what="book",
        )


class FakeService:
    def __init__(self, now):
        self.bus = InMemoryBus()
        self.log = Log()
        self.tasks = {}
        self.checks = {}
        self.clock = now

    def now_ns(self):
        return self.clock()

    def task(self, name, fn):
        self.tasks[name] = fn

    def readiness(self, name, check):
        self.checks[name] = check


def settings(**env):
    base = {"BTCTURK_API_KEY": "k", "BTCTURK_API_SECRET": "s", "BTCBOT_SYMBOLS": "BTCTRY"}
    return base | env


async def test_register_runs_a_book_and_trade_loop_per_symbol(monkeypatch):
    for k, v in settings(MARKETDATA_POLL_INTERVAL="0.01", MARKETDATA_SOURCE="rest").items():
        monkeypatch.setenv(k, v)
    s = MarketdataSettings()
    clock = Clock(0)
    svc = FakeService(clock)
    stamps = iter(range(1_000, 100_000, 10))

    class Moving(FakeClient):
        async def orderbook(self, pair, limit=100):
            ts = next(stamps)
            clock.now = ts * MS
            return ob(ts)

    app.register(svc, s, Moving())
    assert set(svc.tasks) == {"book:BTCTRY", "trades:BTCTRY", "book-age"}
    assert svc.checks["marketdata"]() is False
    stop = asyncio.Event()
    runner = asyncio.gather(*(fn(stop) for fn in svc.tasks.values()))
    for _ in range(200):
        if len(svc.bus.of_type(BookSnapshot)) >= 3:
            break
        await asyncio.sleep(0.005)
    assert svc.checks["marketdata"]() is True
    stop.set()
    await asyncio.wait_for(runner, 1)
    clock.now += 6_000 * MS
    assert svc.checks["marketdata"]() is False
