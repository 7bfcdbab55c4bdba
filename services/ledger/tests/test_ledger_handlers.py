"""Ledger handlers on the in-memory bus with a real Postgres store: snapshots, marks, failures."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import asyncpg
import msgspec
import pytest
import pytest_asyncio

from btcbot.contracts import ids, subjects
from btcbot.contracts.messages import BookSnapshot, Level, OrderAccepted, OrderFilled, PortfolioSnapshot
from btcbot.ledger.handlers import Ledger
from btcbot.ledger.store import Store
from btcbot.runtime.memory import InMemoryBus

pytestmark = pytest.mark.integration

D = Decimal
NOW = 1_750_000_000 * 10**9
TABLES = (
    "orders, order_events, fills, positions, balances, applied_messages, equity_snapshots, daily_pnl, ledger_alerts"
)


class RecordingLog:
    def __init__(self) -> None:
        self.events: list[tuple[str, str, dict[str, Any]]] = []

    def _add(self, level: str, event: str, **kw: Any) -> None:
        self.events.append((level, event, kw))

    def info(self, event: str, **kw: Any) -> None:
        self._add("info", event, **kw)

    def warning(self, event: str, **kw: Any) -> None:
        self._add("warning", event, **kw)

    def error(self, event: str, **kw: Any) -> None:
        self._add("error", event, **kw)

    def named(self, event: str) -> list[dict[str, Any]]:
        return [kw for _, e, kw in self.events if e == event]


class FlakyBus(InMemoryBus):
    def __init__(self) -> None:
        super().__init__()
        self.fail = False

    async def publish(self, subject: str, message: Any) -> None:
        if self.fail:
            raise ConnectionError("nats down")
        await super().publish(subject, message)


@pytest_asyncio.fixture(loop_scope="session")
async def store(ledger_db: str) -> AsyncIterator[Store]:
    conn = await asyncpg.connect(ledger_db)
    try:
        await conn.execute(f"TRUNCATE {TABLES}")
    finally:
        await conn.close()
    s = await Store.open(ledger_db, min_size=1, max_size=2)
    await s.seed_balances({"TRY": D(10000)}, NOW)
    yield s
    await s.close()


def make_ledger(store: Store, bus: InMemoryBus | None = None) -> Ledger:
    clock = iter(range(NOW, NOW + 10**6))
    return Ledger(
        store=store,
        bus=bus or InMemoryBus(),
        account="main",
        quote_asset="TRY",
        now_ns=lambda: next(clock),
        log=RecordingLog(),
    )


def filled(trade: str, side: str, price: str, quantity: str, fee: str = "0") -> OrderFilled:
    return OrderFilled(
        id=ids.fill_id("BTCTRY", trade, "x1"),
        ts_ns=NOW,
        client_order_id="bb-1",
        exchange_order_id="x1",
        strategy="test",
        symbol="BTCTRY",
        side=side,  # type: ignore[arg-type]
        trade_id=trade,
        price=D(price),
        quantity=D(quantity),
        fee=D(fee),
        fee_asset="TRY",
        exchange_ts_ns=NOW + int(trade),
    )


def book(seq: int, bid: str, ask: str, *, stale: bool = False) -> BookSnapshot:
    return BookSnapshot(
        id=ids.book_id("BTCTRY", NOW + seq, seq),
        ts_ns=NOW + seq,
        symbol="BTCTRY",
        sequence=seq,
        bids=(Level(D(bid), D(1)),),
        asks=(Level(D(ask), D(1)),),
        exchange_ts_ns=NOW + seq,
        received_ts_ns=NOW + seq,
        stale=stale,
    )


def bus_of(ledger: Ledger) -> InMemoryBus:
    assert isinstance(ledger.bus, InMemoryBus)
    return ledger.bus


async def test_a_fill_publishes_one_snapshot_with_an_id_from_its_cause(store: Store) -> None:
    ledger = make_ledger(store)
    bus = bus_of(ledger)
    event = filled("1", "buy", "1000", "2", "2")
    assert await bus.deliver(ledger.on_execution, event) == "ack"
    assert await bus.deliver(ledger.on_execution, event, deliveries=2) == "ack"
    assert bus.subjects() == [subjects.portfolio("main")]
    [snap] = bus.of_type(PortfolioSnapshot)
    assert snap.id == f"portfolio:main:{event.id}"
    assert [(b.asset, b.total) for b in snap.balances] == [("BTC", D(2)), ("TRY", D(7998))]
    [pos] = snap.positions
    assert (pos.symbol, pos.quantity, pos.avg_cost, pos.fees) == ("BTCTRY", D(2), D(1001), D(2))
    # No mark yet: the position is valued at cost, so equity is the cash spent plus what it bought.
    assert (snap.equity, snap.unrealized_pnl, snap.peak_equity, snap.drawdown) == (D(10000), D(0), D(10000), D(0))
    assert (snap.fills, snap.last_fill_id) == (1, event.id)


async def test_marks_revalue_unrealized_pnl_equity_and_drawdown(store: Store) -> None:
    ledger = make_ledger(store)
    bus = bus_of(ledger)
    await bus.deliver(ledger.on_execution, filled("1", "buy", "1000", "2"))
    await bus.deliver(ledger.on_book, book(1, "1090", "1110"))
    up = await ledger.revalue()
    assert up is not None
    assert up.id.startswith(f"portfolio:main:{ids.fill_id('BTCTRY', '1', 'x1')}:marks:")
    assert (up.unrealized_pnl, up.equity, up.peak_equity, up.drawdown) == (D(200), D(10200), D(10200), D(0))
    assert up.positions[0].mark == D(1100)
    assert await ledger.revalue() is None  # nothing moved

    await bus.deliver(ledger.on_book, book(0, "1", "2"))  # older book: ignored
    await bus.deliver(ledger.on_book, book(3, "1", "2", stale=True))  # stale: ignored
    assert await ledger.revalue() is None

    await bus.deliver(ledger.on_book, book(2, "480", "520"))
    down = await ledger.revalue()
    assert down is not None
    assert (down.equity, down.peak_equity) == (D(9000), D(10200))
    assert down.drawdown == (D(10200) - D(9000)) / D(10200)


async def test_oversell_is_acked_alerted_and_still_published(store: Store) -> None:
    ledger = make_ledger(store)
    bus = bus_of(ledger)
    await bus.deliver(ledger.on_execution, filled("1", "buy", "1000", "1"))
    assert await bus.deliver(ledger.on_execution, filled("2", "sell", "1000", "3")) == "ack"
    assert isinstance(ledger.log, RecordingLog)
    [alert] = ledger.log.named("ledger.oversell")
    assert (alert["alert"], alert["held"], alert["delivered"]) == (True, "1", "3")
    snaps = bus.of_type(PortfolioSnapshot)
    assert len(snaps) == 2
    assert snaps[-1].positions[0].quantity == D(1)  # frozen until the books are consistent again
    assert ledger.log.named("ledger.halted_symbols") == [{"symbols": ["BTCTRY"]}]


async def test_a_failed_publish_is_retried_by_the_revaluation_loop(store: Store) -> None:
    bus = FlakyBus()
    ledger = make_ledger(store, bus)
    bus.fail = True
    # Committed, so acked even though the snapshot could not go out.
    assert await bus.deliver(ledger.on_execution, filled("1", "buy", "1000", "1")) == "ack"
    assert bus.published == []
    assert ledger.dirty
    bus.fail = False
    snap = await ledger.revalue()
    assert snap is not None
    assert snap.positions[0].quantity == D(1)
    assert not ledger.dirty


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_postgres_unreachable_naks_and_reports_not_ready() -> None:
    dead = await Store.open(f"postgresql://postgres@127.0.0.1:{_closed_port()}/x", min_size=0, timeout=1)
    try:
        ledger = make_ledger(dead)
        bus = bus_of(ledger)
        assert await bus.deliver(ledger.on_execution, filled("1", "buy", "1", "1")) == "nak"
        assert await bus.deliver(ledger.on_execution, filled("1", "buy", "1", "1"), deliveries=5) == "dead"
        assert not dead.healthy
        assert bus.published == []
    finally:
        await dead.close()


async def test_order_events_are_booked_without_a_snapshot_and_bad_fills_are_poison(store: Store) -> None:
    ledger = make_ledger(store)
    bus = bus_of(ledger)
    accepted = OrderAccepted(
        id=ids.accepted_id("bb-1"),
        ts_ns=NOW,
        client_order_id="bb-1",
        exchange_order_id="x1",
        intent_id="i",
        strategy="test",
        symbol="BTCTRY",
        side="buy",
        order_type="limit",
        price=D(1),
        quantity=D(1),
    )
    assert await bus.deliver(ledger.on_execution, accepted) == "ack"
    assert await bus.deliver(ledger.on_execution, accepted, deliveries=2) == "ack"
    assert bus.published == []
    zero = msgspec.structs.replace(filled("1", "buy", "1", "1"), quantity=D(0))
    unknown_quote = msgspec.structs.replace(filled("2", "buy", "1", "1"), symbol="FOOBAR")
    assert await bus.deliver(ledger.on_execution, zero) == "dead"
    assert await bus.deliver(ledger.on_execution, unknown_quote) == "dead"
    assert [reason.split(":")[0] for _, reason in bus.dead_letters] == ["invalid fill fill", "invalid fill fill"]
    assert bus.published == []
