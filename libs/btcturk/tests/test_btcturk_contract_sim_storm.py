"""Contract test: a 429 storm at the simulator. The client waits out every Retry-After, its breaker opens,
nothing reaches the exchange while it is open, a half-open probe goes out alone, and the breaker closes
once the storm is over. Requests are counted where they land: the simulator's request log."""

import asyncio
import base64
import itertools
from collections.abc import AsyncIterator
from decimal import Decimal

import httpx
import pytest
from aiohttp.test_utils import TestServer

from btcbot.btcturk import BtcTurkClient, RetryPolicy
from btcbot.btcturk.breaker import BreakerState
from btcbot.btcturk.errors import BreakerOpen, RateLimited
from btcbot.sim.admin import ADMIN_HEADER
from btcbot.sim.app import create_app
from btcbot.sim.config import Account, SimConfig

ADMIN_TOKEN = "test-sim-admin-token"
ADMIN = {ADMIN_HEADER: ADMIN_TOKEN}  # /sim/* needs the simulator's admin token

KEY = "storm-key"
SECRET = base64.b64encode(b"storm-secret-0123456789abcdefgh").decode()
BALANCES = "/api/v1/users/balances"
RETRY_AFTER_S = 1
OPEN_TIMEOUT_S = 1.2


@pytest.fixture
async def server() -> AsyncIterator[TestServer]:
    account = Account(KEY, SECRET, {"TRY": Decimal(1000)})
    srv = TestServer(create_app(SimConfig(admin_token=ADMIN_TOKEN, accounts=(account,), run_market=False)))
    await srv.start_server()
    try:
        yield srv
    finally:
        await srv.close()


async def landed(admin: httpx.AsyncClient) -> list[int]:
    """Arrival times (ms) of every balances request the simulator received."""
    log = (await admin.get("/sim/requests")).json()["requests"]
    return [r["ts"] for r in log if r["path"] == BALANCES]


async def test_429_storm_backs_off_as_told_and_the_breaker_opens_and_closes(server):
    http = str(server.make_url("")).rstrip("/")
    transitions: list[tuple[str, BreakerState, BreakerState]] = []
    client = BtcTurkClient(
        http,
        KEY,
        SECRET,
        read_retry=RetryPolicy(max_attempts=3, base_delay=0.01, max_delay=0.05),
        breaker_threshold=3,
        breaker_open_timeout=OPEN_TIMEOUT_S,
        on_breaker_state_change=lambda group, old, new: transitions.append((group, old, new)),
    )
    loop = asyncio.get_running_loop()
    async with client, httpx.AsyncClient(headers=ADMIN, base_url=http) as admin:
        await client.balances()  # healthy: syncs the clock, breaker closed
        assert len(await landed(admin)) == 1
        (await admin.post("/sim/faults", json={"storm_429_retry_after": RETRY_AFTER_S})).raise_for_status()

        # One call, three attempts: each 429 says "1 s", and the client waits it out before the next.
        with pytest.raises(RateLimited) as info:
            await client.balances()
        assert info.value.retry_after == RETRY_AFTER_S
        storm = (await landed(admin))[1:]
        assert len(storm) == 3
        gaps = [b - a for a, b in itertools.pairwise(storm)]
        assert all(gap >= RETRY_AFTER_S * 1000 - 5 for gap in gaps), gaps
        assert transitions == [("balances", BreakerState.CLOSED, BreakerState.OPEN)]
        opened = loop.time()

        # Open: every call is refused locally and nothing reaches the exchange.
        for _ in range(5):
            with pytest.raises(BreakerOpen):
                await client.balances()
        await asyncio.sleep(OPEN_TIMEOUT_S / 2)
        with pytest.raises(BreakerOpen):
            await client.balances()
        assert len(await landed(admin)) == 4

        # Half-open while the storm lasts: exactly one probe goes out, its 429 reopens the breaker.
        await asyncio.sleep(max(0.0, opened + OPEN_TIMEOUT_S - loop.time()) + 0.05)
        probe_started = loop.time()
        with pytest.raises((RateLimited, BreakerOpen)):
            await client.balances()
        assert len(await landed(admin)) == 5
        assert transitions[1:] == [
            ("balances", BreakerState.OPEN, BreakerState.HALF_OPEN),
            ("balances", BreakerState.HALF_OPEN, BreakerState.OPEN),
        ]

        # The storm ends; after the open period one probe succeeds and the breaker closes.
        (await admin.post("/sim/faults", json={"storm_429_retry_after": 0})).raise_for_status()
        with pytest.raises(BreakerOpen):
            await client.balances()
        assert len(await landed(admin)) == 5
        await asyncio.sleep(max(0.0, probe_started + OPEN_TIMEOUT_S - loop.time()) + 0.1)
        balances = await client.balances()
        assert [b.asset for b in balances if b.balance == Decimal(1000)] == ["TRY"]
        assert len(await landed(admin)) == 6
        assert transitions[3:] == [
            ("balances", BreakerState.OPEN, BreakerState.HALF_OPEN),
            ("balances", BreakerState.HALF_OPEN, BreakerState.CLOSED),
        ]
        await client.balances()  # closed: business as usual
        assert len(await landed(admin)) == 7
