"""Future-dated messages are dead-lettered by every service that consumes them, and the real ones act (issue 8,
"Done when" (c)).

Real processes on a private NATS: the simulator (exchange rules), risk, strategy and ledger (no execution:
an approval is a SubmitOrder on ORDERS). The test is the market (it publishes books), the operator (kill
switch) and the attacker (messages dated an hour ahead):
- a book dated +1 h: risk, strategy and the ledger dead-letter it, and risk's STALE_BOOK still fires once the
  real books stop (trusted, the forged book would look fresh for an hour);
- a KillSwitch release dated +1 h while the kill is engaged: risk dead-letters it, the kill holds, and a later
  real release and a later real kill both take effect (trusting the sender's clock, the forged release would
  outrank that kill for an hour);
- a flat PortfolioSnapshot dated +1 h for an account holding a position: strategy and risk dead-letter it, and
  the strategy does not buy; a later real flat snapshot does make it buy (so the check could have failed).
Bounded: every wait has a deadline; about a minute in all.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import secrets
import shutil
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import msgspec
import pytest
import pytest_asyncio

from btcbot.contracts import ids, subjects
from btcbot.contracts.codec import decode
from btcbot.contracts.messages import (
    Balance,
    BookSnapshot,
    DeadLetter,
    KillSwitch,
    Level,
    Message,
    OrderDenied,
    OrderIntent,
    PortfolioSnapshot,
    Position,
    SubmitOrder,
)
from btcbot.runtime.signing import RunKeys

pytestmark = [pytest.mark.chaos, pytest.mark.integration]

SYMBOL = "BTCTRY"
HOUR_NS = 3600 * 10**9
BID, ASK = Decimal(3_000_000), Decimal(3_000_500)
D = Decimal


@dataclass
class Rig:
    """The running processes and the test's connection."""

    base: Path
    sup: Any
    nats: Any
    js: Any = None
    nc: Any = None
    publisher: Any = None
    risk_account: str = field(default_factory=lambda: f"r{secrets.token_hex(3)}")
    strategy_account: str = field(default_factory=lambda: f"s{secrets.token_hex(3)}")
    sequence: int = 0
    keys: RunKeys = field(default_factory=RunKeys.generate)

    async def publish(self, subject: str, message: Message) -> None:
        await self.publisher.publish(subject, message)

    def book(self, ahead_ns: int = 0) -> BookSnapshot:
        self.sequence += 1
        now = time.time_ns() + ahead_ns
        return BookSnapshot(id=ids.book_id(SYMBOL, now, self.sequence), ts_ns=now, symbol=SYMBOL,
                            sequence=self.sequence, bids=(Level(BID, D(1)),), asks=(Level(ASK, D(1)),),
                            exchange_ts_ns=now, received_ts_ns=now)  # fmt: skip

    async def intent(self, n: int) -> str:
        """A small limit buy straight onto intent.BTCTRY; returns its id."""
        book = ids.book_id(SYMBOL, time.time_ns(), 10_000 + n)
        intent = OrderIntent(id=ids.intent_id("chaos", SYMBOL, book), ts_ns=time.time_ns(), strategy="chaos",
                             symbol=SYMBOL, side="buy", order_type="limit", price=BID, quantity=D("0.0005"),
                             reason="future-dated chaos", book_id=book)  # fmt: skip
        await self.publish(subjects.intent(SYMBOL), intent)
        return intent.id

    async def stream(self, name: str, subject: str = ">") -> list[tuple[str, Message | None, bytes]]:
        from btcbot.runtime.inspect import read_stream

        out: list[tuple[str, Message | None, bytes]] = []
        async for stored in read_stream(self.js, name, 1, subject):
            try:
                out.append((stored.subject, decode(stored.data), stored.data))
            except (msgspec.DecodeError, msgspec.ValidationError):
                out.append((stored.subject, None, stored.data))
        return out

    async def verdict(self, intent_id: str, timeout: float = 20.0) -> str:
        """ "approved" or the denial reason of one intent (waits for risk's answer)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for _, message, _ in await self.stream("ORDERS"):
                if isinstance(message, SubmitOrder) and message.intent_id == intent_id:
                    return "approved"
                if isinstance(message, OrderDenied) and message.intent_id == intent_id:
                    return message.reason
            await asyncio.sleep(0.3)
        raise AssertionError(f"risk never answered {intent_id}")

    async def dead_letters(self) -> list[DeadLetter]:
        return [m for _, m, _ in await self.stream("DLQ") if isinstance(m, DeadLetter)]

    async def wait_dead_lettered(self, forged_id: str, expected: set[tuple[str, str]], timeout: float = 20.0) -> None:
        """Wait until each (service, subject) dead-lettered the forged message, every time as FUTURE_DATED."""
        deadline = time.monotonic() + timeout
        seen: dict[tuple[str, str], str] = {}
        while time.monotonic() < deadline:
            seen = {}
            for letter in await self.dead_letters():
                with contextlib.suppress(msgspec.DecodeError, msgspec.ValidationError):
                    if decode(letter.payload).id == forged_id:
                        seen[(letter.service, letter.original_subject)] = letter.error
            if expected <= set(seen):
                break
            await asyncio.sleep(0.3)
        assert expected <= set(seen), f"dead letters of {forged_id}: {seen}"
        assert all(error.startswith("FUTURE_DATED") for error in seen.values()), seen

    async def strategy_buys(self) -> list[OrderIntent]:
        return [m for _, m, _ in await self.stream("INTENTS")
                if isinstance(m, OrderIntent) and m.strategy != "chaos" and m.side == "buy"]  # fmt: skip


def portfolio(account: str, quantity: Decimal, ts_ns: int) -> PortfolioSnapshot:
    """A snapshot holding `quantity` BTC bought far above the market (so the strategy never sells it)."""
    positions = () if not quantity else (
        Position(symbol=SYMBOL, quantity=quantity, avg_cost=D(10**9), realized_pnl=D(0), unrealized_pnl=D(0),
                 mark=(BID + ASK) / 2),
    )  # fmt: skip
    return PortfolioSnapshot(id=f"portfolio:chaos:{account}:{ts_ns}", ts_ns=ts_ns, account=account,
                             quote_asset="TRY", balances=(Balance(asset="TRY", total=D(100_000)),),
                             positions=positions, exposure=D(0), realized_pnl=D(0), unrealized_pnl=D(0),
                             fees=D(0), equity=D(100_000), peak_equity=D(100_000), drawdown=D(0),
                             fills=0)  # fmt: skip


@pytest_asyncio.fixture(loop_scope="session")
async def rig(pg_admin_url: str) -> AsyncIterator[Rig]:
    from btcbot.contracts.streams import ALL_STREAMS
    from btcbot.devstack.infra import drop_database, ensure_database, start_nats
    from btcbot.devstack.restarts import RestartPolicy
    from btcbot.devstack.supervisor import Supervisor
    from btcbot.runtime.jetstream import NatsPublisher, connect, provision

    base = Path(tempfile.mkdtemp(prefix="btcbot-future-"))
    base.chmod(0o711)
    nats = start_nats(base / "nats")
    db_name = f"btcbot_future_{secrets.token_hex(4)}"
    database_url = await ensure_database(pg_admin_url, db_name)
    r = Rig(base, Supervisor(base / "logs", RestartPolicy(max_restarts=0)), nats)
    try:
        r.nc = await connect(nats.url, "chaos-future", 10, reconnect_forever=False)
        r.js = r.nc.jetstream()
        await provision(r.js, ALL_STREAMS)
        r.publisher = NatsPublisher(r.js)
        secret = base64.b64encode(secrets.token_bytes(32)).decode()
        port_file = base / "sim.port"
        r.sup.add("sim", "btcbot.sim", {"SIM_API_KEY": "future", "SIM_API_SECRET": secret},
                  ["--port", "0", "--port-file", str(port_file), "--seed", "3", "--symbols", SYMBOL,
                   "--no-rate-limits"], health=False)  # fmt: skip
        await r.sup.start("sim")
        deadline = time.monotonic() + 30
        while not (port_file.exists() and port_file.read_text().strip()):
            assert time.monotonic() < deadline, "the simulator did not report its port"
            await asyncio.sleep(0.05)
        sim_url = f"http://127.0.0.1:{int(port_file.read_text())}"
        common = {"NATS_URL": nats.url, "REDIS_URL": "redis://127.0.0.1:6379/0", "DATABASE_URL": database_url,
                  "BTCBOT_KEY_PREFIX": f"future-{secrets.token_hex(4)}", "BTCBOT_SYMBOLS": SYMBOL,
                  "BTCBOT_SHUTDOWN_GRACE": "2", "BTCBOT_ACCOUNT": r.risk_account}  # fmt: skip
        exchange = {"BTCTURK_BASE_URL": sim_url, "BTCTURK_API_KEY": "future", "BTCTURK_API_SECRET": secret}
        ledger = {"LEDGER_OPENING_BALANCES": "TRY=100000", "LEDGER_RECONCILE_INTERVAL": "0",
                  "LEDGER_REVALUE_INTERVAL": "0.5"}  # fmt: skip
        risk = {"RISK_MAX_BOOK_AGE": "3", "RISK_MAX_INTENT_AGE": "60"}
        # The strategy trades for another account, whose snapshots only the test publishes.
        strategy = {"BTCBOT_ACCOUNT": r.strategy_account, "STRATEGY_COOLDOWN": "0.5", "STRATEGY_MAX_BOOK_AGE": "5"}
        r.sup.add("ledger", "btcbot.ledger", {**common, **ledger, **r.keys.service_env("ledger")})
        r.sup.add("risk", "btcbot.risk", {**common, **exchange, **risk, **r.keys.service_env("risk")})
        # The strategy reads the simulator's exchangeinfo for its symbols' scales (public: no credentials).
        r.sup.add("strategy", "btcbot.strategy", {**common, **strategy, "BTCTURK_BASE_URL": sim_url})
        for name in ("ledger", "risk", "strategy"):
            await r.sup.start(name)
        for name in ("ledger", "risk", "strategy"):
            await r.sup.wait_ready(name, 90)
        yield r
    finally:
        with contextlib.suppress(Exception):
            await r.sup.close()
        if r.nc is not None:
            with contextlib.suppress(Exception):
                await r.nc.close()
        nats.stop()
        with contextlib.suppress(Exception):
            await drop_database(pg_admin_url, db_name)
        if os.environ.get("BTCBOT_KEEP_CHAOS") != "1":
            shutil.rmtree(base, ignore_errors=True)
        else:
            print(f"chaos state kept in {base}")


async def keep_publishing(rig: Rig, stop: asyncio.Event, make: Callable[[], tuple[str, Message]]) -> None:
    while not stop.is_set():
        await rig.publish(*make())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.3)


async def test_future_dated_control_book_and_portfolio_are_dead_lettered_and_real_ones_act(rig: Rig) -> None:
    book_subject = subjects.book(SYMBOL)
    stop_books = asyncio.Event()
    books = asyncio.create_task(keep_publishing(rig, stop_books, lambda: (book_subject, rig.book())))
    # The strategy's account holds a position (real snapshot): it has nothing to buy.
    held = portfolio(rig.strategy_account, D(1), time.time_ns())
    await rig.publish(subjects.portfolio(rig.strategy_account), held)
    try:
        # ---- books (first: before any approval leaves an order in flight): one dated +1 h, real ones stop
        await asyncio.sleep(2.0)  # every consumer has seen real books
        stop_books.set()
        await books
        forged_book = rig.book(HOUR_NS)
        await rig.publish(book_subject, forged_book)
        await rig.wait_dead_lettered(
            forged_book.id, {("risk", book_subject), ("strategy", book_subject), ("ledger", book_subject)}
        )
        await asyncio.sleep(4.0)  # longer than RISK_MAX_BOOK_AGE since the last real book
        assert await rig.verdict(await rig.intent(1)) == "STALE_BOOK"  # the forged book kept nothing fresh
        await rig.publish(book_subject, rig.book())
        await asyncio.sleep(0.5)
        assert await rig.verdict(await rig.intent(2)) != "STALE_BOOK"
        stop_books.clear()
        books = asyncio.create_task(keep_publishing(rig, stop_books, lambda: (book_subject, rig.book())))

        # ---- control: a release dated an hour ahead while the kill is engaged -------------------------
        def kill(engaged: bool, ahead_ns: int = 0) -> KillSwitch:
            now = time.time_ns() + ahead_ns
            # Signed by the operator: only the date is wrong in the forged release.
            return rig.keys.operator_signer().sign(
                KillSwitch(id=f"kill:chaos:{engaged}:{now}", ts_ns=now, engaged=engaged, reason="chaos",
                           operator="chaos")
            )  # fmt: skip

        await rig.publish(subjects.CONTROL_KILL, kill(True))
        assert await rig.verdict(await rig.intent(3)) == "KILL_SWITCH"
        forged_release = kill(False, HOUR_NS)
        await rig.publish(subjects.CONTROL_KILL, forged_release)
        await rig.wait_dead_lettered(forged_release.id, {("risk", subjects.CONTROL_KILL)})
        assert await rig.verdict(await rig.intent(4)) == "KILL_SWITCH"  # the forged release did nothing
        await rig.publish(subjects.CONTROL_KILL, kill(False))  # a real release acts ...
        await asyncio.sleep(0.5)
        assert await rig.verdict(await rig.intent(5)) != "KILL_SWITCH"
        await rig.publish(subjects.CONTROL_KILL, kill(True))  # ... and so does a later real kill
        await asyncio.sleep(0.5)
        assert await rig.verdict(await rig.intent(6)) == "KILL_SWITCH"
        await rig.publish(subjects.CONTROL_KILL, kill(False))
        await asyncio.sleep(0.5)

        # ---- portfolio: a flat one dated an hour ahead, for the account that holds a position ---------
        assert await rig.strategy_buys() == []  # holding: nothing to buy
        forged_flat = portfolio(rig.strategy_account, D(0), time.time_ns() + HOUR_NS)
        await rig.publish(subjects.portfolio(rig.strategy_account), forged_flat)
        portfolio_subject = subjects.portfolio(rig.strategy_account)
        await rig.wait_dead_lettered(forged_flat.id, {("strategy", portfolio_subject), ("risk", portfolio_subject)})
        await asyncio.sleep(3.0)  # books keep coming: a strategy that believed the forgery would buy now
        assert await rig.strategy_buys() == []
        # A real flat snapshot is believed: the strategy buys (so the check above could have failed).
        real_flat = portfolio(rig.strategy_account, D(0), time.time_ns())
        await rig.publish(portfolio_subject, real_flat)
        deadline = time.monotonic() + 15
        while not await rig.strategy_buys():
            assert time.monotonic() < deadline, "the strategy never bought on a real flat portfolio"
            await asyncio.sleep(0.3)
    finally:
        stop_books.set()
        with contextlib.suppress(Exception):
            await books
