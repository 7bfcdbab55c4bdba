"""The last trusted message per subject: future-dated last messages are skipped, garbage is returned as is."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from btcbot.contracts.codec import encode
from btcbot.contracts.messages import KillSwitch
from btcbot.contracts.streams import ALL_STREAMS
from btcbot.runtime.jetstream import NatsPublisher, connect, provision
from btcbot.runtime.latest import LastMessage, last_per_subject, pick_last_trusted, trusted

S = 10**9
SKEW = 5 * S


def kill(ts: int, engaged: bool = True) -> KillSwitch:
    return KillSwitch(id=f"k{ts}{engaged}", ts_ns=ts, engaged=engaged, reason="r", operator="o")


def test_trust_is_about_the_storage_time():
    assert trusted(LastMessage("control.kill", 1, encode(kill(10 * S)), 10 * S), SKEW)
    assert trusted(LastMessage("control.kill", 1, encode(kill(15 * S)), 10 * S), SKEW)
    assert not trusted(LastMessage("control.kill", 1, encode(kill(15 * S + 1)), 10 * S), SKEW)
    # Garbage has no date: not a date problem, the caller fails closed on it.
    assert trusted(LastMessage("control.kill", 1, b"\xc1garbage", 10 * S), SKEW)
    history = [
        LastMessage("control.kill", 1, encode(kill(1 * S)), 1 * S),
        LastMessage("control.kill", 3, encode(kill(3600 * S)), 3 * S),
        LastMessage("control.kill", 2, encode(kill(2 * S, False)), 2 * S),
    ]
    picked = pick_last_trusted(history, SKEW)
    assert picked is not None
    assert picked.sequence == 2
    assert pick_last_trusted(history[1:2], SKEW) is None


@pytest.mark.integration
async def test_last_per_subject_on_a_real_stream(tmp_path: Path) -> None:
    from btcbot.devstack.infra import start_nats

    server = start_nats(tmp_path)
    try:
        nc = await connect(server.url, "latest-test", 5, reconnect_forever=False)
    except BaseException:
        server.stop()
        raise
    try:
        js = nc.jetstream()
        await provision(js, ALL_STREAMS)
        publisher = NatsPublisher(js)
        now = time.time_ns()
        for n in range(3):
            await publisher.publish("control.kill", kill(now + n, engaged=n % 2 == 0))
        for n in range(2):
            await publisher.publish("control.kill", kill(now + 3600 * S + n, engaged=False))
        await js.publish("control.mode", b"\xc1garbage", headers={"Nats-Msg-Id": "garbage"})
        await publisher.publish("control.alarm.risk.repeated_failures", kill(now - 1))
        found = await last_per_subject(js, "CONTROL", ("control.kill", "control.mode", "control.alarm.>"), SKEW)
        assert sorted(found) == ["control.alarm.risk.repeated_failures", "control.kill", "control.mode"]
        assert found["control.kill"].sequence == 3
        assert found["control.mode"].data == b"\xc1garbage"
        assert abs(found["control.kill"].stored_ns - now) < 60 * S
        assert await last_per_subject(js, "CONTROL", ("control.auto",), SKEW) == {}
    finally:
        await nc.close()
        server.stop()
