"""Execution's kill-chain alarms: an exchange breaker open too long, failed calls in a row; both clear."""

from __future__ import annotations

import contextlib
from typing import Any

import pytest
import structlog

from btcbot.btcturk.breaker import BreakerState, CircuitBreaker
from btcbot.btcturk.errors import BreakerOpen, NotFound, Rejected, Unavailable
from btcbot.contracts.messages import Alarm
from btcbot.execution.tasks import AlarmPublisher
from btcbot.execution.watch import BREAKER_OPEN, REPEATED_FAILURES, ExchangeWatch, WatchedExchange
from btcbot.runtime.memory import InMemoryBus

S = 10**9


class Clock:
    def __init__(self) -> None:
        self.ns = 1_000 * S

    def __call__(self) -> int:
        return self.ns


class Flaky:
    """An exchange whose next calls raise what `errors` holds (None: answer)."""

    def __init__(self) -> None:
        self.errors: list[Exception | None] = []

    async def open_orders(self, symbol: str) -> list[Any]:
        error = self.errors.pop(0) if self.errors else None
        if error is not None:
            raise error
        return []


def rig(failures_after: int = 3) -> tuple[Clock, ExchangeWatch, WatchedExchange, Flaky, AlarmPublisher, InMemoryBus]:
    clock, flaky, bus = Clock(), Flaky(), InMemoryBus()
    watch = ExchangeWatch(breaker_after_ns=60 * S, failures_after=failures_after)
    watched = WatchedExchange(flaky, watch, clock)  # type: ignore[arg-type]
    return clock, watch, watched, flaky, AlarmPublisher(watch, bus, clock, structlog.get_logger()), bus


def alarms(bus: InMemoryBus) -> list[tuple[str, str, bool]]:
    return [(s, a.kind, a.active) for s, a in bus.published if isinstance(a, Alarm)]


async def call(watched: WatchedExchange) -> None:
    with contextlib.suppress(Exception):  # the outcome is what the watch saw
        await watched.open_orders("BTCTRY")


async def test_repeated_failures_raise_once_and_clear_at_the_next_answer() -> None:
    _clock, _watch, watched, flaky, publisher, bus = rig(failures_after=3)
    await publisher.step()
    assert alarms(bus) == []  # no evidence either way yet
    flaky.errors = [Unavailable("503"), Unavailable("503"), BreakerOpen("private", retry_in=1.0)]
    for _ in range(3):
        await call(watched)
        await publisher.step()
    assert alarms(bus) == []  # two failures; a breaker refusal sent nothing, so it does not count
    flaky.errors = [Unavailable("503"), Unavailable("503")]
    for _ in range(2):
        await call(watched)
        await publisher.step()
    assert alarms(bus) == [("control.alarm.execution.repeated_failures", REPEATED_FAILURES, True)]
    flaky.errors = [Rejected("no", message_code="BALANCE_NOT_ENOUGH")]  # an answer, even if a refusal
    await call(watched)
    await publisher.step()
    await publisher.step()
    assert alarms(bus)[1:] == [
        ("control.alarm.execution.breaker_open", BREAKER_OPEN, False),  # first evidence of health clears
        ("control.alarm.execution.repeated_failures", REPEATED_FAILURES, False),
    ]
    [raised] = [a for _, a in bus.published if isinstance(a, Alarm) and a.active]
    assert raised.detail == "3 exchange calls failed in a row; last: Unavailable: 503"


async def test_a_breaker_open_longer_than_the_limit_raises_and_its_closing_clears() -> None:
    clock, watch, watched, _flaky, publisher, bus = rig(failures_after=0)
    breaker = CircuitBreaker(
        "private", failure_threshold=1, open_timeout=5.0,
        on_state_change=lambda g, _o, n: watch.breaker_changed(g, n == BreakerState.CLOSED, clock()),
    )  # fmt: skip
    breaker.before(0.0)
    breaker.failure(0.0)  # open
    clock.ns += 59 * S
    await publisher.step()
    assert alarms(bus) == []  # not yet the limit
    breaker.before(10.0)  # half-open probe ...
    breaker.failure(10.0)  # ... fails: still not closed since it first opened
    clock.ns += 2 * S
    await publisher.step()
    await publisher.step()
    assert alarms(bus) == [("control.alarm.execution.breaker_open", BREAKER_OPEN, True)]
    [raised] = [a for _, a in bus.published if isinstance(a, Alarm)]
    assert raised.detail == "breaker private open for 61s"
    breaker.before(20.0)
    breaker.success()
    await call(watched)
    await publisher.step()
    assert alarms(bus)[-1] == ("control.alarm.execution.breaker_open", BREAKER_OPEN, False)
    assert len(alarms(bus)) == 2


REFUSALS = [Rejected("no", message_code="X"), NotFound("gone", message_code="NO_ORDER_MATCHES_YOUR_REQUEST")]


@pytest.mark.parametrize("error", REFUSALS)
async def test_answers_that_refuse_are_successes(error: Exception) -> None:
    _clock, watch, watched, flaky, _publisher, _bus = rig()
    watch.failed(1, "earlier")
    flaky.errors = [error]
    await call(watched)
    assert watch.failures == 0
