"""Injected faults and the /sim/ admin API."""

from __future__ import annotations

import base64
import time
from typing import Any

import aiohttp
import pytest

from btcbot.sim.config import Faults

ORDER = {"pairSymbol": "BTCTRY", "orderType": "buy", "orderMethod": "limit", "quantity": "0.001", "price": "3000000"}


async def admin(sim: Any, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    async with sim.session.request(method, sim.url(path), json=body) as resp:
        return resp.status, await resp.json()


async def test_health_and_fault_switches(sim: Any) -> None:
    status, body = await admin(sim, "GET", "/sim/health")
    assert (status, body["status"]) == (200, "ok")
    status, body = await admin(sim, "GET", "/sim/faults")
    assert body == Faults().to_dict()
    status, body = await admin(sim, "POST", "/sim/faults", {"stale_book": True, "latency_ms": 5})
    assert status == 200
    assert (body["stale_book"], body["latency_ms"], body["error_5xx_rate"]) == (True, 5, 0.0)
    for bad in ({"nope": 1}, {"latency_ms": -1}, {"error_5xx_rate": 2}, {"stale_book": 1}, [1]):
        status, body = await admin(sim, "POST", "/sim/faults", bad)
        assert status == 400, bad
        assert "error" in body
    status, body = await admin(sim, "GET", "/sim/faults")
    assert body["stale_book"] is True


async def test_stale_book_gives_503(sim: Any) -> None:
    await admin(sim, "POST", "/sim/faults", {"stale_book": True})
    status, body = await sim.public("/api/v2/orderbook", pairSymbol="BTCTRY")
    assert status == 503
    assert body["success"] is False
    await admin(sim, "POST", "/sim/faults", {"stale_book": False})
    status, _ = await sim.public("/api/v2/orderbook", pairSymbol="BTCTRY")
    assert status == 200


async def test_5xx_rate(sim: Any) -> None:
    await admin(sim, "POST", "/sim/faults", {"error_5xx_rate": 1.0})
    status, body = await sim.public("/api/v2/ticker")
    assert status == 500
    assert body["success"] is False
    status, _ = await sim.private("GET", "/api/v1/users/balances")
    assert status == 500
    # the admin API is never faulted
    status, _ = await admin(sim, "GET", "/sim/health")
    assert status == 200


async def test_5xx_rate_is_seeded_and_partial(sim_factory: Any) -> None:
    outcomes = []
    for _ in range(2):
        async with sim_factory(faults=Faults(error_5xx_rate=0.5), rate_limits_enabled=False) as sim:
            run = [(await sim.public("/api/v2/server/time"))[0] for _ in range(40)]
            outcomes.append(run)
    assert outcomes[0] == outcomes[1]
    assert {200, 500} == set(outcomes[0])


async def test_429_storm_hits_private_calls_only(sim: Any) -> None:
    await admin(sim, "POST", "/sim/faults", {"storm_429_retry_after": 7})
    async with sim.session.get(sim.url("/api/v1/users/balances"), headers=sim.headers()) as resp:
        assert resp.status == 429
        assert resp.headers["Retry-After"] == "7"
        body = await resp.json()
    assert (body["message"], body["code"], body["success"]) == ("TOO_MANY_REQUESTS", 429, False)
    status, _ = await sim.public("/api/v2/ticker")
    assert status == 200


async def test_latency(sim: Any) -> None:
    await admin(sim, "POST", "/sim/faults", {"latency_ms": 150})
    started = time.monotonic()
    status, _ = await sim.public("/api/v2/server/time")
    assert status == 200
    assert time.monotonic() - started >= 0.14


async def test_lost_response_order_still_exists(sim: Any) -> None:
    await admin(sim, "POST", "/sim/faults", {"lose_response_next": 1})
    with pytest.raises(aiohttp.ClientError):
        await sim.private("POST", "/api/v1/order", json={**ORDER, "newOrderClientId": "lost-1"})
    status, body = await admin(sim, "GET", "/sim/faults")
    assert body["lose_response_next"] == 0
    status, body = await sim.private("GET", "/api/v1/openOrders")
    assert [o["orderClientId"] for o in body["data"]["bids"]] == ["lost-1"]
    # the next submit is answered normally
    status, body = await sim.private("POST", "/api/v1/order", json={**ORDER, "newOrderClientId": "ok-2"})
    assert status == 200
    status, record = await admin(sim, "GET", "/sim/state?apiKey=sim-test-key")
    assert [o["clientId"] for o in record["orders"]] == ["lost-1", "ok-2"]


async def test_lost_response_rate_from_config(sim_factory: Any) -> None:
    async with sim_factory(faults=Faults(lose_response_rate=1.0)) as sim:
        for i in range(3):
            with pytest.raises(aiohttp.ClientError):
                await sim.private("POST", "/api/v1/order", json={**ORDER, "newOrderClientId": f"x{i}"})
        assert len(sim.state.engine.orders_of(sim.api_key)) == 3


async def test_state_is_the_exchange_record(sim: Any) -> None:
    status, _ = await sim.private(
        "POST", "/api/v1/order", json={**ORDER, "orderMethod": "market", "quantity": "1000", "newOrderClientId": "m"}
    )
    assert status == 200
    status, record = await admin(sim, "GET", "/sim/state?apiKey=sim-test-key")
    assert status == 200
    (order,) = record["orders"]
    assert {"id", "clientId", "pair", "side", "method", "price", "quantity", "status", "filled"} <= set(order)
    assert (order["clientId"], order["method"], order["status"]) == ("m", "market", "Closed")
    assert record["trades"]
    assert {"tradeId", "orderId", "clientId", "price", "amount", "fee", "tax", "side", "ts"} <= set(record["trades"][0])
    assert record["trades"][0]["orderId"] == order["id"]
    assert set(record["balances"]["TRY"]) == {"total", "locked", "free"}
    status, _ = await admin(sim, "GET", "/sim/state?apiKey=nobody")
    assert status == 404


async def test_add_account_at_run_time(sim: Any) -> None:
    secret = base64.b64encode(b"new-account-secret").decode()
    body = {"apiKey": "new-key", "apiSecret": secret, "balances": {"TRY": "5000", "btc": 1}}
    status, reply = await admin(sim, "POST", "/sim/accounts", body)
    assert (status, reply) == (201, {"apiKey": "new-key"})
    status, _ = await admin(sim, "POST", "/sim/accounts", body)
    assert status == 409
    for bad in (
        {"apiKey": "x"},
        {**body, "apiKey": "y", "apiSecret": "%%"},
        {**body, "apiKey": "z", "balances": {"TRY": "-1"}},
    ):
        status, _ = await admin(sim, "POST", "/sim/accounts", bad)
        assert status == 400, bad
    status, balances = await sim.private("GET", "/api/v1/users/balances", key="new-key", secret=secret)
    assert status == 200
    assert {b["asset"]: b["balance"] for b in balances["data"]}["BTC"] == "1"
