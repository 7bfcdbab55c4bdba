"""The store against a real Postgres: exactly-once application, concurrency, ordering, oversell, order events."""

from __future__ import annotations

import asyncio
import random
import socket
from collections.abc import AsyncIterator
from decimal import Decimal

import asyncpg
import pytest
import pytest_asyncio

from btcbot.contracts import ids
from btcbot.contracts.messages import OrderAccepted, OrderCanceled, OrderFilled, OrderRejected
from btcbot.ledger.positions import fill_from_event, replay
from btcbot.ledger.store import Incoming, Origin, Store, StoreUnavailable

pytestmark = pytest.mark.integration

D = Decimal
NOW = 1_750_000_000 * 10**9
ORIGIN = Origin("exec.filled.BTCTRY", "EXECUTION", 1)
TABLES = (
    "orders, order_events, fills, positions, balances, applied_messages, equity_snapshots, daily_pnl, ledger_alerts"
)


@pytest_asyncio.fixture(loop_scope="session")
async def store(ledger_db: str) -> AsyncIterator[Store]:
    conn = await asyncpg.connect(ledger_db)
    try:
        await conn.execute(f"TRUNCATE {TABLES}")
    finally:
        await conn.close()
    s = await Store.open(ledger_db, min_size=1, max_size=3)
    yield s
    await s.close()


@pytest_asyncio.fixture(loop_scope="session")
async def db(ledger_db: str, store: Store) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(ledger_db)
    yield conn
    await conn.close()


def filled(
    trade: str,
    side: str,
    price: str,
    quantity: str,
    fee: str = "0",
    *,
    symbol: str = "BTCTRY",
    order: str = "bb-1",
    ts: int | None = None,
    message_id: str | None = None,
) -> OrderFilled:
    return OrderFilled(
        id=message_id or ids.fill_id(symbol, trade, "x" + order),
        ts_ns=NOW,
        client_order_id=order,
        exchange_order_id="x" + order,
        strategy="test",
        symbol=symbol,
        side=side,  # type: ignore[arg-type]
        trade_id=trade,
        price=D(price),
        quantity=D(quantity),
        fee=D(fee),
        fee_asset="TRY",
        exchange_ts_ns=ts if ts is not None else NOW + int(trade) * 10**9,
    )


def accepted(order: str, side: str, quantity: str, price: str = "100", symbol: str = "BTCTRY") -> OrderAccepted:
    return OrderAccepted(
        id=ids.accepted_id(order),
        ts_ns=NOW,
        client_order_id=order,
        exchange_order_id="x" + order,
        intent_id="intent:" + order,
        strategy="test",
        symbol=symbol,
        side=side,  # type: ignore[arg-type]
        order_type="limit",
        price=D(price),
        quantity=D(quantity),
    )


async def balances(db: asyncpg.Connection) -> dict[str, Decimal]:
    return {r["asset"]: r["total"] for r in await db.fetch("SELECT asset, total FROM balances")}


async def position(db: asyncpg.Connection, symbol: str = "BTCTRY") -> asyncpg.Record:
    row = await db.fetchrow("SELECT * FROM positions WHERE symbol = $1", symbol)
    assert row is not None
    return row


async def test_a_fill_applied_twice_in_separate_transactions_is_stored_once(
    store: Store, db: asyncpg.Connection
) -> None:
    await store.seed_balances({"TRY": D(1000)}, NOW)
    event = filled("1", "buy", "100", "2", "0.5")
    first = await store.apply_fill(event, ORIGIN, NOW)
    second = await store.apply_fill(event, ORIGIN, NOW + 1)
    assert (first.status, second.status) == ("applied", "duplicate")
    assert await db.fetchval("SELECT count(*) FROM fills") == 1
    assert await db.fetchval("SELECT count(*) FROM applied_messages") == 1
    assert await balances(db) == {"TRY": D("799.5"), "BTC": D(2)}
    row = await position(db)
    assert (row["quantity"], row["avg_cost"], row["fees"], row["fills"]) == (D(2), D("100.25"), D("0.5"), 1)


async def test_the_same_trade_under_another_message_id_is_a_no_op(store: Store, db: asyncpg.Connection) -> None:
    await store.apply_fill(filled("7", "buy", "100", "1"), ORIGIN, NOW)
    again = await store.apply_fill(filled("7", "buy", "100", "1", message_id="fill:replayed:7"), ORIGIN, NOW)
    assert again.status == "duplicate_trade"
    assert not again.changed
    assert await db.fetchval("SELECT count(*) FROM fills") == 1
    assert (await position(db))["quantity"] == D(1)
    # The second message id is still recorded as seen, so its redelivery is cheap.
    assert await db.fetchval("SELECT count(*) FROM applied_messages") == 2


async def test_both_sides_of_a_self_match_are_booked(store: Store, db: asyncpg.Connection) -> None:
    # Our buy crossed our own resting sell: the exchange gives both sides ONE trade id, each its own order id.
    await store.seed_balances({"TRY": D(1000), "BTC": D(1)}, NOW)
    await store.apply_fill(filled("3", "buy", "100", "1", "0.1", order="bb-0"), ORIGIN, NOW)
    sell = filled("7", "sell", "100", "1", "0.1", order="bb-s")
    buy = filled("7", "buy", "100", "1", "0.2", order="bb-b")
    assert sell.id != buy.id
    # The sell side arrives first: it is not an oversell (the position holds 1), and the buy then folds in
    # canonical order (buy before sell at one trade id), which rebuilds the symbol.
    assert (await store.apply_fill(sell, ORIGIN, NOW)).status == "applied"
    assert (await store.apply_fill(buy, ORIGIN, NOW)).status == "applied"
    again = await store.apply_fill(
        filled("7", "sell", "100", "1", "0.1", order="bb-s", message_id="fill:x"), ORIGIN, NOW
    )
    assert again.status == "duplicate_trade"
    rows = await db.fetch("SELECT trade_id, exchange_order_id, side FROM fills WHERE trade_id = '7' ORDER BY side")
    assert [(r["exchange_order_id"], r["side"]) for r in rows] == [("xbb-b", "buy"), ("xbb-s", "sell")]
    # Net of the self-match: only the two fees moved money.
    assert await balances(db) == {"TRY": D("899.6"), "BTC": D(2)}
    row = await position(db)
    expected = replay(
        fill_from_event(e) for e in (filled("3", "buy", "100", "1", "0.1", order="bb-0"), sell, buy)
    ).positions["BTCTRY"]
    assert (row["quantity"], row["cost"], row["realized_pnl"], row["fills"]) == (
        expected.quantity,
        expected.cost,
        expected.realized_pnl,
        3,
    )
    assert (row["last_trade_id"], row["last_side"], row["last_exchange_order_id"]) == ("7", "sell", "xbb-s")
    assert row["halted_reason"] is None


async def test_a_self_match_in_one_batch_is_booked_buy_first(store: Store, db: asyncpg.Connection) -> None:
    sell = filled("4", "sell", "100", "2", "0.1", order="bb-s")
    buy = filled("4", "buy", "100", "2", "0.1", order="bb-b")
    results = await store.apply_batch([Incoming(sell, ORIGIN), Incoming(buy, ORIGIN), Incoming(sell, ORIGIN)], NOW)
    assert [r.status for r in results] == ["applied", "applied", "duplicate"]
    row = await position(db)
    assert (row["quantity"], row["fills"], row["halted_reason"]) == (D(0), 2, None)
    assert await db.fetchval("SELECT count(*) FROM ledger_alerts") == 0


async def test_concurrent_application_from_two_connections_stores_once(
    ledger_db: str, store: Store, db: asyncpg.Connection
) -> None:
    other = await Store.open(ledger_db, min_size=1, max_size=2)
    try:
        for trade in range(1, 11):
            event = filled(str(trade), "buy", "100", "1")
            results = await asyncio.gather(store.apply_fill(event, ORIGIN, NOW), other.apply_fill(event, ORIGIN, NOW))
            assert sorted(r.status for r in results) == ["applied", "duplicate"]
        # Different trades of one symbol at once: both count, the position row serializes them.
        results = await asyncio.gather(
            store.apply_fill(filled("11", "buy", "100", "1"), ORIGIN, NOW),
            other.apply_fill(filled("12", "buy", "100", "1"), ORIGIN, NOW),
        )
        assert [r.status for r in results] == ["applied", "applied"]
    finally:
        await other.close()
    assert await db.fetchval("SELECT count(*) FROM fills") == 12
    assert (await position(db))["quantity"] == D(12)
    assert (await balances(db))["BTC"] == D(12)


async def test_out_of_order_arrival_matches_the_pure_model(store: Store, db: asyncpg.Connection) -> None:
    events = [
        filled("1", "buy", "100", "3", "0.3"),
        filled("2", "buy", "130", "1", "0.13"),
        filled("3", "sell", "150", "2", "0.3"),
        filled("4", "buy", "90", "2", "0.18"),
        filled("5", "sell", "120", "4", "0.48"),
        filled("6", "buy", "200", "1", "0.2", symbol="ETHTRY"),
    ]
    # Delivery order keeps every sell after enough buys, yet is out of exchange order.
    arrival = [events[i] for i in (1, 0, 3, 5, 2, 4)]
    results = [await store.apply_fill(event, ORIGIN, NOW) for event in arrival]
    assert {r.status for r in results} == {"applied"}
    assert any(r.rebuilt for r in results)
    expected = replay(fill_from_event(e) for e in events)
    for symbol, want in expected.positions.items():
        row = await position(db, symbol)
        assert (row["quantity"], row["cost"], row["realized_pnl"], row["fees"], row["fills"]) == (
            want.quantity,
            want.cost,
            want.realized_pnl,
            want.fees,
            want.fills,
        )
    daily = {(r["day"], r["symbol"]): (r["realized"], r["fees"]) for r in await db.fetch("SELECT * FROM daily_pnl")}
    assert daily == expected.daily()


async def test_random_arrival_orders_give_the_same_books(ledger_db: str, store: Store, db: asyncpg.Connection) -> None:
    events = [filled(str(i), "buy", str(100 + i), "1", "0.1") for i in range(1, 9)]
    events.append(filled("20", "sell", "150", "5", "0.5"))
    rng = random.Random(7)
    snapshots = []
    for _ in range(3):
        await db.execute(f"TRUNCATE {TABLES}")
        order = events[:]
        rng.shuffle(order)
        # A sell delivered before its buys halts the symbol until they arrive; the end state is the same.
        for event in order + events[:2]:
            await store.apply_fill(event, ORIGIN, NOW)
        row = await position(db)
        assert row["halted_reason"] is None
        snapshots.append((row["quantity"], row["cost"], row["realized_pnl"], await balances(db)))
    assert snapshots[0] == snapshots[1] == snapshots[2]


async def test_a_fill_for_an_unknown_order_is_recorded_and_flagged(store: Store, db: asyncpg.Connection) -> None:
    result = await store.apply_fill(filled("1", "buy", "100", "1", order="bb-late"), ORIGIN, NOW)
    assert result.status == "applied"
    assert result.unknown_order
    assert await db.fetchval("SELECT flagged_unknown_order FROM fills WHERE trade_id = '1'") is True
    assert await store.apply_order_event(accepted("bb-late", "buy", "1"), ORIGIN, NOW)
    assert await db.fetchval("SELECT flagged_unknown_order FROM fills WHERE trade_id = '1'") is False
    order = await db.fetchrow("SELECT status, filled_quantity FROM orders WHERE client_order_id = 'bb-late'")
    assert (order["status"], order["filled_quantity"]) == ("filled", D(1))


async def test_order_lifecycle_events(store: Store, db: asyncpg.Connection) -> None:
    assert await store.apply_order_event(accepted("bb-a", "buy", "2"), ORIGIN, NOW)
    assert not await store.apply_order_event(accepted("bb-a", "buy", "2"), ORIGIN, NOW)
    await store.apply_fill(filled("1", "buy", "100", "0.5", order="bb-a"), ORIGIN, NOW)
    assert await db.fetchval("SELECT status FROM orders WHERE client_order_id = 'bb-a'") == "partially_filled"
    canceled = OrderCanceled(
        id=ids.canceled_id("bb-a"),
        ts_ns=NOW,
        client_order_id="bb-a",
        exchange_order_id="xbb-a",
        symbol="BTCTRY",
        filled_quantity=D("0.5"),
        reason="stale",
    )
    assert await store.apply_order_event(canceled, ORIGIN, NOW)
    row = await db.fetchrow("SELECT status, filled_quantity, reason FROM orders WHERE client_order_id = 'bb-a'")
    assert (row["status"], row["filled_quantity"], row["reason"]) == ("canceled", D("0.5"), "stale")
    rejected = OrderRejected(
        id=ids.rejected_id("bb-r"),
        ts_ns=NOW,
        client_order_id="bb-r",
        intent_id="intent:r",
        strategy="test",
        symbol="BTCTRY",
        reason="insufficient_balance",
        detail="need 10",
    )
    assert await store.apply_order_event(rejected, ORIGIN, NOW)
    assert await db.fetchval("SELECT status FROM orders WHERE client_order_id = 'bb-r'") == "rejected"
    kinds = [r["type"] for r in await db.fetch("SELECT type FROM order_events ORDER BY ts, message_id")]
    assert sorted(kinds) == ["accepted", "canceled", "filled", "rejected"]


async def test_an_unsigned_rejection_is_audit_only(store: Store, db: asyncpg.Connection) -> None:
    # Execution refused a forged command that named a real order's id: the real order's row is untouched.
    assert await store.apply_order_event(accepted("bb-real", "buy", "1"), ORIGIN, NOW)
    forged = OrderRejected(id="rejected:bb-real:UNSIGNED:abc", ts_ns=NOW, client_order_id="bb-real",
                           intent_id="intent:forged", strategy="attacker", symbol="BTCTRY", reason="UNSIGNED",
                           detail="signature MISSING")  # fmt: skip
    assert await store.apply_order_event(forged, ORIGIN, NOW)
    row = await db.fetchrow("SELECT status, strategy FROM orders WHERE client_order_id = 'bb-real'")
    assert (row["status"], row["strategy"]) == ("accepted", "test")
    kinds = await db.fetch("SELECT type, message_id FROM order_events WHERE client_order_id = 'bb-real'")
    assert sorted(r["message_id"] for r in kinds if r["type"] == "rejected") == ["rejected:bb-real:UNSIGNED:abc"]


async def test_oversell_halts_the_symbol_until_the_missing_buy_arrives(store: Store, db: asyncpg.Connection) -> None:
    await store.apply_fill(filled("2", "buy", "100", "1"), ORIGIN, NOW)
    result = await store.apply_fill(filled("3", "sell", "120", "2"), ORIGIN, NOW)
    assert result.status == "halted"
    assert result.oversell is not None
    assert result.oversell.held == D(1)
    row = await position(db)
    assert row["halted_reason"].startswith("oversell")
    assert row["quantity"] == D(1)  # frozen, not capped
    alert = await db.fetchrow("SELECT * FROM ledger_alerts")
    assert (alert["kind"], alert["symbol"], alert["resolved_at"]) == ("oversell", "BTCTRY", None)
    # The exchange's facts are kept: the fill and its balance effects.
    assert await db.fetchval("SELECT count(*) FROM fills") == 2
    assert (await balances(db))["BTC"] == D(-1)

    # Still inconsistent: stays halted, the fill is recorded.
    still = await store.apply_fill(filled("4", "buy", "100", "0.5"), ORIGIN, NOW)
    assert still.status == "halted"
    assert (await position(db))["fills"] == 3

    # The late buy (earlier at the exchange) makes the set consistent: the position resumes.
    resumed = await store.apply_fill(filled("1", "buy", "80", "1"), ORIGIN, NOW)
    assert (resumed.status, resumed.resumed) == ("applied", True)
    row = await position(db)
    assert row["halted_reason"] is None
    assert row["quantity"] == D("0.5")
    assert row["fills"] == 4
    assert await db.fetchval("SELECT count(*) FROM ledger_alerts WHERE resolved_at IS NULL") == 0
    assert row["realized_pnl"] == D(240) - D(180)


async def test_opening_balances_are_seeded_once(store: Store, db: asyncpg.Connection) -> None:
    assert await store.seed_balances({"TRY": D(1000000), "BTC": D(1)}, NOW)
    assert not await store.seed_balances({"TRY": D(5)}, NOW)
    assert not await store.seed_balances({}, NOW)
    assert await balances(db) == {"TRY": D(1000000), "BTC": D(1)}


async def test_equity_points_track_peak_and_drawdown(store: Store) -> None:
    assert await store.record_equity(D(1000), "a", NOW) == (D(1000), D(0))
    assert await store.record_equity(D(1200), "b", NOW) == (D(1200), D(0))
    assert await store.record_equity(D(900), "c", NOW) == (D(1200), D("0.25"))
    state = await store.state()
    assert (state.peak, state.last_drawdown) == (D(1200), D("0.25"))


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_unreachable_postgres_is_store_unavailable() -> None:
    dsn = f"postgresql://postgres@127.0.0.1:{_closed_port()}/nothing"
    with pytest.raises(StoreUnavailable):
        await Store.open(dsn, timeout=1)
    lazy = await Store.open(dsn, min_size=0, timeout=1)
    try:
        with pytest.raises(StoreUnavailable):
            await lazy.apply_fill(filled("1", "buy", "1", "1"), ORIGIN, NOW)
        assert not lazy.healthy
        assert not await lazy.ping()
    finally:
        await lazy.close()
