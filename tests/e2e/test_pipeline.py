"""End to end: real processes for the simulator and all five services on real NATS, Redis and Postgres.

The tests run in file order against one system; the last one stops it and checks the run's summary.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import sys
import time
from collections import Counter
from decimal import Decimal
from typing import Any

import httpx
import msgspec
import pytest

from btcbot.contracts import ids, subjects
from btcbot.contracts.codec import Codec, encode
from btcbot.contracts.messages import (
    DeadLetter,
    OrderAccepted,
    OrderDenied,
    OrderIntent,
    OrderRejected,
    SubmitOrder,
)
from btcbot.contracts.signing import key_id_of, sign
from btcbot.runtime.inspect import read_stream
from btcbot.runtime.jetstream import NatsPublisher, connect

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

GARBAGE_INPUTS = {
    # subject -> the services whose consumers read it
    "md.book.BTCTRY": {"strategy", "ledger", "risk"},
    "intent.BTCTRY": {"risk"},
    "order.submit.BTCTRY": {"execution"},
}


async def sim_state(system: Any) -> dict[str, Any]:
    async with httpx.AsyncClient(
        base_url=system.run["sim_url"], timeout=5, headers={"X-Sim-Admin-Token": system.run["sim_admin_token"]}
    ) as client:
        response = await client.get("/sim/state", params={"apiKey": system.run["api_key"]})
        response.raise_for_status()
        data: dict[str, Any] = response.json()
        return data


async def wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = await predicate()
        if last:
            return last
        await asyncio.sleep(0.5)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}; last: {last!r}")


async def ready(system: Any, service: str) -> bool:
    port = system.run["health_ports"][service]
    async with httpx.AsyncClient(timeout=2) as client:
        try:
            return (await client.get(f"http://127.0.0.1:{port}/readyz")).status_code == 200
        except httpx.HTTPError:
            return False


async def test_orders_fill_at_the_simulator(system) -> None:
    async def filled() -> list[Any]:
        return (await sim_state(system))["trades"]

    trades = await wait_for(filled, 90, "a trade of our account at the simulator")
    assert trades


async def test_a_redelivered_submit_order_does_not_place_a_second_order(system) -> None:
    nc = await connect(system.run["nats_url"], "e2e-redeliver", 5, reconnect_forever=False, auth=system.nats_auth())
    js = nc.jetstream()
    try:
        accepted = {
            m.client_order_id
            for m in [
                Codec(OrderAccepted).decode(s.data) async for s in read_stream(js, "EXECUTION", 1, "exec.accepted.*")
            ]
        }
        submits = [Codec(SubmitOrder).decode(s.data) async for s in read_stream(js, "ORDERS", 1, "order.submit.*")]
        target = next(s for s in submits if s.client_order_id in accepted)
        # A new Nats-Msg-Id gets past JetStream's duplicate window, exactly like a redelivery after a crash would.
        await js.publish(subjects.submit(target.symbol), encode(target), headers={"Nats-Msg-Id": f"{target.id}:again"})

        async def consumed() -> bool:
            info = await js.consumer_info("ORDERS", "execution-orders")
            return info.num_pending == 0 and info.num_ack_pending == 0

        await wait_for(consumed, 30, "execution to consume the redelivered SubmitOrder")
        await asyncio.sleep(1.0)
    finally:
        await nc.close()
    orders = (await sim_state(system))["orders"]
    placed = Counter(o["clientId"] for o in orders)
    assert placed[target.client_order_id] == 1
    assert all(n == 1 for n in placed.values()), f"client order ids placed twice: {placed.most_common(3)}"


async def test_garbage_on_each_input_lands_in_the_dead_letter_stream(system) -> None:
    nc = await connect(system.run["nats_url"], "e2e-garbage", 5, reconnect_forever=False, auth=system.nats_auth())
    js = nc.jetstream()
    try:
        for n, subject in enumerate(GARBAGE_INPUTS):
            payload = f"\xc1 garbage #{n} for {subject}".encode()
            system.injected_dead_letters.append(payload)
            await js.publish(subject, payload, headers={"Nats-Msg-Id": f"garbage-{n}"})
        expected = {(svc, subject) for subject, svcs in GARBAGE_INPUTS.items() for svc in svcs}

        async def parked() -> set[tuple[str, str]]:
            got = set()
            async for stored in read_stream(js, "DLQ", 1):
                letter = msgspec.msgpack.decode(stored.data, type=DeadLetter)
                if letter.payload in system.injected_dead_letters:
                    got.add((letter.service, letter.original_subject))
                    assert letter.error.startswith("undecodable")
            return got if got >= expected else set()

        await wait_for(parked, 30, f"dead letters from {sorted(expected)}")
    finally:
        await nc.close()
    for service in ("marketdata", "strategy", "risk", "execution", "ledger"):
        assert await ready(system, service), f"{service} is not ready after garbage input"


async def btcbot(system: Any, *args: str) -> tuple[int, str]:
    env = {**system.cli_env(), **system.run.get("operator_env", {})}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "btcbot.cli",
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(process.communicate(), 60)
    return int(process.returncode or 0), out.decode()


async def test_the_kill_switch_makes_risk_deny_and_release_restores(system) -> None:
    code, out = await btcbot(system, "control", "kill", "--reason", "e2e drill", "--operator", "e2e")
    assert code == 0, out
    nc = await connect(system.run["nats_url"], "e2e-kill", 5, reconnect_forever=False, auth=system.nats_auth())
    js = nc.jetstream()
    try:
        book = ids.book_id("BTCTRY", time.time_ns(), 1)
        intent = OrderIntent(
            id=ids.intent_id("e2e", "BTCTRY", book),
            ts_ns=time.time_ns(),
            strategy="e2e",
            symbol="BTCTRY",
            side="buy",
            order_type="limit",
            price=Decimal(1000),
            quantity=Decimal("0.001"),
            reason="drill",
            book_id=book,
        )
        await asyncio.sleep(1.0)  # risk reads control messages on its own consumer
        await NatsPublisher(js).publish(subjects.intent("BTCTRY"), intent)

        async def denied() -> list[OrderDenied]:
            found = [Codec(OrderDenied).decode(s.data) async for s in read_stream(js, "ORDERS", 1, "order.denied.*")]
            return [d for d in found if d.intent_id == intent.id]

        verdicts = await wait_for(denied, 30, "risk to deny the intent")
        assert verdicts[0].reason == "KILL_SWITCH"
    finally:
        await nc.close()
    code, out = await btcbot(system, "control", "release", "--reason", "drill over", "--operator", "e2e")
    assert code == 0, out
    code, out = await btcbot(system, "dlq", "--limit", "5")
    assert code == 0, out


async def decoded(js: Any, stream: str, subject: str, kind: Any) -> Any:
    """The messages of one type on a subject, skipping what does not decode (the garbage injected above)."""
    codec: Codec[Any] = Codec(kind)
    async for stored in read_stream(js, stream, 1, subject):
        try:
            yield codec.decode(stored.data)
        except (msgspec.DecodeError, msgspec.ValidationError):
            continue


async def test_a_submit_order_with_a_wrong_signature_is_rejected_unsigned_and_never_sent(system) -> None:
    # Engage the kill switch so the pipeline places nothing itself: then any order POST would be the forged one.
    code, out = await btcbot(system, "control", "kill", "--reason", "signature drill", "--operator", "e2e")
    assert code == 0, out
    # The test reads streams as admin; the forged order goes out under risk's own NATS identity (the only one the
    # server lets publish order.submit.*): a leaked risk credential without risk's signing key.
    nc = await connect(system.run["nats_url"], "e2e-forged", 5, reconnect_forever=False, auth=system.nats_auth())
    as_risk = await connect(
        system.run["nats_url"], "e2e-forged-risk", 5, reconnect_forever=False, auth=system.nats_auth("risk")
    )
    js = nc.jetstream()
    try:

        async def orders_consumed() -> bool:
            info = await js.consumer_info("ORDERS", "execution-orders")
            return info.num_pending == 0 and info.num_ack_pending == 0

        await asyncio.sleep(1.0)  # risk reads control messages on its own consumer
        await wait_for(orders_consumed, 30, "execution to finish the orders approved before the kill")
        async with httpx.AsyncClient(
            base_url=system.run["sim_url"], timeout=5, headers={"X-Sim-Admin-Token": system.run["sim_admin_token"]}
        ) as admin:
            before = (await admin.get("/sim/requests")).json()["count"]
        genuine = [m async for m in decoded(js, "ORDERS", "order.submit.*", SubmitOrder)]  # skips the garbage
        key_id = key_id_of(genuine[0])
        assert key_id, "risk's orders are signed"
        coid = f"bbforged{secrets.token_hex(6)}"
        forged = SubmitOrder(
            id=ids.submit_id(coid),
            ts_ns=time.time_ns(),
            client_order_id=coid,
            intent_id=f"intent:forged:{coid}",
            strategy="attacker",
            symbol="BTCTRY",
            side="buy",
            order_type="market",
            price=None,
            quantity=Decimal("0.05"),
        )
        # Risk's key id, a secret that is not risk's: what a leaked NATS credential without the key can do.
        forged_signed = sign(forged, key_id, secrets.token_bytes(32))
        await NatsPublisher(as_risk.jetstream()).publish(subjects.submit("BTCTRY"), forged_signed)

        async def rejected() -> list[OrderRejected]:
            found = [m async for m in decoded(js, "EXECUTION", "exec.rejected.*", OrderRejected)]
            return [r for r in found if r.client_order_id == coid]

        events = await wait_for(rejected, 30, "execution to reject the forged order")
        assert [e.reason for e in events] == ["UNSIGNED"]
        assert "BAD_SIGNATURE" in events[0].detail
        await wait_for(orders_consumed, 30, "execution to ack the forged order")
        async with httpx.AsyncClient(
            base_url=system.run["sim_url"], timeout=5, headers={"X-Sim-Admin-Token": system.run["sim_admin_token"]}
        ) as admin:
            log = (await admin.get("/sim/requests", params={"since": before})).json()["requests"]
        assert [r for r in log if r["method"] == "POST" and r["path"] == "/api/v1/order"] == []
        assert all(o["clientId"] != coid for o in (await sim_state(system))["orders"])
    finally:
        await as_risk.close()
        await nc.close()
        code, out = await btcbot(system, "control", "release", "--reason", "signature drill over", "--operator", "e2e")
        assert code == 0, out


async def test_doctor_passes_against_the_running_system(system) -> None:
    run = system.run
    env = {
        **system.cli_env(),
        "REDIS_URL": run["redis_url"],
        "DATABASE_URL": run["database_url"],
        "BTCTURK_BASE_URL": run["sim_url"],
        "BTCTURK_API_KEY": run["api_key"],
        "BTCTURK_API_SECRET": run["api_secret"],
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "btcbot.cli",
        "doctor",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    report = out.decode()
    assert process.returncode == 0, report + err.decode()
    assert "OK   stream EXECUTION" in report
    assert "OK   consumer execution-orders" in report
    assert "credentials accepted" in report


async def test_a_bad_setting_stops_a_service_naming_it(system) -> None:
    env = {
        **os.environ,
        "NATS_URL": system.run["nats_url"],
        "RISK_MAX_ORDER_NOTIONAL": "lots",
        "BTCTURK_API_KEY": "k",
        "BTCTURK_API_SECRET": "c2VjcmV0",
        "BTCBOT_HEALTH_PORT": "0",
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "btcbot.risk", env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 2
    assert "RISK_MAX_ORDER_NOTIONAL" in (out + err).decode()


async def test_the_run_summary_holds_the_pipeline_facts(system) -> None:
    summary = await system.stop()
    assert summary["books"] > 0
    assert summary["intents"] > 0
    assert summary["orders"] > 0
    assert summary["fills"] > 0, summary
    assert summary["ledger_fills"] == summary["fills"], summary
    # The only dead letters are the garbage injected above: one per consuming service.
    assert summary["dead_letters"] == sum(len(s) for s in GARBAGE_INPUTS.values()), summary
    assert summary["undecodable"] == len(GARBAGE_INPUTS), summary
    assert summary["trace_complete"] is True, summary
    assert not summary["restarts"], summary
