"""Fixtures for simulator tests: a fake clock, signed requests and an in-process server."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from decimal import Decimal
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from btcbot.sim.admin import ADMIN_HEADER
from btcbot.sim.app import create_app
from btcbot.sim.config import Account, SimConfig
from btcbot.sim.responses import STATE
from btcbot.sim.state import SimState

API_KEY = "sim-test-key"
API_SECRET = base64.b64encode(b"0123456789abcdef0123456789abcdef").decode()
OTHER_KEY = "sim-other-key"
OTHER_SECRET = base64.b64encode(b"another-secret-another-secret!!").decode()
START_MS = 1_764_000_000_000
ADMIN_TOKEN = "sim-test-admin-token"


class FakeClock:
    """A settable millisecond clock."""

    def __init__(self) -> None:
        self.now = START_MS

    def __call__(self) -> int:
        return self.now


def signed_headers(key: str, secret: str, stamp: int) -> dict[str, str]:
    """The three BTCTurk auth headers, computed independently of btcbot.sim.auth."""
    digest = hmac.new(base64.b64decode(secret), f"{key}{stamp}".encode(), hashlib.sha256).digest()
    return {"X-PCK": key, "X-Stamp": str(stamp), "X-Signature": base64.b64encode(digest).decode()}


def make_config(**overrides: Any) -> SimConfig:
    """A quiet config: no background market, fixed ids, two funded accounts."""
    accounts = (
        Account(API_KEY, API_SECRET, {"TRY": Decimal(1_000_000), "BTC": Decimal(1), "ETH": Decimal(20)}),
        Account(OTHER_KEY, OTHER_SECRET, {"TRY": Decimal(1_000_000), "BTC": Decimal(1)}),
    )
    base: dict[str, Any] = {
        "accounts": accounts,
        "run_market": False,
        "first_order_id": 10_000,
        "first_trade_id": 50_000,
        "admin_token": ADMIN_TOKEN,
    }
    base.update(overrides)
    return SimConfig(**base)


@dataclasses.dataclass
class Sim:
    """A running simulator and a session to call it."""

    server: TestServer
    session: aiohttp.ClientSession
    state: SimState
    clock: FakeClock

    api_key = API_KEY
    other_key = OTHER_KEY
    other_secret = OTHER_SECRET

    def headers(self, key: str = API_KEY, secret: str = API_SECRET) -> dict[str, str]:
        return signed_headers(key, secret, self.clock.now)

    def url(self, path: str) -> str:
        return str(self.server.make_url(path))

    async def public(self, path: str, **params: Any) -> tuple[int, Any]:
        async with self.session.get(self.url(path), params=params) as resp:
            return resp.status, await resp.json()

    async def private(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Any = None,
        key: str = API_KEY,
        secret: str = API_SECRET,
    ) -> tuple[int, Any]:
        headers = signed_headers(key, secret, self.clock.now)
        async with self.session.request(method, self.url(path), json=json, params=params, headers=headers) as resp:
            return resp.status, await resp.json()


SimFactory = Callable[..., AbstractAsyncContextManager[Sim]]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def sim_factory(clock: FakeClock) -> SimFactory:
    """`async with sim_factory(**config_overrides) as sim:` runs a simulator on a free port."""

    @asynccontextmanager
    async def start(**overrides: Any) -> AsyncIterator[Sim]:
        app = create_app(make_config(**overrides), clock=clock)
        server = TestServer(app)
        await server.start_server()
        # The admin token on every request, as `btcbot up` and the tools send it; test_sim_admin_auth goes without.
        session = aiohttp.ClientSession(headers={ADMIN_HEADER: ADMIN_TOKEN})
        try:
            yield Sim(server, session, app[STATE], clock)
        finally:
            await session.close()
            await server.close()

    return start


@pytest.fixture
async def sim(sim_factory: SimFactory) -> AsyncIterator[Sim]:
    async with sim_factory() as running:
        yield running
