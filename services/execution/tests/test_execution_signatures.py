"""Execution refuses an order risk did not sign: OrderRejected UNSIGNED, acked, no claim, no lock, no exchange call."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from btcbot.contracts import ids, subjects
from btcbot.contracts.messages import OrderAccepted, OrderRejected
from btcbot.execution.handlers import UNSIGNED
from btcbot.execution.settings import ExecutionSettings, order_keys
from btcbot.runtime.errors import SettingsError
from btcbot.runtime.signing import RunKeys

OTHER = RunKeys.generate()


async def deliver(rig: Any, message: Any) -> str:
    return str(await rig.bus.deliver(rig.execution.on_order, message, max_deliver=8))


@pytest.mark.parametrize(
    ("forge", "problem"),
    [
        (lambda m: msgspec.structs.replace(m, signature=""), "MISSING"),
        (lambda m: OTHER.risk_signer().sign(m), "UNKNOWN_KEY"),
        # The operator's key is not an order key: an operator credential cannot place orders.
        (lambda m: OTHER.operator_signer().sign(m), "UNKNOWN_KEY"),
        (lambda m: msgspec.structs.replace(m, quantity=m.quantity * 50), "BAD_SIGNATURE"),
        (lambda m: msgspec.structs.replace(m, signature=m.signature.split(":")[0] + ":" + "0" * 64), "BAD_SIGNATURE"),
    ],
    ids=["missing", "unknown-key", "operator-key", "altered", "forged-mac"],
)
async def test_an_order_without_risks_signature_is_rejected_unsigned_and_never_sent(
    rig: Any, forge: Any, problem: str
) -> None:
    forged = forge(rig.submit("bbforged"))
    assert await deliver(rig, forged) == "ack"
    assert rig.exchange.posts == []
    assert rig.exchange.orders == {}
    assert rig.store.claims == {}  # no claim: a real order with this id is still placed normally
    assert rig.locks.taken == []
    [(subject, event)] = rig.bus.published
    assert subject == subjects.execution("rejected", "BTCTRY")
    assert isinstance(event, OrderRejected)
    assert event.reason == UNSIGNED
    assert problem in event.detail
    assert event.client_order_id == "bbforged"
    # Not the order's usual rejection id: a forged command cannot take a real rejection's place.
    assert event.id != ids.rejected_id("bbforged")


async def test_a_signed_order_with_the_same_id_is_placed_after_a_forged_one(rig: Any) -> None:
    genuine = rig.submit("bbc1")
    assert await deliver(rig, msgspec.structs.replace(genuine, signature="")) == "ack"
    assert await deliver(rig, genuine) == "ack"
    assert rig.exchange.posts == ["bbc1"]
    assert [type(e) for e in rig.bus.of_type(OrderAccepted)] == [OrderAccepted]


async def test_cancels_need_no_signature(rig: Any) -> None:
    await deliver(rig, rig.submit("bbc1"))
    assert await deliver(rig, rig.cancel("bbc1")) == "ack"
    assert rig.exchange.cancels


def settings(monkeypatch: pytest.MonkeyPatch, **env: str) -> ExecutionSettings:
    for name in ("BTCBOT_SIGNING_KEYS", "EXECUTION_ACCEPT_UNSIGNED", "EXECUTION_LIVE"):
        monkeypatch.delenv(name, raising=False)
    for name, value in {"BTCTURK_API_KEY": "k", "BTCTURK_API_SECRET": "c2VjcmV0", **env}.items():
        monkeypatch.setenv(name, value)
    return ExecutionSettings()


def test_execution_without_a_key_refuses_to_start(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(SettingsError, match="BTCBOT_SIGNING_KEYS"):
        order_keys(settings(monkeypatch))


def test_execution_takes_risks_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    keys = RunKeys.generate()
    found = order_keys(settings(monkeypatch, **keys.service_env("execution")))
    assert found == {keys.risk_key_id: keys.risk_secret}


def test_unsigned_orders_only_deliberately_and_never_live(monkeypatch: pytest.MonkeyPatch) -> None:
    assert order_keys(settings(monkeypatch, EXECUTION_ACCEPT_UNSIGNED="true")) is None
    with pytest.raises(SettingsError, match="EXECUTION_ACCEPT_UNSIGNED"):
        order_keys(settings(monkeypatch, EXECUTION_ACCEPT_UNSIGNED="true", EXECUTION_LIVE="true"))
