"""Circuit breaker transitions, probe admission and the state callback."""

import pytest

from btcbot.btcturk.breaker import BreakerState, CircuitBreaker
from btcbot.btcturk.errors import BreakerOpen


def make(changes):
    return CircuitBreaker(
        "submit",
        failure_threshold=3,
        open_timeout=10.0,
        on_state_change=lambda name, old, new: changes.append((name, old, new)),
    )


def test_opens_after_threshold_consecutive_failures():
    changes = []
    b = make(changes)
    for t in range(2):
        b.before(t)
        b.failure(t)
    b.before(2)
    b.success()  # resets the streak
    for t in range(3, 5):
        b.before(t)
        b.failure(t)
    assert b.state is BreakerState.CLOSED
    b.before(5)
    b.failure(5)
    assert b.state is BreakerState.OPEN
    assert changes == [("submit", BreakerState.CLOSED, BreakerState.OPEN)]
    with pytest.raises(BreakerOpen) as info:
        b.before(14.0)
    assert info.value.retryable
    assert info.value.retry_in == pytest.approx(1.0)


def test_half_open_admits_one_probe_then_closes_on_success():
    changes = []
    b = make(changes)
    for t in range(3):
        b.before(t)
        b.failure(t)
    b.before(12.5)  # probe admitted
    assert b.state is BreakerState.HALF_OPEN
    with pytest.raises(BreakerOpen):
        b.before(12.6)
    b.success()
    assert b.state is BreakerState.CLOSED
    b.before(12.7)
    assert [new for _, _, new in changes] == [BreakerState.OPEN, BreakerState.HALF_OPEN, BreakerState.CLOSED]


def test_failed_probe_reopens_for_a_full_timeout():
    b = make([])
    for t in range(3):
        b.before(t)
        b.failure(t)
    b.before(20.0)
    b.failure(20.0)
    assert b.state is BreakerState.OPEN
    with pytest.raises(BreakerOpen):
        b.before(29.0)
    b.before(30.0)
    assert b.state is BreakerState.HALF_OPEN


def test_abandoned_probe_frees_the_slot():
    b = make([])
    for t in range(3):
        b.before(t)
        b.failure(t)
    b.before(15.0)
    b.abandon()
    b.before(15.1)
    assert b.state is BreakerState.HALF_OPEN


def test_rejects_bad_config():
    with pytest.raises(ValueError, match="failure_threshold"):
        CircuitBreaker("x", failure_threshold=0)


def test_state_exported_as_otel_gauge():
    from opentelemetry.metrics import CallbackOptions

    from btcbot.btcturk import breaker as module

    b = CircuitBreaker("metric-probe", failure_threshold=1)
    b.before(0)
    b.failure(0)
    observations = {o.attributes["group"]: o.value for o in module._observe(CallbackOptions())}
    assert observations["metric-probe"] == int(BreakerState.OPEN)
