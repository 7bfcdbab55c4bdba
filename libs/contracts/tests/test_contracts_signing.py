"""Signatures: round trip over the wire, any field change breaks them, unknown keys, rotation, key parsing."""

from __future__ import annotations

import base64
import re
from decimal import Decimal
from typing import Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from btcbot.contracts.codec import Codec, encode
from btcbot.contracts.messages import KillSwitch, ModeChanged, ResumeSymbol, SubmitOrder
from btcbot.contracts.signing import (
    BAD_SIGNATURE,
    MISSING,
    UNKNOWN_KEY,
    canonical,
    format_keys,
    key_id_of,
    parse_keys,
    sign,
    verify,
)

OLD = b"o" * 32
NEW = b"n" * 32


def order(**changes: Any) -> SubmitOrder:
    fields: dict[str, Any] = {
        "id": "submit:bbc1",
        "ts_ns": 1_764_000_000_000_000_000,
        "client_order_id": "bbc1",
        "intent_id": "intent:1",
        "strategy": "mm",
        "symbol": "BTCTRY",
        "side": "buy",
        "order_type": "limit",
        "price": Decimal("3500000.10"),
        "quantity": Decimal("0.001"),
        "checks": ("NOTIONAL",),
    }
    fields.update(changes)
    return SubmitOrder(**fields)


def test_round_trip_over_the_wire() -> None:
    signed = sign(order(), "risk-1", OLD)
    assert signed.signature.startswith("risk-1:")
    decoded = Codec(SubmitOrder).decode(encode(signed))
    assert verify(decoded, {"risk-1": OLD}) is None
    assert key_id_of(decoded) == "risk-1"


@pytest.mark.parametrize(
    "message",
    [
        ModeChanged(id="m", ts_ns=1, mode="OBSERVE_ONLY", reason="r", operator="op"),
        KillSwitch(id="k", ts_ns=1, engaged=True, reason="r", operator="op", cancel_resting=True),
        ResumeSymbol(id="r", ts_ns=1, symbol="BTCTRY", reason="r", operator="op"),
    ],
)
def test_control_events_sign_and_verify(message: ModeChanged | KillSwitch | ResumeSymbol) -> None:
    signed = sign(message, "op-1", OLD)
    assert verify(signed, {"op-1": OLD}) is None
    assert verify(message, {"op-1": OLD}) == MISSING


def test_canonical_bytes_are_deterministic_and_ignore_the_signature() -> None:
    a, b = order(), order()
    assert canonical(a) == canonical(b)
    assert canonical(sign(a, "k", OLD)) == canonical(a)
    # Defaults are left out: a field added later with a default would not change these bytes.
    assert b"reduce_only" not in canonical(a)
    assert b"checks" not in canonical(order(checks=()))


_CHANGES: dict[str, Any] = {
    "id": "submit:other",
    "ts_ns": 1,
    "client_order_id": "bbc2",
    "intent_id": "intent:2",
    "strategy": "other",
    "symbol": "ETHTRY",
    "side": "sell",
    "order_type": "market",
    "price": None,
    "quantity": Decimal("0.05"),
    "checks": (),
}


@given(st.sampled_from(sorted(_CHANGES)))
def test_any_field_change_breaks_the_signature(name: str) -> None:
    signed = sign(order(), "risk-1", OLD)
    tampered = msgspec.structs.replace(signed, **{name: _CHANGES[name]})
    assert verify(tampered, {"risk-1": OLD}) == BAD_SIGNATURE


@given(st.decimals(min_value=Decimal("0.00000001"), max_value=Decimal(100), places=8))
def test_a_different_quantity_never_verifies(quantity: Decimal) -> None:
    signed = sign(order(), "risk-1", OLD)
    tampered = msgspec.structs.replace(signed, quantity=quantity)
    assert (verify(tampered, {"risk-1": OLD}) is None) == (str(quantity) == "0.001")


def test_another_message_type_with_the_same_signature_fails() -> None:
    kill = sign(KillSwitch(id="x", ts_ns=1, engaged=False, reason="r", operator="op"), "op-1", OLD)
    mode = ModeChanged(id="x", ts_ns=1, mode="NORMAL", reason="r", operator="op", signature=kill.signature)
    assert verify(mode, {"op-1": OLD}) == BAD_SIGNATURE


def test_missing_unknown_and_wrong_keys() -> None:
    assert verify(order(), {"risk-1": OLD}) == MISSING
    assert verify(sign(order(), "risk-9", OLD), {"risk-1": OLD}) == UNKNOWN_KEY
    assert verify(sign(order(), "risk-1", NEW), {"risk-1": OLD}) == BAD_SIGNATURE
    assert verify(order(signature="garbage"), {"risk-1": OLD}) == BAD_SIGNATURE
    assert verify(order(signature="risk-1:00"), {"risk-1": OLD}) == BAD_SIGNATURE


def test_rotation_accepts_old_and_new_while_both_are_listed() -> None:
    both = {"k-old": OLD, "k-new": NEW}
    old_signed, new_signed = sign(order(), "k-old", OLD), sign(order(), "k-new", NEW)
    assert verify(old_signed, both) is None
    assert verify(new_signed, both) is None
    # The old key retired: what it signed is refused, the new one still passes.
    assert verify(old_signed, {"k-new": NEW}) == UNKNOWN_KEY
    assert verify(new_signed, {"k-new": NEW}) is None


def test_parse_and_format_keys() -> None:
    text = f"a:{base64.b64encode(OLD).decode()}, b.2:{base64.b64encode(NEW).decode()}"
    keys = parse_keys(text)
    assert keys == {"a": OLD, "b.2": NEW}
    assert parse_keys(format_keys(keys)) == keys
    assert parse_keys("") == {}


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("nokid", "<key id>:<base64 secret>"),
        ("a:not base64!", "'a': the secret is not base64"),
        (f"a:{base64.b64encode(b'short').decode()}", "shorter than 16"),
        (f"bad kid:{base64.b64encode(OLD).decode()}", "not a key id"),
        (f"a:{base64.b64encode(OLD).decode()},a:{base64.b64encode(NEW).decode()}", "listed twice"),
    ],
)
def test_bad_keys_are_refused_without_echoing_secrets(text: str, words: str) -> None:
    with pytest.raises(ValueError, match=re.escape(words)) as info:
        parse_keys(text)
    assert base64.b64encode(OLD).decode() not in str(info.value)


def test_sign_refuses_a_bad_key_id() -> None:
    with pytest.raises(ValueError, match="not a key id"):
        sign(order(), "a:b", OLD)
