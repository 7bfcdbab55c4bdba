"""The /sim/* admin endpoints answer 401 without the admin token; /sim/health and the exchange API do not need it."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from btcbot.sim.admin import ADMIN_HEADER, admin_allowed, presented_token

ADMIN_TOKEN = "sim-test-admin-token"  # sim/tests/conftest.py configures the simulators with this one
SimFactory = Any

ADMIN_CALLS = [
    ("GET", "/sim/state?apiKey=sim-test-key", None),
    ("GET", "/sim/faults", None),
    ("POST", "/sim/faults", {"latency_ms": 5}),
    ("POST", "/sim/accounts", {"apiKey": "intruder", "apiSecret": "c2VjcmV0", "balances": {"TRY": "1"}}),
    ("POST", "/sim/market", {"pair": "BTCTRY", "mid": "1", "ticks": 1}),
    ("GET", "/sim/requests", None),
    ("GET", "/sim/obdiff?pair=BTCTRY", None),
    ("GET", "/sim/anything-new", None),
]


async def _status(session: aiohttp.ClientSession, method: str, url: str, body: object, **headers: str) -> int:
    async with session.request(method, url, json=body, headers=headers) as resp:
        await resp.read()
        return resp.status


@pytest.mark.parametrize(("method", "path", "body"), ADMIN_CALLS)
async def test_admin_endpoint_needs_the_token(sim_factory: SimFactory, method: str, path: str, body: object) -> None:
    async with sim_factory() as sim, aiohttp.ClientSession() as bare:
        url = sim.url(path)
        assert await _status(bare, method, url, body) == 401
        assert await _status(bare, method, url, body, **{ADMIN_HEADER: "wrong-token"}) == 401
        assert await _status(bare, method, url, body, Authorization=f"Basic {ADMIN_TOKEN}") == 401
        # Nothing was changed by the refused calls.
        assert "intruder" not in sim.state.accounts
        assert sim.state.faults.latency_ms == 0
        allowed = await _status(bare, method, url, body, Authorization=f"Bearer {ADMIN_TOKEN}")
        assert allowed != 401
        assert (allowed == 404) == path.startswith("/sim/anything-new")


async def test_without_a_configured_token_every_admin_call_is_refused(sim_factory: SimFactory) -> None:
    async with sim_factory(admin_token=None) as sim, aiohttp.ClientSession() as bare:
        for method, path, body in ADMIN_CALLS:
            assert await _status(bare, method, sim.url(path), body) == 401
            assert await _status(bare, method, sim.url(path), body, **{ADMIN_HEADER: ""}) == 401
        assert await _status(bare, "GET", sim.url("/sim/health"), None) == 200
        # The exchange's own public API is not an admin endpoint.
        assert await _status(bare, "GET", sim.url("/api/v2/server/exchangeinfo"), None) == 200


def test_token_comparison() -> None:
    assert admin_allowed("t0ken", "t0ken")
    assert not admin_allowed("t0ken", "t0ke")
    assert not admin_allowed(None, "")
    assert not admin_allowed("", "")
    assert presented_token({"Authorization": "bearer abc "}) == "abc"
    assert presented_token({ADMIN_HEADER: "x", "Authorization": "Bearer y"}) == "x"
    assert presented_token({"Authorization": "Basic abc"}) == ""
