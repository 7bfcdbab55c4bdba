"""Snapshot watermark, heartbeat, bot PnL, opening holdings and halt resumes, on a real Postgres (and, for resumes,
the real exchange simulator as a process)."""

from __future__ import annotations

import base64
import os
import secrets
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from decimal import Decimal
from pathlib import Path

import asyncpg
import pytest
import pytest_asyncio

from btcbot.contracts import ids
from btcbot.contracts.messages import OrderFilled, PortfolioSnapshot, ResumeSymbol
from btcbot.ledger.exchange import ExchangeAccount
from btcbot.ledger.handlers import Ledger
from btcbot.ledger.store import Store
from btcbot.ledger.tasks import Reconciler
from btcbot.runtime.bus import Delivery
from btcbot.runtime.memory import InMemoryBus
from btcbot.runtime.signing import RunKeys

from .test_ledger_handlers import TABLES, RecordingLog

pytestmark = pytest.mark.integration

D = Decimal
S = 1_000_000_000
NOW = 1_750_000_000 * S


# Resumes are signed with the operator's key; the ledger accepts only that one.
OPERATOR = RunKeys.generate().operator_signer()


def resume(rid: str, reason: str = "") -> ResumeSymbol:
    return OPERATOR.sign(ResumeSymbol(id=rid, ts_ns=NOW, symbol="BTCTRY", reason=reason, operator="ops"))


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> int:
        self.now += 1
        return self.now


@pytest_asyncio.fixture(loop_scope="session")
async def store(ledger_db: str) -> AsyncIterator[Store]:
    conn = await asyncpg.connect(ledger_db)
    try:
        await conn.execute(f"TRUNCATE {TABLES}, opening_positions")
    finally:
        await conn.close()
    s = await Store.open(ledger_db, min_size=1, max_size=2)
    yield s
    await s.close()


def make_ledger(store: Store, clock: Clock, floor: list[int] | None = None) -> Ledger:
    ledger = Ledger(
        store=store, bus=InMemoryBus(), account="main", quote_asset="TRY", now_ns=clock, log=RecordingLog(),
        heartbeat_ns=5 * S, resume_keys=OPERATOR.keys(),
    )  # fmt: skip
    if floor is not None:

        async def ack_floor() -> int:
            return floor[0]

        ledger.ack_floor = ack_floor
    return ledger


def filled(trade: str, side: str, price: str, quantity: str, fee: str = "0", symbol: str = "BTCTRY") -> OrderFilled:
    return OrderFilled(
        id=ids.fill_id(symbol, trade, "x1"), ts_ns=NOW, client_order_id="bb-1", exchange_order_id="x1",
        strategy="test", symbol=symbol, side=side, trade_id=trade, price=D(price),  # type: ignore[arg-type]
        quantity=D(quantity), fee=D(fee), fee_asset="TRY", exchange_ts_ns=NOW + int(trade),
    )  # fmt: skip


async def deliver(ledger: Ledger, event: OrderFilled, sequence: int) -> None:
    await ledger.on_execution(event, Delivery(subject="exec.filled.BTCTRY", stream="EXECUTION", sequence=sequence))


def last(ledger: Ledger) -> PortfolioSnapshot:
    assert isinstance(ledger.bus, InMemoryBus)
    return ledger.bus.of_type(PortfolioSnapshot)[-1]


async def test_the_watermark_stops_at_the_first_gap_and_lists_what_is_applied_above_it(store: Store) -> None:
    await store.seed_balances({"TRY": D(100000)}, NOW)
    floor = [0]
    ledger = make_ledger(store, Clock(), floor)
    await deliver(ledger, filled("1", "buy", "100", "1"), 1)
    assert (last(ledger).exec_seq, last(ledger).exec_seqs_above) == (1, ())
    # 2 is in flight elsewhere (another replica, or a redelivery to come): 3 and 4 are applied above the gap.
    await deliver(ledger, filled("3", "buy", "100", "1"), 3)
    await deliver(ledger, filled("4", "buy", "100", "1"), 4)
    assert (last(ledger).exec_seq, last(ledger).exec_seqs_above) == (1, (3, 4))
    # Sequence 2 was dead-lettered: the durable's ack floor passes it.
    floor[0] = 2
    snap = await ledger.publish_snapshot(None, cause="test")
    assert snap is not None
    assert (snap.exec_seq, snap.exec_seqs_above) == (4, ())

    # A failing ack floor read keeps the last one known (it only grows).
    async def broken() -> int:
        raise TimeoutError("nats slow")

    ledger.ack_floor = broken
    snap = await ledger.publish_snapshot(None, cause="test2")
    assert snap is not None
    assert snap.exec_seq == 4
    assert ledger.log.named("ledger.ack_floor_unknown")  # type: ignore[attr-defined]


async def test_a_heartbeat_snapshot_goes_out_every_interval_even_when_nothing_moved(store: Store) -> None:
    await store.seed_balances({"TRY": D(1000)}, NOW)
    clock = Clock()
    ledger = make_ledger(store, clock)
    first = await ledger.revalue()
    assert first is not None
    assert ":heartbeat:" in first.id
    assert await ledger.revalue() is None  # nothing moved, not due yet
    clock.now += 5 * S
    second = await ledger.revalue()
    assert second is not None
    assert second.id != first.id
    assert second.ts_ns > first.ts_ns


async def test_opening_holdings_sell_without_a_halt_and_carry_no_bot_pnl(store: Store) -> None:
    await store.seed_balances({"TRY": D(1000), "BTC": D(2)}, NOW)
    recorded = await store.record_opening({"BTC": "BTCTRY"}, (await store.state()).balances, "start", NOW)
    assert recorded == {"BTCTRY": D(2)}
    assert await store.record_opening({"BTC": "BTCTRY"}, {"BTC": D(9)}, "again", NOW) == {}  # once only
    ledger = make_ledger(store, Clock())
    await deliver(ledger, filled("1", "buy", "100", "1", "1"), 1)
    await deliver(ledger, filled("2", "sell", "150", "2.5", "2"), 2)
    snap = last(ledger)
    assert snap.halted == ()
    [pos] = snap.positions
    assert (pos.quantity, pos.opening_quantity) == (D("0.5"), D("0.5"))
    # Bot PnL: bought 1 at 101 (with its fee), sold it at 150, paid 2 in fees on the sale; the 1.5 of opening
    # holdings sold realize nothing.
    assert snap.bot_pnl == D(150) - D(101) - D(2)
    assert snap.realized_pnl == snap.bot_pnl
    assert snap.day_fees == D(3)  # both fills are of the clock's day
    assert snap.day_pnl == snap.bot_pnl  # no PnL recorded before today
    assert snap.missing_marks == ("BTCTRY",)


async def test_bot_peak_persists_and_drawdown_is_measured_from_it(store: Store) -> None:
    await store.seed_balances({"TRY": D(100000)}, NOW)
    ledger = make_ledger(store, Clock())
    await deliver(ledger, filled("1", "buy", "100", "10"), 1)
    from btcbot.contracts.messages import BookSnapshot, Level

    async def mark(seq: int, mid: str) -> PortfolioSnapshot:
        book = BookSnapshot(
            id=f"b{seq}", ts_ns=NOW + seq, symbol="BTCTRY", sequence=seq, bids=(Level(D(mid), D(1)),),
            asks=(Level(D(mid), D(1)),), exchange_ts_ns=NOW + seq, received_ts_ns=NOW + seq,
        )  # fmt: skip
        await ledger.on_book(book, Delivery(subject="md.book.BTCTRY"))
        snap = await ledger.publish_snapshot(None, cause=f"m{seq}")
        assert snap is not None
        return snap

    up = await mark(1, "130")
    assert (up.bot_pnl, up.bot_peak_pnl, up.bot_drawdown, up.missing_marks) == (D(300), D(300), D(0), ())
    down = await mark(2, "90")
    assert (down.bot_pnl, down.bot_peak_pnl, down.bot_drawdown) == (D(-100), D(300), D(400))
    # A new ledger process (restart) still knows the peak.
    again = make_ledger(store, Clock())
    again.marks = dict(ledger.marks)
    snap = await again.publish_snapshot(None, cause="restart")
    assert snap is not None
    assert (snap.bot_peak_pnl, snap.bot_drawdown) == (D(300), D(400))


# ---- halt resume against the real simulator --------------------------------------------------------------------


@pytest.fixture(scope="module")
def simulator() -> Iterator[tuple[str, str, str]]:
    """The exchange simulator as a process, with an account holding BTC=2 and TRY=100000."""
    base = Path(tempfile.mkdtemp(prefix="ledger-sim-"))
    key, secret = "ledger-test", base64.b64encode(secrets.token_bytes(32)).decode()
    port_file = base / "sim.port"
    env = {**os.environ, "SIM_API_KEY": key, "SIM_API_SECRET": secret}
    args = [sys.executable, "-m", "btcbot.sim", "--port", "0", "--port-file", str(port_file), "--seed", "3",
            "--symbols", "BTCTRY", "--fund", "TRY=100000,BTC=2", "--no-rate-limits"]  # fmt: skip
    with (base / "sim.log").open("wb") as log:
        proc = subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while not (port_file.exists() and port_file.read_text().strip()):
            assert proc.poll() is None, (base / "sim.log").read_text()
            assert time.monotonic() < deadline, "the simulator did not start"
            time.sleep(0.05)
        yield f"http://127.0.0.1:{int(port_file.read_text())}", key, secret
    finally:
        proc.terminate()
        proc.wait(10)


async def test_a_resume_clears_a_halt_only_once_the_exchange_confirms_the_balances(
    store: Store, simulator: tuple[str, str, str], ledger_db: str
) -> None:
    url, key, secret = simulator
    # An old ledger that never recorded opening holdings: it knew TRY only, then booked a sell of 1 BTC (the
    # account held 2 at the exchange). Balances: BTC -1 (the fill), TRY 100000 after the sale.
    await store.seed_balances({"TRY": D(100000) - D(150), "BTC": D(3)}, NOW)
    clock = Clock()
    ledger = make_ledger(store, clock)
    account = ExchangeAccount.connect(url, key, secret, 5.0)
    reconciler = Reconciler(store, account, ["BTCTRY"], now_ns=clock, lookback=3600, grace=30)
    ledger.reconcile_assets = reconciler.check_assets
    try:
        await deliver(ledger, filled("1", "sell", "150", "1"), 1)
        assert last(ledger).halted == ("BTCTRY",)
        command = resume("r1", "checked")
        await ledger.on_resume(command, Delivery(subject="control.resume.BTCTRY"))
        assert last(ledger).halted == ()
        [pos] = last(ledger).positions
        assert (pos.quantity, pos.opening_quantity) == (D(0), D(0))  # the 1 sold was an opening holding
        assert ledger.log.named("ledger.halt_resumed")  # type: ignore[attr-defined]

        # A halt whose balances the exchange does not confirm stays, with the reason logged and an alert row.
        await deliver(ledger, filled("2", "sell", "150", "5"), 2)
        assert last(ledger).halted == ("BTCTRY",)
        await ledger.on_resume(
            resume("r2", "try"),
            Delivery(subject="control.resume.BTCTRY"),
        )
        assert last(ledger).halted == ("BTCTRY",)
        [refused] = ledger.log.named("ledger.resume_refused")  # type: ignore[attr-defined]
        assert refused["why"].startswith("BTC: ledger")
        conn = await asyncpg.connect(ledger_db)
        try:
            kinds = [r["kind"] for r in await conn.fetch("SELECT kind FROM ledger_alerts WHERE resolved_at IS NULL")]
        finally:
            await conn.close()
        assert "resume_refused" in kinds
        assert "oversell" in kinds
    finally:
        await account.close()


async def test_a_resume_without_reconciliation_keeps_the_halt(store: Store) -> None:
    await store.seed_balances({"TRY": D(1000)}, NOW)
    ledger = make_ledger(store, Clock())
    await deliver(ledger, filled("1", "sell", "150", "1"), 1)
    await ledger.on_resume(
        resume("r"),
        Delivery(subject="control.resume.BTCTRY"),
    )
    assert last(ledger).halted == ("BTCTRY",)
    [refused] = ledger.log.named("ledger.resume_refused")  # type: ignore[attr-defined]
    assert "reconciliation with the exchange is off" in refused["why"]


async def test_a_resume_of_a_symbol_that_is_not_halted_is_no_alert(store: Store) -> None:
    await store.seed_balances({"TRY": D(1000)}, NOW)
    ledger = make_ledger(store, Clock())
    await ledger.on_resume(
        resume("r"),
        Delivery(subject="control.resume.BTCTRY"),
    )
    assert ledger.log.named("ledger.resume_refused") == []  # type: ignore[attr-defined]
    assert ledger.log.named("ledger.resume_not_needed") == [{"symbol": "BTCTRY", "operator": "ops"}]  # type: ignore[attr-defined]


@pytest.mark.parametrize("forged", ["unsigned", "other key"])
async def test_an_unsigned_resume_is_refused_with_an_alert(store: Store, ledger_db: str, forged: str) -> None:
    await store.seed_balances({"TRY": D(1000)}, NOW)
    ledger = make_ledger(store, Clock())
    await deliver(ledger, filled("1", "sell", "150", "1"), 1)
    command = ResumeSymbol(id="rx", ts_ns=NOW, symbol="BTCTRY", reason="", operator="mallory")
    if forged == "other key":
        command = RunKeys.generate().operator_signer().sign(command)
    await ledger.on_resume(command, Delivery(subject="control.resume.BTCTRY"))
    assert last(ledger).halted == ("BTCTRY",)
    [refused] = ledger.log.named("ledger.resume_unsigned")  # type: ignore[attr-defined]
    assert refused["problem"] == ("MISSING" if forged == "unsigned" else "UNKNOWN_KEY")
    # Refused before anything else: not even the reconciliation check ran.
    assert ledger.log.named("ledger.resume_refused") == []  # type: ignore[attr-defined]
    conn = await asyncpg.connect(ledger_db)
    try:
        kinds = [r["kind"] for r in await conn.fetch("SELECT kind FROM ledger_alerts WHERE resolved_at IS NULL")]
    finally:
        await conn.close()
    assert "resume_unsigned" in kinds
