"""End to end with NATS authorization on: every service runs under its own identity, the CLI acts as the
operator from run.json, and a SubmitOrder from any identity but risk's is refused by the server and never
reaches the exchange."""

from __future__ import annotations

import asyncio
import sys
import time
import uuid
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import nats
import nats.errors
import pytest
import pytest_asyncio

from btcbot.contracts import subjects
from btcbot.contracts.codec import encode
from btcbot.contracts.messages import SubmitOrder
from btcbot.devstack.natsusers import load_users, user_auth
from btcbot.runtime.inspect import read_stream
from btcbot.runtime.jetstream import connect

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

ROOT = Path(__file__).resolve().parents[2]
SERVICES = ("ledger", "execution", "risk", "strategy", "marketdata")


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def secured(system_starter: Any, redis_url: str, pg_admin_url: str) -> AsyncIterator[Any]:
    async with system_starter(redis_url, pg_admin_url, nats_auth=True) as running:
        yield running


def _users(system: Any) -> dict[str, Any]:
    """The generated identities (what the harness handed `btcbot up` as NATS_IDENTITIES_FILE)."""
    return load_users(Path(system.env["NATS_IDENTITIES_FILE"]))


async def _requests(system: Any, since: int = 0) -> dict[str, Any]:
    async with httpx.AsyncClient(
        base_url=system.run["sim_url"], timeout=5, headers={"X-Sim-Admin-Token": system.run["sim_admin_token"]}
    ) as client:
        response = await client.get("/sim/requests", params={"since": since})
        response.raise_for_status()
        data: dict[str, Any] = response.json()
        return data


async def _stored(system: Any, stream: str) -> list[tuple[str, str]]:
    """(subject, Nats-Msg-Id) of every message of a stream, read as the reader identity."""
    auth = user_auth(_users(system)["reader"])
    nc = await connect(system.run["nats_url"], "test-reader", 10, reconnect_forever=False, auth=auth)
    try:
        return [(m.subject, m.headers.get("Nats-Msg-Id", "")) async for m in read_stream(nc.jetstream(), stream)]
    finally:
        await nc.close()


async def _wait(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await predicate():
            return
        await asyncio.sleep(0.5)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


async def test_services_trade_under_their_own_identities(secured: Any) -> None:
    """The pipeline works with every service held to its permissions: risk submits, execution reports."""

    async def traded() -> bool:
        submitted = any(s.startswith("order.submit.") for s, _ in await _stored(secured, "ORDERS"))
        return submitted and bool(await _stored(secured, "EXECUTION"))

    await _wait(traded, 120, "a SubmitOrder and an execution event")
    passwords = [user.password for user in _users(secured).values()]
    for name in SERVICES:
        raw = (Path(secured.run["logs"]) / f"{name}.log").read_text(errors="replace")
        log = raw.lower()
        assert "permissions violation" not in log, f"{name} hit a permission it lacks"
        assert "authorization violation" not in log, name
        assert not any(p in raw for p in passwords), f"a NATS password is in {name}'s log"
    assert not any(p in secured.stderr_tail(10**7) for p in passwords), "a NATS password is in up's output"


async def test_the_operator_cli_uses_its_identity_from_the_run_file(secured: Any) -> None:
    env = {k: v for k, v in secured.cli_env().items() if k == "NATS_URL" or not k.startswith("NATS_")}
    env.update(secured.run.get("operator_env", {}))  # `mode` is signed with the operator key (docs/security.md)
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "btcbot.cli",
        "control",
        "mode",
        "OBSERVE_ONLY",
        "--reason",
        "e2e: no new orders while forged ones are tried",
        env=env,
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, out.decode(errors="replace")


async def test_a_submit_order_from_a_non_risk_identity_is_refused(secured: Any) -> None:
    users = _users(secured)
    await asyncio.sleep(5)  # orders approved before OBSERVE_ONLY reach the exchange first
    baseline = (await _requests(secured))["count"]
    forged_ids = []
    for name in ("operator", "canary", "strategy", "execution", "ledger", "marketdata", "reader"):
        errors: list[str] = []

        async def on_error(exc: Exception, sink: list[str] = errors) -> None:
            sink.append(str(exc).lower())

        nc = await nats.connect(
            secured.run["nats_url"],
            error_cb=on_error,
            allow_reconnect=False,
            max_reconnect_attempts=1,
            **user_auth(users[name]).options(),
        )
        order = SubmitOrder(
            id=f"forged-{name}-{uuid.uuid4().hex}",
            ts_ns=time.time_ns(),
            client_order_id=f"forged{uuid.uuid4().hex[:12]}",
            intent_id=f"forged-intent-{name}",
            strategy="attacker",
            symbol="BTCTRY",
            side="buy",
            order_type="limit",
            price=Decimal("3664500"),
            quantity=Decimal("0.05"),
        )
        forged_ids.append(order.id)
        try:
            with pytest.raises((nats.errors.TimeoutError, nats.errors.NoRespondersError)):
                await nc.jetstream().publish(
                    subjects.submit("BTCTRY"), encode(order), headers={"Nats-Msg-Id": order.id}, timeout=1.5
                )
            assert any('publish to "order.submit.btctry"' in e for e in errors), (name, errors)
        finally:
            await nc.close()
    stored = {msg_id for _, msg_id in await _stored(secured, "ORDERS")}
    assert not stored & set(forged_ids), "a forged SubmitOrder was stored"
    await asyncio.sleep(3)  # execution would have placed a stored order by now
    later = await _requests(secured, since=baseline)
    assert later["first"] == baseline, "the request log rolled over: cannot tell"
    posts = [r for r in later["requests"] if r["method"] == "POST" and r["path"] == "/api/v1/order"]
    assert posts == [], "an order reached the exchange after the forgeries"
