"""Quarantine against a real Postgres: a fill for an order the ledger does not know moves nothing until its
order is accepted, the exchange lists the trade, or an operator adopts it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal

import asyncpg
import pytest
import pytest_asyncio

from btcbot.contracts import ids
from btcbot.contracts.messages import OrderAccepted, OrderFilled
from btcbot.ledger.reconcile import TradeView
from btcbot.ledger.store import Incoming, Origin, Store

pytestmark = pytest.mark.integration

D = Decimal
NOW = 1_750_000_000 * 10**9
ORIGIN = Origin("exec.filled.BTCTRY", "EXECUTION", 7)
TABLES = (
    "orders, order_events, fills, positions, balances, applied_messages, equity_snapshots, daily_pnl, ledger_alerts,"
    " quarantined_fills"
)


@pytest_asyncio.fixture(loop_scope="session")
async def store(ledger_db: str) -> AsyncIterator[Store]:
    conn = await asyncpg.connect(ledger_db)
    try:
        await conn.execute(f"TRUNCATE {TABLES}")
    finally:
        await conn.close()
    s = await Store.open(ledger_db, min_size=1, max_size=3)
    s.quarantine_unknown = True
    await s.seed_balances({"TRY": D(100_000)}, NOW)
    yield s
    await s.close()


@pytest_asyncio.fixture(loop_scope="session")
async def db(ledger_db: str, store: Store) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(ledger_db)
    yield conn
    await conn.close()


def filled(trade: str, quantity: str, *, order: str = "o-1", price: str = "100") -> OrderFilled:
    return OrderFilled(id=ids.fill_id("BTCTRY", trade, "x" + order), ts_ns=NOW, client_order_id=order,
                       exchange_order_id="x" + order, strategy="test", symbol="BTCTRY", side="buy", trade_id=trade,
                       price=D(price), quantity=D(quantity), fee=D("0.1"), fee_asset="TRY",
                       exchange_ts_ns=NOW + int(trade) * 10**9)  # fmt: skip


def accepted(order: str, quantity: str) -> OrderAccepted:
    return OrderAccepted(id=ids.accepted_id(order), ts_ns=NOW, client_order_id=order, exchange_order_id="x" + order,
                         intent_id="intent:" + order, strategy="test", symbol="BTCTRY", side="buy",
                         order_type="limit", price=D("100"), quantity=D(quantity))  # fmt: skip


async def books(db: asyncpg.Connection) -> tuple[int, Decimal | None, dict[str, Decimal]]:
    fills = await db.fetchval("SELECT count(*) FROM fills")
    quantity = await db.fetchval("SELECT quantity FROM positions WHERE symbol = 'BTCTRY'")
    balances = {r["asset"]: r["total"] for r in await db.fetch("SELECT asset, total FROM balances")}
    return fills, quantity, balances


async def open_alerts(db: asyncpg.Connection) -> int:
    return await db.fetchval("SELECT count(*) FROM ledger_alerts WHERE kind = 'quarantine' AND resolved_at IS NULL")


async def test_a_forged_fill_is_held_and_never_reaches_positions(store: Store, db: asyncpg.Connection) -> None:
    before = await books(db)
    result = await store.apply_fill(filled("1", "1E+400", order="nobody"), ORIGIN, NOW)
    assert result.status == "quarantined"
    assert result.changed  # a snapshot is due: its `quarantined` count moved
    assert await books(db) == before  # no fill, no position, balances as seeded
    assert before[2] == {"TRY": D(100_000)}
    assert await open_alerts(db) == 1
    [row] = await store.quarantined()
    assert (row["client_order_id"], row["quantity"], row["reason"]) == ("nobody", D("1E+400"), "unknown_order")
    assert (await store.state()).quarantined == 1
    # The same message again is a duplicate; the same trade under another message id too.
    assert (await store.apply_fill(filled("1", "1E+400", order="nobody"), ORIGIN, NOW)).status == "duplicate"
    again = filled("1", "1E+400", order="nobody")
    clone = OrderFilled(**{f: getattr(again, f) for f in again.__struct_fields__ if f != "id"}, id="other-id")
    assert (await store.apply_fill(clone, ORIGIN, NOW)).status == "duplicate_trade"
    assert (await store.state()).quarantined == 1


async def test_the_orders_acceptance_books_its_quarantined_fills(store: Store, db: asyncpg.Connection) -> None:
    assert (await store.apply_fill(filled("2", "0.5", order="late"), ORIGIN, NOW)).status == "quarantined"
    assert (await books(db))[0] == 0
    (result,) = await store.apply_batch([Incoming(accepted("late", "0.5"), ORIGIN)], NOW + 1)
    assert result.status == "applied"
    assert result.released == 1
    fills, quantity, balances = await books(db)
    assert fills == 1
    assert quantity == D("0.5")
    assert balances == {"TRY": D(100_000) - D(50) - D("0.1"), "BTC": D("0.5")}
    assert await open_alerts(db) == 0
    row = await db.fetchrow("SELECT resolution, resolved_by FROM quarantined_fills WHERE client_order_id = 'late'")
    assert tuple(row) == ("order_accepted", ids.accepted_id("late"))
    assert not await db.fetchval("SELECT flagged_unknown_order FROM fills WHERE trade_id = '2'")
    # A fill of a known order is booked at once.
    assert (await store.apply_fill(filled("3", "0.5", order="late"), ORIGIN, NOW)).status == "applied"
    assert (await store.state()).quarantined == 0


async def test_reconciliation_and_an_operator_release_held_fills(store: Store, db: asyncpg.Connection) -> None:
    await store.apply_fill(filled("4", "0.2", order="seen"), ORIGIN, NOW)
    await store.apply_fill(filled("5", "0.3", order="differs"), ORIGIN, NOW)
    await store.apply_fill(filled("6", "0.4", order="operator"), ORIGIN, NOW)
    exchange = [
        TradeView("BTCTRY", "4", "buy", D("100"), D("0.2"), D("0.1"), D(0), NOW, "xseen"),
        TradeView("BTCTRY", "5", "buy", D("100"), D("0.31"), D("0.1"), D(0), NOW, "xdiffers"),  # not the same
    ]
    assert await store.release_reconciled(exchange, NOW + 1) == 1
    assert await store.release_reconciled(exchange, NOW + 2) == 0  # once
    assert [r["client_order_id"] for r in await store.quarantined()] == ["differs", "operator"]
    [held] = [r for r in await store.quarantined() if r["client_order_id"] == "operator"]
    adopted = await store.adopt_quarantined(held["id"], "alice", NOW + 3)
    assert adopted is not None
    assert adopted.status == "applied"
    assert await store.adopt_quarantined(held["id"], "alice", NOW + 4) is None
    assert [r["client_order_id"] for r in await store.quarantined()] == ["differs"]
    fills, quantity, _ = await books(db)
    assert fills == 2
    assert quantity == D("0.6")
    flagged = await db.fetch("SELECT trade_id FROM fills WHERE flagged_unknown_order ORDER BY trade_id")
    assert [r["trade_id"] for r in flagged] == ["4", "6"]
    resolutions = await db.fetch("SELECT resolution, resolved_by FROM quarantined_fills WHERE resolved_at IS NOT NULL"
                                 " ORDER BY id")  # fmt: skip
    assert [tuple(r) for r in resolutions] == [("reconciled", "reconciliation"), ("adopted", "alice")]
    assert await open_alerts(db) == 1


async def test_alarms_for_a_fill_held_too_long_and_for_a_persisting_mismatch(store: Store) -> None:
    from btcbot.contracts.messages import Alarm
    from btcbot.ledger.reconcile import Difference
    from btcbot.ledger.tasks import LedgerAlarms
    from btcbot.runtime.memory import InMemoryBus

    bus = InMemoryBus()
    clock = {"now": NOW + 100 * 10**9}
    alarms = LedgerAlarms(bus, lambda: clock["now"], quarantine_after_ns=300 * 10**9)

    def sent() -> list[tuple[str, bool]]:
        return [(s, m.active) for s, m in bus.published if isinstance(m, Alarm)]

    await store.apply_fill(filled("7", "0.1", order="ghost"), ORIGIN, NOW)
    await alarms.check_quarantine(store)  # held 100 s: not too long; the first look publishes the clear state
    clock["now"] = NOW + 301 * 10**9
    await alarms.check_quarantine(store)
    await alarms.check_quarantine(store)
    [held] = await store.quarantined()
    await store.adopt_quarantined(held["id"], "op", clock["now"])
    await alarms.check_quarantine(store)
    assert sent() == [("control.alarm.ledger.quarantine", False), ("control.alarm.ledger.quarantine", True),
                      ("control.alarm.ledger.quarantine", False)]  # fmt: skip

    bus.published.clear()
    missing = Difference("missing_fill", symbol="BTCTRY", trade_id="9", exchange_order_id="x9", exchange=D(1))
    await alarms.after_round("deferred", [])
    await alarms.after_round("mismatch", [missing])
    clock["now"] += 1
    await alarms.after_round("mismatch", [missing])
    await alarms.after_round("match", [])
    assert sent() == [("control.alarm.ledger.reconcile_mismatch", True),
                      ("control.alarm.ledger.reconcile_mismatch", False)]  # fmt: skip
    raised = [m for _, m in bus.published if isinstance(m, Alarm) and m.active]
    assert raised[0].detail == "1 confirmed differences: missing_fill"


async def test_two_replicas_racing_an_acceptance_and_its_fill_leave_nothing_in_quarantine(
    ledger_db: str, store: Store, db: asyncpg.Connection
) -> None:
    """Replica A records an order's acceptance while replica B applies its fill, at the same moment, 300 times:
    every fill is booked (in B's transaction, or released by A's), none stays quarantined."""
    import asyncio

    other = await Store.open(ledger_db, min_size=1, max_size=3)
    other.quarantine_unknown = True
    try:
        orders = [f"race-{k}" for k in range(300)]
        await asyncio.gather(*(
            task
            for k, order in enumerate(orders)
            for task in (
                store.apply_order_event(accepted(order, "0.01"), ORIGIN, NOW),
                other.apply_fill(filled(str(100 + k), "0.01", order=order), ORIGIN, NOW),
            )
        ))  # fmt: skip
    finally:
        await other.close()
    stuck = await db.fetchval(
        "SELECT count(*) FROM quarantined_fills WHERE resolved_at IS NULL AND client_order_id LIKE 'race-%'"
    )
    booked = await db.fetchval("SELECT count(*) FROM fills WHERE client_order_id LIKE 'race-%'")
    assert (stuck, booked) == (0, len(orders))
