"""Operator commands: trading mode, kill switch, and a look at the dead-letter stream."""

from __future__ import annotations

import getpass
import json
import time
from collections.abc import Mapping
from typing import Any

import msgspec

from btcbot.contracts import subjects
from btcbot.contracts.codec import Codec
from btcbot.contracts.messages import DeadLetter, KillSwitch, Mode, ModeChanged
from btcbot.contracts.streams import ALL_STREAMS, DLQ
from btcbot.runtime.inspect import read_stream
from btcbot.runtime.jetstream import NatsPublisher, connect, provision

MODES: tuple[Mode, ...] = ("NORMAL", "REDUCE_ONLY", "OBSERVE_ONLY")
DEFAULT_NATS_URL = "nats://127.0.0.1:4222"


def operator_name(explicit: str | None) -> str:
    """Who gave the command: --operator, else the login name."""
    if explicit:
        return explicit
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def control_message(kind: str, value: str, reason: str, operator: str, now_ns: int) -> ModeChanged | KillSwitch:
    """The control event for a command; its id is the command's own (operator and time)."""
    if kind == "mode":
        if value not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, not {value!r}")
        mode: Mode = value  # type: ignore[assignment]
        return ModeChanged(id=f"mode:{operator}:{now_ns}", ts_ns=now_ns, mode=mode, reason=reason, operator=operator)
    engaged = kind == "kill"
    return KillSwitch(id=f"kill:{operator}:{now_ns}", ts_ns=now_ns, engaged=engaged, reason=reason, operator=operator)


async def send_control(env: Mapping[str, str], message: ModeChanged | KillSwitch) -> None:
    """Publish a control event on its subject (the CONTROL stream keeps the latest per subject)."""
    nc = await connect(env.get("NATS_URL", DEFAULT_NATS_URL), "btcbot-control", 10, reconnect_forever=False)
    try:
        js = nc.jetstream()
        await provision(js, ALL_STREAMS)
        subject = subjects.CONTROL_MODE if isinstance(message, ModeChanged) else subjects.CONTROL_KILL
        await NatsPublisher(js).publish(subject, message)
    finally:
        await nc.close()


async def run_control(env: Mapping[str, str], kind: str, value: str, reason: str, operator: str | None) -> int:
    """`btcbot control mode|kill|release ...`: publish and print what was sent."""
    try:
        message = control_message(kind, value, reason, operator_name(operator), time.time_ns())
    except ValueError as exc:
        print(f"btcbot control: {exc}")
        return 2
    await send_control(env, message)
    print(msgspec.json.encode(message).decode())
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
    nc = await connect(env.get("NATS_URL", DEFAULT_NATS_URL), "btcbot-dlq", 10, reconnect_forever=False)
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
