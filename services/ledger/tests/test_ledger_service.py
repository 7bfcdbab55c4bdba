"""The ledger as a real process: migrates a fresh database, books a fill from NATS, publishes the portfolio."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import asyncpg
import msgspec
import pytest

from btcbot.contracts import ids, streams, subjects
from btcbot.contracts.messages import OrderAccepted, OrderFilled, PortfolioSnapshot
from btcbot.runtime.jetstream import NatsPublisher, connect, provision

pytestmark = pytest.mark.integration


async def test_the_service_books_a_fill_and_publishes_the_portfolio(
    nats_url: str, fresh_db: str, tmp_path: Path
) -> None:
    account = f"t{secrets.token_hex(4)}"
    trade = str(secrets.randbelow(10**12))
    nc = await connect(nats_url, "ledger-test", 5, reconnect_forever=False)
    js = nc.jetstream()
    await provision(js, streams.ALL_STREAMS)
    env = {
        **os.environ,
        "NATS_URL": nats_url,
        "DATABASE_URL": fresh_db,
        "BTCBOT_ACCOUNT": account,
        "BTCBOT_HEALTH_PORT": "0",
        "BTCBOT_LOG_FORMAT": "json",
        "LEDGER_OPENING_BALANCES": "TRY=100000",
        "LEDGER_REVALUE_INTERVAL": "0.5",
    }
    log_path = tmp_path / "ledger.log"
    log_file = log_path.open("wb")
    proc = subprocess.Popen(  # noqa: ASYNC220  (a child process that lives across awaits)
        [sys.executable, "-m", "btcbot.ledger"], env=env, stdout=log_file, stderr=subprocess.STDOUT
    )
    try:
        event = OrderFilled(
            id=ids.fill_id("BTCTRY", trade, "1"),
            ts_ns=1,
            client_order_id="bb-svc",
            exchange_order_id="1",
            strategy="test",
            symbol="BTCTRY",
            side="buy",
            trade_id=trade,
            price=Decimal("2000000"),
            quantity=Decimal("0.01"),
            fee=Decimal("18"),
            fee_asset="TRY",
        )
        # The order first: a fill of an order the ledger does not know would wait in quarantine.
        order = OrderAccepted(id=ids.accepted_id("bb-svc"), ts_ns=1, client_order_id="bb-svc", exchange_order_id="1",
                              intent_id="i-svc", strategy="test", symbol="BTCTRY", side="buy", order_type="limit",
                              price=Decimal("2000000"), quantity=Decimal("0.01"))  # fmt: skip
        await NatsPublisher(js).publish(subjects.execution("accepted", "BTCTRY"), order)
        await NatsPublisher(js).publish(subjects.execution("filled", "BTCTRY"), event)
        sub = await js.pull_subscribe(subjects.portfolio(account), stream=streams.PORTFOLIO.name)
        snapshot: PortfolioSnapshot | None = None
        deadline = asyncio.get_running_loop().time() + 20
        while snapshot is None and asyncio.get_running_loop().time() < deadline:
            assert proc.poll() is None, log_path.read_text()
            try:
                msgs = await sub.fetch(batch=10, timeout=1)
            except TimeoutError:
                continue
            for msg in msgs:
                await msg.ack()
                candidate = msgspec.msgpack.decode(msg.data, type=PortfolioSnapshot)
                if candidate.id == f"portfolio:{account}:{event.id}":
                    snapshot = candidate
        await sub.unsubscribe()
        assert snapshot is not None, log_path.read_text()
        assert {b.asset: b.total for b in snapshot.balances} == {"TRY": Decimal(79982), "BTC": Decimal("0.01")}
        assert snapshot.positions[0].avg_cost == Decimal(2001800)

        conn = await asyncpg.connect(fresh_db)
        try:
            assert await conn.fetchval("SELECT count(*) FROM fills WHERE trade_id = $1", trade) == 1
            assert await conn.fetchval("SELECT count(*) FROM schema_migrations") >= 1
        finally:
            await conn.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            code = await asyncio.to_thread(proc.wait, 15)
        except subprocess.TimeoutExpired:
            proc.kill()
            code = await asyncio.to_thread(proc.wait, 5)
        log_file.close()
        # The durables are the ledger's own; remove them so later tests on this server start clean.
        for spec in (streams.LEDGER_EXECUTION, streams.LEDGER_MARKS):
            with contextlib.suppress(Exception):  # already gone is fine
                await js.delete_consumer(spec.stream, spec.durable)
        await nc.close()
    assert code == 0, log_path.read_text()
