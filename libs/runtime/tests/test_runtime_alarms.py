"""Alarm latches: one message per transition, deterministic ids, a failed publish is tried again."""

from __future__ import annotations

from typing import Any

import pytest

from btcbot.contracts.messages import Alarm, Message
from btcbot.runtime.alarms import AlarmLatch, raise_or_clear
from btcbot.runtime.errors import DependencyUnavailable
from btcbot.runtime.memory import InMemoryBus


class Log:
    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []

    def warning(self, event: str, **fields: Any) -> None:
        self.events.append((event, fields))

    def error(self, event: str, **fields: Any) -> None:
        self.events.append((event, fields))


def test_a_latch_speaks_only_on_transitions() -> None:
    latch = AlarmLatch("ledger", "reconcile_mismatch")
    assert latch.subject == "control.alarm.ledger.reconcile_mismatch"
    first = latch.check(False, cause="r1", now_ns=1)
    assert first is not None  # unknown -> clear: the first evidence of health clears a stale alarm
    latch.published(first)
    assert latch.check(False, cause="r2", now_ns=2) is None
    raised = latch.check(True, cause="r3", now_ns=3, detail="2 differences", symbol="BTCTRY")
    assert raised == Alarm(id="alarm:ledger:reconcile_mismatch:on:r3", ts_ns=3, source="ledger",
                           kind="reconcile_mismatch", active=True, detail="2 differences", symbol="BTCTRY")  # fmt: skip
    assert latch.check(True, cause="r3", now_ns=4) == Alarm(
        id="alarm:ledger:reconcile_mismatch:on:r3", ts_ns=4, source="ledger", kind="reconcile_mismatch", active=True
    )  # not published yet: asked again, the same id


class FailingBus(InMemoryBus):
    fail = True

    async def publish(self, subject: str, message: Message) -> None:
        if self.fail:
            raise DependencyUnavailable("nats down")
        await super().publish(subject, message)


async def test_raise_or_clear_publishes_logs_and_retries_after_a_failed_publish() -> None:
    bus, log = FailingBus(), Log()
    latch = AlarmLatch("execution", "breaker_open")
    with pytest.raises(DependencyUnavailable):
        await raise_or_clear(bus, latch, log, True, cause="c1", now_ns=1)
    assert latch.active is None
    bus.fail = False
    sent = await raise_or_clear(bus, latch, log, True, cause="c1", now_ns=2)
    assert sent is not None
    assert await raise_or_clear(bus, latch, log, True, cause="c1", now_ns=3) is None
    await raise_or_clear(bus, latch, log, False, cause="ok", now_ns=4)
    assert [(s, m.active) for s, m in bus.published if isinstance(m, Alarm)] == [
        ("control.alarm.execution.breaker_open", True),
        ("control.alarm.execution.breaker_open", False),
    ]
    assert [e for e, _ in log.events] == ["alarm.raised", "alarm.cleared"]


@pytest.mark.integration
async def test_recall_reads_the_stored_state_of_an_alarm(nats_url: str) -> None:
    import secrets

    from btcbot.contracts.streams import ALL_STREAMS
    from btcbot.runtime.alarms import recall
    from btcbot.runtime.jetstream import NatsPublisher, connect, provision

    nc = await connect(nats_url, "alarm-test", 5, reconnect_forever=False)
    try:
        js = nc.jetstream()
        await provision(js, ALL_STREAMS)
        kind = f"k{secrets.token_hex(3)}"
        latch = AlarmLatch("test", kind)
        assert await recall(js, latch) is False  # nothing stored: nothing to clear
        assert latch.check(False, cause="x", now_ns=1) is None
        raised = latch.check(True, cause="c", now_ns=1)
        assert raised is not None
        await NatsPublisher(js).publish(latch.subject, raised)
        fresh = AlarmLatch("test", kind)  # a restarted process
        assert await recall(js, fresh) is True
        assert fresh.check(False, cause="ok", now_ns=2) is not None  # its first evidence of health clears it
        await js.publish(latch.subject, b"garbage")
        unknown = AlarmLatch("test", kind)
        assert await recall(js, unknown) is None
    finally:
        await nc.close()
