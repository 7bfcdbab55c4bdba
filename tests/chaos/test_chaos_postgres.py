"""Chaos (b): Postgres stops for 20 s while the strategy trades -> no position sold twice, no halt, verify clean.

The whole pipeline runs as real processes (simulator, marketdata, strategy, risk, execution, ledger) on a private
NATS, the session's Redis (own key prefix) and a PRIVATE Postgres that the test stops and starts again on the same
port. The strategy is tuned to round-trip often (tight take-profit and stop-loss), and the outage begins while it
holds a position, so it sells during the outage, when the ledger can publish nothing.

The incident this guards against: the strategy waited 15 s for the ledger, then acted on the old snapshot and
sold the same ETH position a second time; the ledger halted ETHTRY as an oversell. Here every fill of the
strategy's orders is replayed in stream order: its own position (buys minus sells) never goes below zero.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import secrets
import shutil
import tempfile
import time
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import pytest_asyncio

from btcbot.runtime.signing import RunKeys

pytestmark = [pytest.mark.chaos, pytest.mark.integration]

SYMBOL = "ETHTRY"
FUNDS = "TRY=1000000,ETH=20"
SIM_ADMIN_TOKEN = "chaos-pg-sim-admin-token"  # /sim/state (read by verify) needs the simulator's admin token
OUTAGE = 20.0


class PrivatePostgres:
    """An embedded Postgres that can be stopped and started again on the same data directory and port."""

    def __init__(self, state: Path) -> None:
        from btcbot.devstack.embedded import start_postgres

        self.state = state
        self.server = start_postgres(state)
        self.url = self.server.url
        self.port = int(self.url.rsplit(":", 1)[1].split("/", 1)[0])

    def stop(self) -> None:
        self.server.stop()

    def restart(self) -> None:
        """Start the same cluster on the same port, where its clients expect it."""
        from btcbot.devstack.embedded import start_postgres

        self.server = start_postgres(self.state, port=self.port)


class Rig:
    """The running pipeline and where its parts are."""

    def __init__(self, base: Path, sup: Any, nats: Any, pg: PrivatePostgres, redis_url: str) -> None:
        self.base = base
        self.sup = sup
        self.nats = nats
        self.pg = pg
        self.redis_url = redis_url
        self.key_prefix = f"chaos-pg-{secrets.token_hex(4)}"
        self.api_key = "chaos-pg"
        self.sim_url = ""

    async def start(self) -> None:
        from btcbot.contracts.streams import ALL_STREAMS
        from btcbot.runtime.jetstream import connect, provision

        nc = await connect(self.nats.url, "chaos-pg", 10, reconnect_forever=False)
        try:
            await provision(nc.jetstream(), ALL_STREAMS)
        finally:
            await nc.close()
        secret = base64.b64encode(secrets.token_bytes(32)).decode()
        port_file = self.base / "sim.port"
        sim_env = {"SIM_API_KEY": self.api_key, "SIM_API_SECRET": secret, "SIM_ADMIN_TOKEN": SIM_ADMIN_TOKEN}
        self.sup.add("sim", "btcbot.sim", sim_env,
                     ["--port", "0", "--port-file", str(port_file), "--seed", "5", "--symbols", SYMBOL,
                      "--fund", FUNDS, "--no-rate-limits", "--tick-interval", "0.1",
                      # A market about as lively as the simulator's was before its pairs got their own calmer
                      # volatility (~70 bps a minute): the strategy must trade through the 20 s outage.
                      "--volatility-scale", "10"], health=False)  # fmt: skip
        await self.sup.start("sim")
        deadline = time.monotonic() + 30
        while not (port_file.exists() and port_file.read_text().strip()):
            assert time.monotonic() < deadline, "the simulator did not report its port"
            await asyncio.sleep(0.05)
        port = int(port_file.read_text())
        self.sim_url = f"http://127.0.0.1:{port}"
        common = {
            "NATS_URL": self.nats.url,
            "REDIS_URL": self.redis_url,
            "DATABASE_URL": self.pg.url,
            "BTCBOT_KEY_PREFIX": self.key_prefix,
            "BTCBOT_SYMBOLS": SYMBOL,
            "BTCBOT_SHUTDOWN_GRACE": "3",
            "BTCBOT_LOG_LEVEL": "INFO",
            "BTCBOT_LOG_FORMAT": "json",
            "BTCTURK_BASE_URL": self.sim_url,
            "BTCTURK_WS_URL": f"ws://127.0.0.1:{port}/ws",
            "BTCTURK_API_KEY": self.api_key,
            "BTCTURK_API_SECRET": secret,
        }
        ledger = {"LEDGER_OPENING_BALANCES": FUNDS, "LEDGER_RECONCILE_INTERVAL": "0", "LEDGER_DB_TIMEOUT": "2"}
        keys = RunKeys.generate()  # risk signs orders, execution checks them
        self.sup.add("ledger", "btcbot.ledger", {**common, **ledger, **keys.service_env("ledger")})
        self.sup.add("execution", "btcbot.execution", {**common, "EXECUTION_FILL_POLL_INTERVAL": "0.5",
                                                        **keys.service_env("execution")})  # fmt: skip
        # Risk's 60 s cooldown per symbol and side made "buy, sell, buy again" take over a minute of a random
        # market; 3 s keeps the round trips coming (what is tested is the ledger's outage, not the cooldown).
        self.sup.add("risk", "btcbot.risk", {**common, **keys.service_env("risk"), "RISK_ORDER_COOLDOWN": "3"})
        # Round trips every few seconds: a tight take-profit and stop-loss, a short order life and cooldown. The whole
        # position goes in one sell (the incident's shape; a quarter at a time would wait out risk's 60 s cooldown
        # per symbol and side between slices, and the outage would see no sell fill).
        self.sup.add("strategy", "btcbot.strategy", {
            **common, "STRATEGY_TAKE_PROFIT_BPS": "2", "STRATEGY_STOP_LOSS_BPS": "2", "STRATEGY_COOLDOWN": "0.5",
            "STRATEGY_ORDER_TTL": "4", "STRATEGY_MAX_SPREAD_BPS": "500", "STRATEGY_ORDER_NOTIONAL": "2000",
            "STRATEGY_SELL_FRACTION": "1",
        })  # fmt: skip
        self.sup.add("marketdata", "btcbot.marketdata", common)
        names = ("ledger", "execution", "risk", "strategy", "marketdata")
        for name in names:
            await self.sup.start(name)
        for name in names:
            await self.sup.wait_ready(name, 90)

    def log_events(self, name: str, event: str) -> list[dict[str, Any]]:
        path = self.sup.children[name].log_path
        found = []
        for line in path.read_text(errors="replace").splitlines():
            if f'"{event}"' in line:
                with contextlib.suppress(ValueError):
                    found.append(json.loads(line))
        return found

    async def strategy_fills(self) -> list[tuple[int, Any]]:
        """Every OrderFilled of the strategy's orders, with its EXECUTION sequence, in stream order."""
        from btcbot.contracts.codec import Codec
        from btcbot.contracts.messages import OrderAccepted, OrderCanceled, OrderFilled, OrderRejected
        from btcbot.runtime.inspect import last_sequence, read_stream
        from btcbot.runtime.jetstream import connect

        codec: Codec[Any] = Codec(OrderAccepted | OrderRejected | OrderCanceled | OrderFilled)
        nc = await connect(self.nats.url, "chaos-pg-read", 10, reconnect_forever=False)
        out: list[tuple[int, Any]] = []
        try:
            js = nc.jetstream()
            last = await last_sequence(js, "EXECUTION")
            if last == 0:
                return out
            messages = read_stream(js, "EXECUTION", 1, "exec.*.*")
            try:
                async for message in messages:
                    event = codec.decode(message.data)
                    if isinstance(event, OrderFilled) and event.strategy == "profit_v1":
                        out.append((message.sequence, event))
                    if message.sequence >= last:
                        break
            finally:
                await messages.aclose()  # type: ignore[attr-defined]
        finally:
            await nc.close()
        return out

    async def verdict(self) -> dict[str, Any]:
        from btcbot.cli.verify import Sources, compare, gather

        sources = Sources(self.sim_url, self.api_key, self.nats.url, self.pg.url, self.redis_url, self.key_prefix,
                          sim_admin_token=SIM_ADMIN_TOKEN)  # fmt: skip
        return compare(await gather(sources))


@pytest_asyncio.fixture(loop_scope="session")
async def rig(redis_url: str) -> AsyncIterator[Rig]:
    try:
        from btcbot.devstack.embedded import find_postgres_bindir
        from btcbot.devstack.infra import start_nats
        from btcbot.devstack.restarts import RestartPolicy
        from btcbot.devstack.supervisor import Supervisor
    except ImportError:
        pytest.skip("btcbot-cli is not installed")
    if find_postgres_bindir() is None:
        pytest.skip("no PostgreSQL server binaries")
    base = Path(tempfile.mkdtemp(prefix="btcbot-chaos-pg-"))
    base.chmod(0o711)
    nats = start_nats(base / "nats")
    pg = PrivatePostgres(base)
    rig = Rig(base, Supervisor(base / "logs", RestartPolicy(max_restarts=0)), nats, pg, redis_url)
    try:
        await rig.start()
        yield rig
    finally:
        with contextlib.suppress(Exception):
            await rig.sup.close()
        with contextlib.suppress(Exception):
            pg.stop()
        nats.stop()
        if os.environ.get("BTCBOT_KEEP_CHAOS") != "1":
            shutil.rmtree(base, ignore_errors=True)
        else:
            print(f"chaos state kept in {base}")


async def _until(check: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await check():
            return
        await asyncio.sleep(0.5)
    raise AssertionError(f"timed out ({timeout:.0f}s) waiting for {what}")


def _own_positions(fills: list[tuple[int, Any]]) -> list[Decimal]:
    """The strategy's own position after each of its fills, in stream order (base-asset fees included)."""
    held = Decimal(0)
    path = []
    for _, f in fills:
        charge = abs(f.fee) + abs(f.tax) if (f.fee_asset or "").upper() == "ETH" else Decimal(0)
        held += f.quantity - charge if f.side == "buy" else -(f.quantity + charge)
        path.append(held)
    return path


async def test_postgres_stopped_for_20s_while_the_strategy_trades(rig: Rig) -> None:
    # 1. The strategy trades until it holds a position (a buy filled), after at least one full round trip.
    async def holding_after_a_round_trip() -> bool:
        fills = await rig.strategy_fills()
        sides = [f.side for _, f in fills]
        return "sell" in sides and bool(fills) and _own_positions(fills)[-1] > 0

    await _until(holding_after_a_round_trip, 120, "a round trip and then a held position")
    before = len(await rig.strategy_fills())

    # 2. Postgres stops for 20 s: the ledger can neither book nor publish; the strategy keeps trading.
    outage_started = time.time_ns()
    rig.pg.stop()
    await asyncio.sleep(OUTAGE)
    outage_ended = time.time_ns()
    rig.pg.restart()
    during = await rig.strategy_fills()
    sells_during = [
        e for e in rig.log_events("strategy", "strategy.intent")
        if e.get("side") == "sell" and outage_started <= _ts_ns(e) <= outage_ended
    ]  # fmt: skip
    assert sells_during, "the strategy never sold during the outage: the test proved nothing"
    assert len(during) > before, "no fill during the outage"

    # 3. Let it trade on for a while after Postgres is back, then stop the strategy and let the rest settle.
    await asyncio.sleep(10)
    await rig.sup.stop("strategy")
    verdict: dict[str, Any] = {}

    async def settled() -> bool:
        nonlocal verdict
        verdict = await rig.verdict()
        return bool(verdict["ok"])

    await _until(settled, 120, "verify to come out clean")

    # No position sold twice: the strategy's own position never went below zero at any fill.
    fills = await rig.strategy_fills()
    path = _own_positions(fills)
    assert min(path) >= 0, f"the strategy sold more than it bought: {[str(p) for p in path]}"

    # No halt: the ledger never halted the symbol, and its books hold every fill.
    conn = await asyncpg.connect(rig.pg.url)
    try:
        alerts = await conn.fetch("SELECT kind, symbol, detail FROM ledger_alerts WHERE kind = 'oversell'")
        halted = await conn.fetch("SELECT symbol FROM positions WHERE halted_reason IS NOT NULL")
        booked = await conn.fetchval("SELECT count(*) FROM fills WHERE strategy = 'profit_v1'")
    finally:
        await conn.close()
    assert alerts == []
    assert halted == []
    assert booked == len(fills)
    assert verdict["ok"], verdict
    assert not rig.log_events("ledger", "ledger.oversell")


def _ts_ns(entry: dict[str, Any]) -> int:
    from datetime import datetime

    return int(datetime.fromisoformat(str(entry["timestamp"]).replace("Z", "+00:00")).timestamp() * 1e9)
