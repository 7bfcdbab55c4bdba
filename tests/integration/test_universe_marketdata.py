"""The dynamic universe in marketdata (issue 14): selection published, books only for the selected symbols, and a
restarted replica resumes the same selection instead of choosing again.

Real pieces: a private nats-server, the local Redis (leases), the in-process simulator (REST and WebSocket) with
every pair it knows, and marketdata's own wiring in the service kit.
"""

from __future__ import annotations

import asyncio
import base64
import secrets
import time
from collections.abc import AsyncIterator, Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from aiohttp.test_utils import TestServer

from btcbot.contracts import subjects
from btcbot.contracts.codec import Codec
from btcbot.contracts.messages import BookSnapshot, OrderRejected, PortfolioSnapshot, Position, UniverseSelected
from btcbot.contracts.streams import ALL_STREAMS, MARKET, UNIVERSE
from btcbot.marketdata import app
from btcbot.marketdata.selection import PROBATION, RANKED_OUT, REJECTS
from btcbot.marketdata.settings import MarketdataSettings
from btcbot.runtime.inspect import last_sequence, read_stream
from btcbot.runtime.jetstream import NatsPublisher, connect, provision
from btcbot.runtime.service import Service
from btcbot.runtime.settings import load_settings
from btcbot.sim.app import create_app
from btcbot.sim.config import Account, SimConfig

pytestmark = pytest.mark.integration

KEY = "universe-key"
SECRET = base64.b64encode(b"universe-secret-0123456789abcdef").decode()
SIZE = 2


@pytest_asyncio.fixture(loop_scope="session")
async def nats(tmp_path: Path) -> AsyncIterator[tuple[str, Any]]:
    from btcbot.devstack.infra import start_nats

    server = start_nats(tmp_path)
    nc = await connect(server.url, "universe-test", 5, reconnect_forever=False)
    await provision(nc.jetstream(), ALL_STREAMS)
    try:
        yield server.url, nc
    finally:
        await nc.close()
        server.stop()


@pytest_asyncio.fixture(loop_scope="session")
async def sim() -> AsyncIterator[tuple[str, tuple[str, ...]]]:
    config = SimConfig(
        accounts=(Account(KEY, SECRET, {}),),
        rate_limits_enabled=False,
        ws_book_interval=0.05,
        ws_snapshot_interval=0.1,
    )
    server = TestServer(create_app(config))
    await server.start_server()
    # Whatever pairs the simulator has (4 today, 20+ later): the universe chooses among its TRY pairs.
    candidates = tuple(s.name for s in config.symbols if s.name.endswith("TRY"))
    assert len(candidates) > SIZE
    try:
        yield str(server.make_url("")).rstrip("/"), candidates
    finally:
        await server.close()


def env(monkeypatch: pytest.MonkeyPatch, nats_url: str, redis_url: str, base: str, symbols: tuple[str, ...]) -> None:
    monkeypatch.setenv("NATS_URL", nats_url)
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("BTCBOT_KEY_PREFIX", f"universe-it-{secrets.token_hex(4)}")
    monkeypatch.setenv("BTCBOT_SYMBOLS", ",".join(symbols))
    monkeypatch.setenv("BTCBOT_HEALTH_HOST", "127.0.0.1")
    monkeypatch.setenv("BTCBOT_HEALTH_PORT", "0")
    monkeypatch.setenv("BTCTURK_BASE_URL", base)
    monkeypatch.setenv("BTCTURK_WS_URL", base.replace("http://", "ws://") + "/ws")
    monkeypatch.setenv("BTCTURK_API_KEY", KEY)
    monkeypatch.setenv("BTCTURK_API_SECRET", SECRET)
    monkeypatch.setenv("MARKETDATA_UNIVERSE", "dynamic")
    monkeypatch.setenv("MARKETDATA_UNIVERSE_SIZE", str(SIZE))
    # The simulator's books are thin and its spreads arbitrary: rank on score alone (filters: unit tests).
    monkeypatch.setenv("MARKETDATA_UNIVERSE_MAX_SPREAD_BPS", "100000")
    monkeypatch.setenv("MARKETDATA_UNIVERSE_MIN_DEPTH_TRY", "0")
    monkeypatch.setenv("MARKETDATA_UNIVERSE_FOLLOW_INTERVAL", "0.2")


async def start(nats_url: str, instance: str, monkeypatch: pytest.MonkeyPatch) -> Service:
    monkeypatch.setenv("BTCBOT_INSTANCE", instance)
    settings = load_settings(MarketdataSettings)
    nc = await connect(nats_url, f"marketdata-{instance}", 5, reconnect_forever=False)
    svc = Service("marketdata", settings, nc)
    await app.setup(svc, settings)
    await provision(svc.js, ALL_STREAMS, [])
    await svc.start()
    return svc


async def until(condition: Callable[[], Any], timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = await condition()
        if value:
            return value
        await asyncio.sleep(0.2)
    raise AssertionError("condition not reached in time")


async def selections(js: Any) -> list[UniverseSelected]:
    codec = Codec(UniverseSelected)
    return [codec.decode(m.data) async for m in read_stream(js, UNIVERSE.name, 1, subjects.UNIVERSE_SELECTED)]


async def book_symbols(js: Any, start_seq: int) -> set[str]:
    codec = Codec(BookSnapshot)
    return {codec.decode(m.data).symbol async for m in read_stream(js, MARKET.name, start_seq, "md.book.*")}


async def test_selection_is_published_books_follow_it_and_a_restart_resumes_it(
    nats: tuple[str, Any], sim: tuple[str, tuple[str, ...]], redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    nats_url, nc = nats
    base, candidates = sim
    js = nc.jetstream()
    bus = NatsPublisher(js)
    # Three minimum-total rejects of one candidate at the exchange: the universe must leave it out.
    rejecting = candidates[0]
    for n in range(3):
        await bus.publish(subjects.execution("rejected", rejecting), rejected(rejecting, n))
    env(monkeypatch, nats_url, redis_url, base, candidates)
    first = await start(nats_url, "md-a", monkeypatch)
    try:
        published = await until(lambda: selections(js))
        selection = published[0]
        assert selection.version == 1
        assert len(selection.symbols) == SIZE
        assert set(selection.symbols) <= set(candidates) - {rejecting}
        assert selection.selector == "md-a"
        reasons = {r.symbol: r.reasons for r in selection.rejected}
        assert reasons[rejecting] == (REJECTS, PROBATION)
        assert [h.symbol for h in selection.probations] == [rejecting]
        ranked_out = [r for r in selection.rejected if r.reasons == (RANKED_OUT,)]
        assert set(reasons) == set(candidates) - set(selection.symbols)
        assert all(r.score is not None and r.score <= min(m.score for m in selection.selected) for r in ranked_out)
        # Every selected symbol gets books; no other symbol ever does.
        await until(lambda: _has(book_symbols(js, 1), set(selection.symbols)))
        await asyncio.sleep(1.0)
        assert await book_symbols(js, 1) == set(selection.symbols)
    finally:
        await first.stop()

    # A new replica (the old one gone) resumes: it follows the same selection and does not choose again
    # before the refresh interval has passed since the last one.
    market_seq = await last_sequence(js, MARKET.name)
    second = await start(nats_url, "md-b", monkeypatch)
    try:
        await until(lambda: _has(book_symbols(js, market_seq + 1), set(selection.symbols)))
        await asyncio.sleep(1.0)
        assert await book_symbols(js, market_seq + 1) == set(selection.symbols)
        assert [s.version for s in await selections(js)] == [1]
        # A position in a symbol the universe left out: its books come back (marks for the ledger, exits).
        await bus.publish(subjects.portfolio("main"), holding(rejecting))
        await until(lambda: _has(book_symbols(js, market_seq + 1), {*selection.symbols, rejecting}))
    finally:
        await second.stop()


def rejected(symbol: str, n: int) -> OrderRejected:
    return OrderRejected(
        id=f"rejected:it-{symbol}-{n}",
        ts_ns=time.time_ns(),
        client_order_id=f"it-{n}",
        intent_id=f"intent-{n}",
        strategy="it",
        symbol=symbol,
        reason="FAILED_MIN_TOTAL_AMOUNT",
    )


def holding(symbol: str) -> PortfolioSnapshot:
    zero = Decimal(0)
    position = Position(
        symbol=symbol, quantity=Decimal(1), avg_cost=Decimal(10), realized_pnl=zero, unrealized_pnl=zero
    )
    return PortfolioSnapshot(
        id="portfolio:it",
        ts_ns=time.time_ns(),
        account="main",
        quote_asset="TRY",
        balances=(),
        positions=(position,),
        exposure=zero,
        realized_pnl=zero,
        unrealized_pnl=zero,
        fees=zero,
        equity=zero,
        peak_equity=zero,
        drawdown=zero,
        fills=0,
    )


async def _has(symbols: Any, wanted: set[str]) -> bool:
    return wanted <= await symbols
