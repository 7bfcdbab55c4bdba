"""End to end: `btcbot canary` against the simulator under `btcbot up` (issue 12, "Done when").

One capped order goes through risk (signed), execution and the simulator, fills, and the ledger books it; an
over-cap notional is refused with exit 2 and nothing reaches the bus or the exchange. The canary runs as the
operator would: `btcbot canary --run-file .state/up/run.json`, under its own NATS identity.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import asyncpg
import httpx
import pytest
import pytest_asyncio

from btcbot.cli.control import control_status
from btcbot.contracts.codec import Codec
from btcbot.contracts.messages import OrderIntent, SubmitOrder
from btcbot.contracts.signing import verify
from btcbot.contracts.streams import RISK_CONTROL
from btcbot.runtime.inspect import read_stream
from btcbot.runtime.jetstream import connect
from btcbot.runtime.latest import last_per_subject

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

SYMBOL = "BTCTRY"
CAP = "1000"
# The strategy stays quiet (no spread is that narrow), so every order request in the simulator's log is the
# canary's; risk's limits would allow the canary next to a strategy order anyway.
ENV = {
    "STRATEGY_MAX_SPREAD_BPS": "0.0001",
    "RISK_MAX_OPEN_ORDERS_PER_SYMBOL": "5",
    "RISK_MAX_OPEN_ORDERS": "10",
    "RISK_ORDER_COOLDOWN": "0",
}


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def canary_system(redis_url: str, pg_admin_url: str, system_starter: Any) -> AsyncIterator[Any]:
    async with system_starter(redis_url, pg_admin_url, ENV, symbols=SYMBOL, nats_auth=True) as running:
        yield running


async def canary(system: Any, *args: str) -> tuple[int, list[str]]:
    """Run `btcbot canary` as a separate process; its stdout lines (the report; logs go to stderr)."""
    env = {**os.environ, "CANARY_MAX_NOTIONAL": CAP}
    for name in ("NATS_URL", "DATABASE_URL", "REDIS_URL", "NATS_USER", "NATS_PASSWORD"):
        env.pop(name, None)  # everything comes from the run file, as for an operator
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "btcbot.cli",
        "canary",
        "--run-file",
        str(system.state_dir / "run.json"),
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 180)
    lines = [line for line in out.decode().splitlines() if line.strip()]
    assert lines, f"btcbot canary printed nothing; stderr:\n{err.decode()[-4000:]}"
    return int(process.returncode or 0), lines


async def sim_requests(system: Any, since: int = 0) -> dict[str, Any]:
    async with httpx.AsyncClient(
        base_url=system.run["sim_url"], timeout=5, headers={"X-Sim-Admin-Token": system.run["sim_admin_token"]}
    ) as admin:
        response = await admin.get("/sim/requests", params={"since": since})
        response.raise_for_status()
        data: dict[str, Any] = response.json()
        return data


async def canary_intents(system: Any) -> list[OrderIntent]:
    nc = await connect(system.run["nats_url"], "e2e-canary", 5, reconnect_forever=False, auth=system.nats_auth())
    codec: Codec[OrderIntent] = Codec(OrderIntent)
    try:
        found = [codec.decode(m.data) async for m in read_stream(nc.jetstream(), "INTENTS", 1, f"intent.{SYMBOL}")]
    finally:
        await nc.close()
    return [i for i in found if i.strategy == "canary"]


async def trading_on(system: Any, timeout: float = 90.0) -> None:
    """Wait until risk's control state says NORMAL (the automatic mode starts OBSERVE_ONLY until the first marks)."""
    nc = await connect(system.run["nats_url"], "e2e-canary", 5, reconnect_forever=False, auth=system.nats_auth())
    deadline = time.monotonic() + timeout
    status: dict[str, Any] = {}
    try:
        while time.monotonic() < deadline:
            stored = await last_per_subject(nc.jetstream(), "CONTROL", RISK_CONTROL.filter_subjects, 5 * 10**9)
            status = control_status(stored)
            if status["auto_mode"] == "NORMAL" and status["mode"] == "NORMAL" and not status["kill_engaged"]:
                return
            await asyncio.sleep(1.0)
    finally:
        await nc.close()
    raise AssertionError(f"trading never turned on: {status}")


async def test_canary_places_one_capped_order_that_fills_and_is_booked(canary_system: Any) -> None:
    await trading_on(canary_system)
    code, lines = await canary(canary_system, "--symbol", SYMBOL, "--notional", "500", "--ttl", "30")
    report = json.loads(lines[-1])
    assert code == 0, "\n".join(lines)
    assert report["ok"] is True
    names = [s["name"] for s in report["steps"]]
    assert names == [
        "cap",
        "arming",
        "doctor",
        "mode",
        "book",
        "rules",
        "intent",
        "verdict",
        "exchange",
        "fill",
        "ledger",
    ]
    assert [line.split(":", 1)[0] for line in lines[:-1]] == [f"OK   {n}" for n in names]
    assert Decimal(report["price"]) * Decimal(report["quantity"]) <= Decimal(500)
    assert Decimal(report["filled_quantity"]) > 0

    coid = report["client_order_id"]
    # Through risk: the order execution placed is risk's, signed by risk's key.
    nc = await connect(canary_system.run["nats_url"], "e2e-canary", 5, reconnect_forever=False,
                       auth=canary_system.nats_auth())  # fmt: skip
    codec: Codec[SubmitOrder] = Codec(SubmitOrder)
    try:
        submits = [
            codec.decode(m.data) async for m in read_stream(nc.jetstream(), "ORDERS", 1, f"order.submit.{SYMBOL}")
        ]
    finally:
        await nc.close()
    ours = [s for s in submits if s.client_order_id == coid]
    assert len(ours) == 1
    assert ours[0].strategy == "canary"
    assert ours[0].signature.split(":", 1)[0], "risk signed the canary's order"
    assert verify(ours[0], {}) == "UNKNOWN_KEY"  # signed by a key the test does not hold: risk's, not ours

    # The exchange has exactly one order of that client id; the ledger booked what it filled.
    log = (await sim_requests(canary_system))["requests"]
    assert [r for r in log if r["method"] == "POST" and r["path"] == "/api/v1/order"], "the order reached the exchange"
    conn = await asyncpg.connect(canary_system.run["database_url"])
    try:
        booked = await conn.fetchval("SELECT coalesce(sum(quantity), 0) FROM fills WHERE client_order_id = $1", coid)
    finally:
        await conn.close()
    assert Decimal(booked) == Decimal(report["filled_quantity"])


async def test_canary_over_the_cap_is_refused_and_sends_nothing(canary_system: Any) -> None:
    before = (await sim_requests(canary_system))["count"]
    intents_before = len(await canary_intents(canary_system))
    code, lines = await canary(canary_system, "--symbol", SYMBOL, "--notional", "1000.01")
    assert code == 2, "\n".join(lines)
    report = json.loads(lines[-1])
    assert report["failed_step"] == "cap"
    assert [s["name"] for s in report["steps"]] == ["cap"]
    log = (await sim_requests(canary_system, before))["requests"]
    assert [r for r in log if r["method"] == "POST" and r["path"] == "/api/v1/order"] == []
    assert len(await canary_intents(canary_system)) == intents_before
