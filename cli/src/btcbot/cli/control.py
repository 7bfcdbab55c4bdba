"""Operator commands: trading mode, kill switch, halt resumes, the control state as risk rebuilds it, and a look at
the dead-letter stream."""

from __future__ import annotations

import getpass
import json
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import msgspec

from btcbot.cli.natsconfig import cli_connect
from btcbot.contracts import subjects
from btcbot.contracts.codec import Codec
from btcbot.contracts.messages import Alarm, DeadLetter, KillSwitch, Message, Mode, ModeChanged, ResumeSymbol
from btcbot.contracts.signing import Signer, decode_secret
from btcbot.contracts.streams import ALL_STREAMS, CONTROL, DLQ, RISK_CONTROL
from btcbot.runtime.inspect import read_stream
from btcbot.runtime.jetstream import NatsPublisher, provision
from btcbot.runtime.latest import LastMessage, last_per_subject
from btcbot.runtime.signing import OPERATOR_KEY_ENV, OPERATOR_KEY_ID_ENV

MODES: tuple[Mode, ...] = ("NORMAL", "REDUCE_ONLY", "OBSERVE_ONLY")


def operator_name(explicit: str | None) -> str:
    """Who gave the command: --operator, else the login name."""
    if explicit:
        return explicit
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def control_message(
    kind: str, value: str, reason: str, operator: str, now_ns: int, *, cancel_resting: bool = False
) -> ModeChanged | KillSwitch | ResumeSymbol:
    """The control event for a command; its id is the command's own (operator and time)."""
    if kind == "mode":
        if value not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, not {value!r}")
        mode: Mode = value  # type: ignore[assignment]
        return ModeChanged(id=f"mode:{operator}:{now_ns}", ts_ns=now_ns, mode=mode, reason=reason, operator=operator)
    if kind == "resume":
        symbol = value.upper()
        if not symbol.isalnum():
            raise ValueError(f"resume needs a symbol such as BTCTRY, not {value!r}")
        return ResumeSymbol(
            id=f"resume:{symbol}:{operator}:{now_ns}", ts_ns=now_ns, symbol=symbol, reason=reason, operator=operator
        )
    if kind not in ("kill", "release"):
        raise ValueError(f"unknown control action {kind!r}")
    engaged = kind == "kill"
    if cancel_resting and not engaged:
        raise ValueError("--cancel-resting goes with `kill`")
    return KillSwitch(
        id=f"kill:{operator}:{now_ns}",
        ts_ns=now_ns,
        engaged=engaged,
        reason=reason,
        operator=operator,
        cancel_resting=cancel_resting,
    )


def with_run_operator_key(env: Mapping[str, str]) -> dict[str, str]:
    """`env` plus the operator's signing key recorded in the run file named by BTCBOT_RUN_FILE (run.json, 0600),
    for the variables the environment does not set itself."""
    merged = dict(env)
    run_file = (env.get("BTCBOT_RUN_FILE") or "").strip()
    if run_file and Path(run_file).is_file():
        recorded = json.loads(Path(run_file).read_text()).get("operator_env") or {}
        for name, value in recorded.items():
            merged.setdefault(str(name), str(value))
    return merged


def operator_signer(env: Mapping[str, str]) -> Signer | None:
    """The operator's signing key from BTCBOT_OPERATOR_SIGNING_KEY_ID and _KEY (None: neither is set).

    Raises ValueError naming the variable when only one is set or the key is not a usable secret.
    """
    key_id, secret = env.get(OPERATOR_KEY_ID_ENV, ""), env.get(OPERATOR_KEY_ENV, "")
    if not key_id and not secret:
        return None
    if not key_id or not secret:
        raise ValueError(f"{OPERATOR_KEY_ID_ENV} and {OPERATOR_KEY_ENV} must be set together")
    try:
        return Signer(key_id, decode_secret(secret))
    except ValueError as exc:
        name = OPERATOR_KEY_ID_ENV if "key id" in str(exc) else OPERATOR_KEY_ENV
        raise ValueError(f"{name}: {exc}") from None


def control_subject(message: ModeChanged | KillSwitch | ResumeSymbol) -> str:
    """Where a command is published."""
    if isinstance(message, ModeChanged):
        return subjects.CONTROL_MODE
    if isinstance(message, ResumeSymbol):
        return subjects.resume(message.symbol)
    return subjects.CONTROL_KILL


async def send_control(env: Mapping[str, str], message: ModeChanged | KillSwitch | ResumeSymbol) -> None:
    """Publish a control event on its subject (the CONTROL stream keeps the history; the last one holds)."""
    nc = await cli_connect(env, "btcbot-control", "operator")
    try:
        js = nc.jetstream()
        await provision(js, ALL_STREAMS)
        await NatsPublisher(js).publish(control_subject(message), message)
    finally:
        await nc.close()


async def run_control(
    env: Mapping[str, str],
    kind: str,
    value: str,
    reason: str | None,
    operator: str | None,
    *,
    cancel_resting: bool = False,
) -> int:
    """`btcbot control mode|kill|release|resume|status ...`: publish and print what was sent (or the state)."""
    if kind == "status":
        return await run_status(env)
    if not reason:
        print(f"btcbot control {kind}: --reason is required")
        return 2
    try:
        message = control_message(
            kind, value, reason, operator_name(operator), time.time_ns(), cancel_resting=cancel_resting
        )
        signer = operator_signer(with_run_operator_key(env))
    except ValueError as exc:
        print(f"btcbot control: {exc}")
        return 2
    if signer is not None:
        message = signer.sign(message)
    elif kind == "kill":
        # Risk treats an unsigned control message as unreadable, which denies every order: a kill still stops
        # trading, but only a signed message clears it.
        print(f"btcbot control: warning: {OPERATOR_KEY_ID_ENV} not set; the kill is sent unsigned (risk then"
              " denies everything CONTROL_UNREADABLE until a signed control.kill)")  # fmt: skip
    else:
        print(f"btcbot control: {OPERATOR_KEY_ID_ENV} and {OPERATOR_KEY_ENV} are needed to sign `{kind}`"
              " (risk and the ledger refuse unsigned control events)")  # fmt: skip
        return 2
    await send_control(env, message)
    print(msgspec.json.encode(message).decode())
    return 0


_control_codec: Codec[Message] = Codec(ModeChanged | KillSwitch | Alarm)


def control_status(stored: Mapping[str, LastMessage]) -> dict[str, Any]:
    """The control state risk rebuilds from these last messages: switches, automatic mode, alarms, unreadable."""
    status: dict[str, Any] = {
        "kill_engaged": False,
        "mode": "NORMAL",
        "auto_mode": "NORMAL",
        "auto_reasons": [],
        "active_alarms": {},
        "unreadable": {},
        "sequences": {},
    }
    for subject, last in sorted(stored.items()):
        status["sequences"][subject] = last.sequence
        try:
            message = _control_codec.decode(last.data)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            status["unreadable"][subject] = f"undecodable: {exc}"
            continue
        if subject == subjects.CONTROL_KILL and isinstance(message, KillSwitch):
            status["kill_engaged"] = message.engaged
            status["kill"] = {"reason": message.reason, "operator": message.operator, "ts_ns": message.ts_ns}
        elif subject == subjects.CONTROL_MODE and isinstance(message, ModeChanged):
            status["mode"] = message.mode
        elif subject == subjects.CONTROL_AUTO and isinstance(message, ModeChanged):
            status["auto_mode"] = message.mode
            status["auto_reasons"] = list(message.reasons)
            status["auto_since_ns"] = message.ts_ns
        elif subject.startswith("control.alarm.") and isinstance(message, Alarm):
            if message.active:
                status["active_alarms"][subject] = message.detail
        else:
            status["unreadable"][subject] = f"{subject} holds a {type(message).__name__}"
    return status


async def run_status(env: Mapping[str, str]) -> int:
    """`btcbot control status`: the control state from the last trusted message per subject, as JSON."""
    nc = await cli_connect(env, "btcbot-control", "operator")
    try:
        skew_ns = int(float(env.get("BTCBOT_MAX_CLOCK_SKEW", "5")) * 1_000_000_000)
        stored = await last_per_subject(nc.jetstream(), CONTROL.name, RISK_CONTROL.filter_subjects, skew_ns)
    finally:
        await nc.close()
    print(json.dumps(control_status(stored), sort_keys=True))
    return 0


def dead_letter_view(letter: DeadLetter, sequence: int) -> dict[str, Any]:
    """A dead letter as one JSON-friendly dict (payload as text when it is, else hex)."""
    try:
        payload = letter.payload.decode()
    except UnicodeDecodeError:
        payload = "hex:" + letter.payload.hex()
    return {
        "dlq_seq": sequence,
        "service": letter.service,
        "subject": letter.original_subject,
        "stream": letter.original_stream,
        "stream_seq": letter.original_sequence,
        "deliveries": letter.deliveries,
        "error": letter.error,
        "payload": payload[:500],
    }


async def run_dlq(env: Mapping[str, str], service: str | None, limit: int) -> int:
    """`btcbot dlq`: the newest dead letters, one JSON object per line."""
    nc = await cli_connect(env, "btcbot-dlq", "reader")
    codec: Codec[DeadLetter] = Codec(DeadLetter)
    try:
        js = nc.jetstream()
        subject = f"dlq.{service}.>" if service else "dlq.>"
        rows = [dead_letter_view(codec.decode(s.data), s.sequence) async for s in read_stream(js, DLQ.name, 1, subject)]
    finally:
        await nc.close()
    for row in rows[-limit:]:
        print(json.dumps(row))
    return 0
