"""The universe's exchange reading and timing, with a fake exchange (the NATS side: tests/integration)."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from btcbot.contracts.messages import UniverseSelected
from btcbot.marketdata.tasks import due, fetch_quotes, momentum_of

D = Decimal


@dataclass(frozen=True)
class Ticker:
    pair: str
    open: Decimal
    last: Decimal
    daily_percent: Decimal | None = None


@dataclass(frozen=True)
class Book:
    timestamp_ms: int
    bids: tuple[tuple[Decimal, Decimal], ...]
    asks: tuple[tuple[Decimal, Decimal], ...]


class Exchange:
    def __init__(self) -> None:
        self.books_asked: list[tuple[str, int]] = []

    async def ticker(self, pair: str | None = None) -> list[Ticker]:
        return [
            Ticker("AAATRY", D(100), D(103), D("2.5")),
            Ticker("BBBTRY", D(200), D(190)),
            Ticker("CCCUSDT", D(1), D(1)),
        ]

    async def orderbook(self, pair: str, limit: int = 100) -> Book:
        self.books_asked.append((pair, limit))
        return Book(0, ((D(99), D(1000)),), ((D(101), D(2000)),))


def test_momentum_is_the_exchanges_percent_or_computed() -> None:
    assert momentum_of(Ticker("A", D(100), D(103), D("2.5"))) == 2.5
    assert momentum_of(Ticker("A", D(200), D(190))) == -5.0
    assert momentum_of(Ticker("A", D(0), D(190))) == 0.0


async def test_quotes_for_the_listed_candidates_only() -> None:
    exchange = Exchange()
    quotes = await fetch_quotes(exchange, ["AAATRY", "BBBTRY", "ZZZTRY"], 7)
    assert [(q.symbol, q.momentum, q.depth_try) for q in quotes] == [
        ("AAATRY", 2.5, D(99_000)),
        ("BBBTRY", -5.0, D(99_000)),
    ]
    assert exchange.books_asked == [("AAATRY", 7), ("BBBTRY", 7)]


def test_a_refresh_is_due_one_interval_after_the_last_selection() -> None:
    assert due(None, 0, 10)
    last = UniverseSelected(id="universe:1", ts_ns=100, version=1, selected=())
    assert not due(last, 109, 10)
    assert due(last, 110, 10)
