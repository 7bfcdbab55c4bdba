"""Alarms of the automatic kill chain: raise and clear a condition once per transition.

A service that detects a condition which must stop new trading (a reconciliation mismatch that persists, an
exchange breaker open too long, repeated failed calls) publishes `Alarm(active=True)` on
`control.alarm.<source>.<kind>`, and `Alarm(active=False)` once the condition is gone; risk holds the account
in OBSERVE_ONLY while the last message of any alarm subject is active. `AlarmLatch` is the pure part: it says
which message a new observation calls for (none while the state is unchanged); `raise_or_clear` publishes and
logs it and only then moves the latch, so a failed publish is tried again at the next observation.

At start a latch `recall`s the last Alarm stored on its subject: an alarm an earlier process left active is
then cleared by the first evidence of health, and a clear state is not published again. A latch whose subject
cannot be read stays unknown, and its first observation publishes whatever it finds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import msgspec
from nats.js import JetStreamContext

from btcbot.contracts import ids, subjects
from btcbot.contracts.messages import Alarm
from btcbot.contracts.streams import CONTROL
from btcbot.runtime.bus import Publisher
from btcbot.runtime.inspect import last_message


class _Log(Protocol):
    def warning(self, event: str, **fields: Any) -> Any: ...

    def error(self, event: str, **fields: Any) -> Any: ...


@dataclass
class AlarmLatch:
    """One condition's last published state (None: nothing published since this process started)."""

    source: str
    kind: str
    active: bool | None = None

    @property
    def subject(self) -> str:
        """Where this alarm is published."""
        return subjects.alarm(self.source, self.kind)

    def check(self, active: bool, *, cause: str, now_ns: int, detail: str = "", symbol: str = "") -> Alarm | None:
        """The Alarm to publish for this observation, or None when it says nothing new.

        `cause` makes the id: the same transition observed again (a redelivery, a retry) has the same id, so
        JetStream drops the duplicate; a later transition has a new cause and so a new id.
        """
        if self.active is active:
            return None
        return Alarm(
            id=ids.alarm_id(self.source, self.kind, active, cause),
            ts_ns=now_ns,
            source=self.source,
            kind=self.kind,
            active=active,
            detail=detail,
            symbol=symbol,
        )

    def published(self, alarm: Alarm) -> None:
        """Record that `alarm` is out."""
        self.active = alarm.active


async def raise_or_clear(
    bus: Publisher,
    latch: AlarmLatch,
    log: _Log,
    active: bool,
    *,
    cause: str,
    now_ns: int,
    detail: str = "",
    symbol: str = "",
) -> Alarm | None:
    """Publish and log the transition `active` calls for (if any); returns what was published.

    A publish that fails raises (DependencyUnavailable / Exception) and leaves the latch where it was.
    """
    alarm = latch.check(active, cause=cause, now_ns=now_ns, detail=detail, symbol=symbol)
    if alarm is None:
        return None
    await bus.publish(latch.subject, alarm)
    latch.published(alarm)
    if alarm.active:
        log.error("alarm.raised", alert=True, source=alarm.source, kind=alarm.kind, detail=detail, id=alarm.id)
    else:
        log.warning("alarm.cleared", source=alarm.source, kind=alarm.kind, detail=detail, id=alarm.id)
    return alarm


async def recall(js: JetStreamContext, latch: AlarmLatch) -> bool | None:
    """Set the latch from the last Alarm stored on its subject (none stored: not active); returns the state."""
    try:
        stored = await last_message(js, CONTROL.name, latch.subject)
    except Exception:  # the stream cannot be read now: stay unknown, the first observation says it
        return latch.active
    if stored is None:
        latch.active = False
        return False
    try:
        alarm = msgspec.msgpack.decode(stored.data, type=Alarm)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return latch.active  # garbage on the subject: unknown, so the first observation overwrites it
    latch.active = alarm.active
    return alarm.active
