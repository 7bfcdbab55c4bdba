"""`btcbot control`: kill with --cancel-resting, resume SYMBOL, and status (the state risk rebuilds)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from btcbot.cli.control import control_message, control_status, control_subject, run_control, send_control
from btcbot.contracts import subjects
from btcbot.contracts.codec import encode
from btcbot.contracts.messages import Alarm, KillSwitch, ModeChanged, ResumeSymbol
from btcbot.runtime.latest import LastMessage
from btcbot.runtime.sanity import is_future_dated

NOW = 1_700_000_000 * 10**9


def test_kill_with_cancel_resting_and_resume_messages():
    kill = control_message("kill", "", "drill", "ops", NOW, cancel_resting=True)
    assert isinstance(kill, KillSwitch)
    assert kill.engaged
    assert kill.cancel_resting
    assert control_subject(kill) == "control.kill"
    resume = control_message("resume", "ethtry", "reconciled", "ops", NOW)
    assert isinstance(resume, ResumeSymbol)
    assert resume.symbol == "ETHTRY"
    assert control_subject(resume) == subjects.resume("ETHTRY") == "control.resume.ETHTRY"
    with pytest.raises(ValueError, match="cancel-resting"):
        control_message("release", "", "r", "ops", NOW, cancel_resting=True)
    with pytest.raises(ValueError, match="symbol"):
        control_message("resume", "ETH-TRY", "r", "ops", NOW)


def last(subject: str, seq: int, message: Any) -> LastMessage:
    data = message if isinstance(message, bytes) else encode(message)
    return LastMessage(subject, seq, data, NOW)


def test_status_reads_like_risk_rebuilds():
    reduce = ModeChanged(id="m", ts_ns=NOW, mode="REDUCE_ONLY", reason="r", operator="o")
    stored = {
        "control.kill": last("control.kill", 3, bytes(40)),
        "control.mode": last("control.mode", 1, reduce),
        "control.auto": last(
            "control.auto",
            2,
            ModeChanged(
                id="a", ts_ns=NOW, mode="OBSERVE_ONLY", reason="", operator="risk", source="auto", reasons=("DRAWDOWN",)
            ),
        ),
        "control.alarm.risk.repeated_failures": last(
            "control.alarm.risk.repeated_failures",
            4,
            Alarm(id="x", ts_ns=NOW, source="risk", kind="repeated_failures", active=True, detail="redis down"),
        ),
        "control.alarm.ledger.mismatch": last(
            "control.alarm.ledger.mismatch", 5, Alarm(id="y", ts_ns=NOW, source="ledger", kind="mismatch", active=False)
        ),
    }
    status = control_status(stored)
    assert status["mode"] == "REDUCE_ONLY"
    assert (status["auto_mode"], status["auto_reasons"]) == ("OBSERVE_ONLY", ["DRAWDOWN"])
    assert status["active_alarms"] == {"control.alarm.risk.repeated_failures": "redis down"}
    assert list(status["unreadable"]) == ["control.kill"]
    assert status["kill_engaged"] is False


@pytest.mark.integration
async def test_status_against_a_real_stream(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import time

    from btcbot.devstack.infra import start_nats

    server = start_nats(tmp_path)
    env = {"NATS_URL": server.url}
    try:
        now = time.time_ns()
        await send_control(env, control_message("kill", "", "drill", "ops", now, cancel_resting=True))
        # A release dated an hour ahead: not trusted, the kill before it stands (as risk rebuilds it).
        future = control_message("release", "", "forged", "ops", now + 3600 * 10**9)
        assert is_future_dated(future.ts_ns, now, 5 * 10**9)
        await send_control(env, future)
        await send_control(env, control_message("mode", "OBSERVE_ONLY", "drill", "ops", now))
        assert await run_control(env, "status", "", None, None) == 0
        status = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        assert status["kill_engaged"] is True
        assert status["mode"] == "OBSERVE_ONLY"
        assert status["sequences"]["control.kill"] == 1
        assert await run_control(env, "kill", "", None, None) == 2
    finally:
        server.stop()


@pytest.mark.integration
async def test_control_commands_are_signed_with_the_operator_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import msgspec

    from btcbot.contracts.signing import verify
    from btcbot.devstack.infra import start_nats
    from btcbot.runtime.signing import RunKeys

    keys = RunKeys.generate()
    server = start_nats(tmp_path)
    try:
        env = {"NATS_URL": server.url, **keys.operator_env()}
        assert await run_control(env, "mode", "REDUCE_ONLY", "drill", "ops") == 0
        sent = msgspec.json.decode(capsys.readouterr().out.strip().splitlines()[-1], type=ModeChanged)
        assert verify(sent, keys.operator_signer().keys()) is None
        # Without the key: a mode change or a release is refused (risk would refuse it), a kill still goes out.
        bare = {"NATS_URL": server.url}
        assert await run_control(bare, "release", "", "drill", "ops") == 2
        assert "BTCBOT_OPERATOR_SIGNING_KEY_ID" in capsys.readouterr().out
        assert await run_control(bare, "kill", "", "drill", "ops") == 0
        out = capsys.readouterr().out
        assert "sent unsigned" in out
        assert msgspec.json.decode(out.strip().splitlines()[-1], type=KillSwitch).signature == ""
        # The key recorded in the run file (run.json of `btcbot up`) signs when the environment has none.
        run_file = tmp_path / "run.json"
        run_file.write_text(json.dumps({"operator_env": keys.operator_env()}))
        assert await run_control({**bare, "BTCBOT_RUN_FILE": str(run_file)}, "release", "", "drill", "ops") == 0
        released = msgspec.json.decode(capsys.readouterr().out.strip().splitlines()[-1], type=KillSwitch)
        assert verify(released, keys.operator_signer().keys()) is None
        # A bad key setting names the variable and sends nothing.
        broken = {**env, "BTCBOT_OPERATOR_SIGNING_KEY": "not base64!"}
        assert await run_control(broken, "mode", "NORMAL", "drill", "ops") == 2
        assert "BTCBOT_OPERATOR_SIGNING_KEY:" in capsys.readouterr().out
    finally:
        server.stop()
