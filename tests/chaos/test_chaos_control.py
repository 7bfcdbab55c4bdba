"""Control state survives every risk replica being SIGKILLed (issue 8, "Done when" chaos (a)).

Two risk replicas with fixed instance names (so each resumes its own fan-out control durable, already past the
control message, after a restart). The kill switch is engaged and seen by both; both are SIGKILLed and restarted;
then 50 intents: none may be approved, every one denied KILL_SWITCH. The same for a manual OBSERVE_ONLY (MODE).
Bounded: 50 intents per phase, every wait capped.
"""

from __future__ import annotations

import asyncio
import time
from decimal import ROUND_DOWN, Decimal
from typing import Any

import pytest

from btcbot.contracts import subjects
from btcbot.contracts.codec import Codec
from btcbot.contracts.messages import KillSwitch, ModeChanged, OrderDenied, SubmitOrder
from btcbot.runtime.inspect import read_stream

pytestmark = [pytest.mark.chaos, pytest.mark.integration]

REPLICAS = ("risk", "risk-b")
INTENTS = 50


async def verdicts(chaos: Any, intent_ids: set[str], timeout: float = 60.0) -> dict[str, str]:
    """intent id -> "APPROVED" or the denial reason, once every one of `intent_ids` has a verdict."""
    js = chaos.nc.jetstream()
    codec: Codec[SubmitOrder | OrderDenied] = Codec(SubmitOrder | OrderDenied)
    found: dict[str, str] = {}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = {}
        for subject in ("order.submit.*", "order.denied.*"):
            async for stored in read_stream(js, "ORDERS", 1, subject):
                message = codec.decode(stored.data)
                if message.intent_id in intent_ids:
                    found[message.intent_id] = "APPROVED" if isinstance(message, SubmitOrder) else message.reason
        if len(found) == len(intent_ids):
            return found
        await asyncio.sleep(1.0)
    raise AssertionError(f"{len(intent_ids) - len(found)} of {len(intent_ids)} intents got no verdict: {found}")


async def seen_by_every_replica(chaos: Any, event: str, check: Any, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(any(check(e) for e in chaos.log_events(name, event)) for name in REPLICAS):
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"not every risk replica logged {event}")


async def kill_and_restart_every_replica(chaos: Any) -> None:
    for name in REPLICAS:
        await chaos.kill(name)
    for name in REPLICAS:
        await chaos.restart(name)
    for name in REPLICAS:
        await chaos.sup.wait_ready(name, 90)


async def fifty_intents(chaos: Any) -> set[str]:
    _bid, ask = await chaos.top()
    price = (ask * Decimal("1.003")).quantize(Decimal(1), rounding=ROUND_DOWN)
    before = len(chaos.published)
    for _ in range(INTENTS):
        await chaos.publish_intent("buy", price)
    return set(chaos.published[before:])


async def test_kill_switch_and_observe_only_survive_every_risk_replica_being_sigkilled(chaos_rig: Any) -> None:
    async with chaos_rig(risk_replicas=REPLICAS) as chaos:
        orders_before = len((await chaos.state())["orders"])

        # Phase 1: the kill switch.
        now = time.time_ns()
        operator = chaos.keys.operator_signer()
        kill = operator.sign(
            KillSwitch(id=f"chaos-kill-{now}", ts_ns=now, engaged=True, reason="chaos (a)", operator="chaos")
        )
        await chaos.publisher.publish(subjects.CONTROL_KILL, kill)
        await seen_by_every_replica(chaos, "risk.kill_switch", lambda e: e.get("engaged") is True and not e["rebuild"])
        await kill_and_restart_every_replica(chaos)
        # Each restarted replica rebuilt the kill from the stream (its durable was already past it).
        await seen_by_every_replica(chaos, "risk.control_rebuilt", lambda e: e.get("kill_engaged") is True)
        sent = await fifty_intents(chaos)
        result = await verdicts(chaos, sent)
        assert set(result.values()) == {"KILL_SWITCH"}, result

        # Phase 2: released, but an operator's OBSERVE_ONLY.
        now = time.time_ns()
        release = operator.sign(
            KillSwitch(id=f"chaos-release-{now}", ts_ns=now, engaged=False, reason="chaos (a)", operator="chaos")
        )
        observe = operator.sign(
            ModeChanged(id=f"chaos-mode-{now}", ts_ns=now, mode="OBSERVE_ONLY", reason="chaos (a)", operator="chaos")
        )
        await chaos.publisher.publish(subjects.CONTROL_KILL, release)
        await chaos.publisher.publish(subjects.CONTROL_MODE, observe)
        await seen_by_every_replica(chaos, "risk.mode", lambda e: e.get("mode") == "OBSERVE_ONLY" and not e["rebuild"])
        await kill_and_restart_every_replica(chaos)
        await seen_by_every_replica(
            chaos, "risk.control_rebuilt", lambda e: e.get("mode") == "OBSERVE_ONLY" and e.get("kill_engaged") is False
        )
        sent = await fifty_intents(chaos)
        result = await verdicts(chaos, sent)
        assert set(result.values()) == {"MODE"}, result

        assert len(chaos.kills) == 2 * len(REPLICAS)
        # Nothing reached the exchange.
        assert len((await chaos.state())["orders"]) == orders_before
