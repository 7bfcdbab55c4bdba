"""Risk rebuilds its control state from the CONTROL stream before any consumer binds (issue 8, item 1).

Real pieces: a private nats-server per test, the service kit (provisioning, start-up gates, consumers) and risk's
own wiring; only the exchange-rules client is a stand-in (rules are preloaded).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import msgspec
import pytest
import pytest_asyncio

from btcbot.contracts import ids, subjects
from btcbot.contracts.codec import Codec, encode
from btcbot.contracts.messages import KillSwitch, OrderDenied, OrderIntent, SubmitOrder
from btcbot.contracts.streams import ALL_STREAMS, ORDERS
from btcbot.risk import app
from btcbot.risk.control import RiskState
from btcbot.risk.rules import SymbolRules
from btcbot.risk.settings import RiskSettings
from btcbot.runtime.inspect import read_stream
from btcbot.runtime.jetstream import NatsPublisher, connect, provision
from btcbot.runtime.service import Service
from btcbot.runtime.settings import load_settings
from btcbot.runtime.signing import RunKeys

pytestmark = pytest.mark.integration

D = Decimal
# Risk's key and the operator's: control events in these tests are signed like `btcbot control` signs them.
KEYS = RunKeys.generate()
OPERATOR = KEYS.operator_signer()
RULES = {"BTCTRY": SymbolRules("BTCTRY", True, price_scale=0, quantity_scale=8, tick_size=D(1))}


class NoRules:
    async def exchange_info(self) -> Any:
        raise AssertionError("rules are preloaded")


@pytest_asyncio.fixture(loop_scope="session")
async def nats(tmp_path: Path) -> AsyncIterator[Any]:
    from btcbot.devstack.infra import start_nats

    server = start_nats(tmp_path)
    nc = await connect(server.url, "rebuild-test", 5, reconnect_forever=False)
    await provision(nc.jetstream(), ALL_STREAMS)
    try:
        yield server, nc
    finally:
        await nc.close()
        server.stop()


@pytest.fixture
def risk_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    monkeypatch.setenv("BTCTURK_API_KEY", "k")
    monkeypatch.setenv("BTCTURK_API_SECRET", "c2VjcmV0")
    monkeypatch.setenv("BTCBOT_HEALTH_PORT", "0")
    monkeypatch.setenv("BTCBOT_HEALTH_HOST", "127.0.0.1")
    monkeypatch.setenv("BTCBOT_INSTANCE", "rebuild-1")
    monkeypatch.setenv("RISK_MAX_BOOK_AGE", "0")
    monkeypatch.setenv("RISK_SHARED_VERDICTS", "false")
    for name, value in KEYS.service_env("risk").items():
        monkeypatch.setenv(name, value)
    return monkeypatch


async def start_risk(url: str) -> tuple[Service, RiskState]:
    settings = load_settings(RiskSettings)
    nc = await connect(url, "risk-under-test", 5, reconnect_forever=False)
    svc = Service("risk", settings, nc)
    state = RiskState(settings.account)
    state.set_rules(RULES, time.time_ns())
    app.register(svc, settings, NoRules(), state)
    await provision(svc.js, ALL_STREAMS, [c.spec for c in svc._consumers])
    await svc.start()
    return svc, state


def intent(n: int) -> OrderIntent:
    book = ids.book_id("BTCTRY", time.time_ns(), n)
    return OrderIntent(
        id=ids.intent_id("it", "BTCTRY", book),
        ts_ns=time.time_ns(),
        strategy="it",
        symbol="BTCTRY",
        side="buy",
        order_type="limit",
        price=D(1000),
        quantity=D("0.2"),
        reason="rebuild test",
        book_id=book,
    )


async def verdict_of(js: Any, intent_id: str, timeout: float = 20.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        async for stored in read_stream(js, ORDERS.name, 1, "order.>"):
            message = Codec(SubmitOrder | OrderDenied).decode(stored.data)
            if message.intent_id == intent_id:
                return "APPROVED" if isinstance(message, SubmitOrder) else message.reason
        await asyncio.sleep(0.2)
    raise AssertionError(f"no verdict on {intent_id} within {timeout}s")


async def until(condition: Any, timeout: float = 20.0) -> None:
    for _ in range(int(timeout * 10)):
        if condition():
            return
        await asyncio.sleep(0.1)
    raise AssertionError("condition not reached in time")


def kill(engaged: bool, ts_ns: int) -> KillSwitch:
    return OPERATOR.sign(
        KillSwitch(id=f"kill:{engaged}:{ts_ns}", ts_ns=ts_ns, engaged=engaged, reason="test", operator="it")
    )


async def test_a_fresh_replica_denies_from_the_rebuilt_kill_before_its_durable_delivered_anything(
    nats: Any, risk_env: pytest.MonkeyPatch
) -> None:
    server, nc = nats
    js = nc.jetstream()
    publisher = NatsPublisher(js)
    now = time.time_ns()
    await publisher.publish(subjects.CONTROL_KILL, kill(True, now))
    # A release dated an hour ahead is not trusted: the engaged kill before it stands.
    await publisher.publish(subjects.CONTROL_KILL, kill(False, now + 3600 * 10**9))
    svc, state = await start_risk(server.url)
    try:
        assert svc.health.readiness().get("startup") in (False, True)
        await asyncio.wait_for(svc.gates_done.wait(), 20)
        # Right after the gate (no await in between): the state is rebuilt, and no consumer has fetched yet.
        assert state.kill_engaged
        assert all(c.last_fetch_ns == 0 and c.in_flight == 0 for c in svc._consumers)
        assert state.applied_seq(subjects.CONTROL_KILL) == 1
        assert svc.health.readiness()["startup"] is True
        sent = intent(1)
        await publisher.publish(subjects.intent("BTCTRY"), sent)
        assert await verdict_of(js, sent.id) == "KILL_SWITCH"
        # Live, the durable then delivers the future-dated release too: it is refused, the kill holds.
        await until(lambda: all(c.last_fetch_ns for c in svc._consumers))
        await asyncio.sleep(1.0)
        assert state.kill_engaged
        later = intent(2)
        await publisher.publish(subjects.intent("BTCTRY"), later)
        assert await verdict_of(js, later.id) == "KILL_SWITCH"
    finally:
        await svc.stop()


async def test_garbage_as_the_last_kill_fails_closed_until_an_operator_publishes_a_valid_state(
    nats: Any, risk_env: pytest.MonkeyPatch
) -> None:
    risk_env.setenv("RISK_AUTO_MODE", "false")  # no ledger here: the budget would hold OBSERVE_ONLY (NO_PORTFOLIO)
    server, nc = nats
    js = nc.jetstream()
    publisher = NatsPublisher(js)
    await publisher.publish(subjects.CONTROL_KILL, kill(False, time.time_ns()))
    await js.publish(subjects.CONTROL_KILL, bytes(range(40)), headers={"Nats-Msg-Id": "garbage-1"})
    svc, state = await start_risk(server.url)
    try:
        await asyncio.wait_for(svc.gates_done.wait(), 20)
        assert set(state.unreadable) == {"control.kill"}
        first = intent(1)
        await publisher.publish(subjects.intent("BTCTRY"), first)
        assert await verdict_of(js, first.id) == "CONTROL_UNREADABLE"
        await publisher.publish(subjects.CONTROL_KILL, kill(False, time.time_ns()))
        await until(lambda: not state.unreadable)
        second = intent(2)
        await publisher.publish(subjects.intent("BTCTRY"), second)
        assert await verdict_of(js, second.id) == "APPROVED"
    finally:
        await svc.stop()


async def test_a_gate_that_cannot_answer_is_retried_and_readiness_waits_for_it(
    nats: Any, risk_env: pytest.MonkeyPatch
) -> None:
    server, _ = nats
    settings = load_settings(RiskSettings)
    nc = await connect(server.url, "gate-test", 5, reconnect_forever=False)
    svc = Service("gate", settings, nc)
    attempts: list[float] = []

    async def flaky() -> None:
        attempts.append(time.monotonic())
        if len(attempts) < 3:
            raise TimeoutError("NATS did not answer")

    svc.before_consumers("flaky", flaky)
    await svc.start()
    try:
        assert svc.health.readiness()["startup"] is False
        await asyncio.wait_for(svc.gates_done.wait(), 20)
        assert len(attempts) == 3
        assert svc.health.readiness()["startup"] is True
        assert not svc.crashed
    finally:
        await svc.stop()


def test_encode_roundtrip_guard() -> None:
    # The garbage above must really be undecodable as a control message.
    with pytest.raises(Exception):  # noqa: B017,PT011
        Codec(KillSwitch).decode(bytes(range(40)))
    assert Codec(KillSwitch).decode(encode(kill(True, 1))).engaged


async def test_an_unsigned_last_kill_fails_closed_at_start_up_until_a_signed_one(
    nats: Any, risk_env: pytest.MonkeyPatch
) -> None:
    risk_env.setenv("RISK_AUTO_MODE", "false")
    server, nc = nats
    js = nc.jetstream()
    publisher = NatsPublisher(js)
    await publisher.publish(subjects.CONTROL_KILL, kill(True, time.time_ns()))
    # A release from someone without the operator's key (any identity allowed to publish on control.kill).
    forged = msgspec.structs.replace(kill(False, time.time_ns()), signature="")
    await publisher.publish(subjects.CONTROL_KILL, forged)
    svc, state = await start_risk(server.url)
    try:
        await asyncio.wait_for(svc.gates_done.wait(), 20)
        assert set(state.unreadable) == {"control.kill"}
        assert "signature MISSING" in state.unreadable["control.kill"]
        first = intent(1)
        await publisher.publish(subjects.intent("BTCTRY"), first)
        assert await verdict_of(js, first.id) == "CONTROL_UNREADABLE"
        await publisher.publish(subjects.CONTROL_KILL, kill(False, time.time_ns()))
        await until(lambda: not state.unreadable)
        second = intent(2)
        await publisher.publish(subjects.intent("BTCTRY"), second)
        assert await verdict_of(js, second.id) == "APPROVED"
    finally:
        await svc.stop()
