"""Circuit breaker per endpoint group (closed / open / half-open), time passed in by the caller.

Closed counts consecutive failures; at ``failure_threshold`` it opens. Open refuses every call
with :class:`BreakerOpen` (nothing is sent) until ``open_timeout`` has passed, then lets exactly
one probe through (half-open). The probe's success closes the breaker, its failure reopens it.
State is exported as the OpenTelemetry gauge ``btcbot_breaker_state`` (0 closed, 1 half-open,
2 open) with the attribute ``group`` (docs/metrics.md); 429 answers count in ``btcbot_http_429_total``.
"""

from __future__ import annotations

import enum
import weakref
from collections.abc import Callable, Iterable

from opentelemetry import metrics

from btcbot.btcturk.errors import BreakerOpen


class BreakerState(enum.IntEnum):
    """Breaker state; the value is what the metric reports."""

    CLOSED = 0
    HALF_OPEN = 1
    OPEN = 2


StateListener = Callable[[str, BreakerState, BreakerState], None]

_live: weakref.WeakSet[CircuitBreaker] = weakref.WeakSet()


def _observe(_options: metrics.CallbackOptions) -> Iterable[metrics.Observation]:
    return [metrics.Observation(int(b.state), {"group": b.name}) for b in list(_live)]


_meter = metrics.get_meter("btcbot.btcturk")
_meter.create_observable_gauge(
    "btcbot_breaker_state",
    callbacks=[_observe],
    description="Circuit breaker state per endpoint group: 0 closed, 1 half-open, 2 open",
)
# 429 answers per endpoint group (counted where the requester classifies them).
HTTP_429 = _meter.create_counter("btcbot_http_429_total", description="429 answers from the exchange")


class CircuitBreaker:
    """One breaker; call :meth:`before` then exactly one of success / failure / abandon."""

    def __init__(
        self,
        name: str,
        *,
        failure_threshold: int = 5,
        open_timeout: float = 30.0,
        on_state_change: StateListener | None = None,
    ) -> None:
        if failure_threshold < 1 or open_timeout <= 0:
            raise ValueError("failure_threshold >= 1 and open_timeout > 0 required")
        self.name = name
        self.failure_threshold = failure_threshold
        self.open_timeout = open_timeout
        self.on_state_change = on_state_change
        self._state = BreakerState.CLOSED
        self._failures = 0
        self._opened_at = 0.0
        self._probe_in_flight = False
        _live.add(self)

    @property
    def state(self) -> BreakerState:
        """Current state (an open breaker past its timeout still reads OPEN until probed)."""
        return self._state

    def before(self, now: float) -> None:
        """Admit a call or raise :class:`BreakerOpen`; a half-open breaker admits one probe."""
        if self._state is BreakerState.OPEN:
            remaining = self._opened_at + self.open_timeout - now
            if remaining > 0:
                raise BreakerOpen(self.name, retry_in=remaining)
            self._set(BreakerState.HALF_OPEN)
        if self._state is BreakerState.HALF_OPEN:
            if self._probe_in_flight:
                raise BreakerOpen(self.name, retry_in=0.0)
            self._probe_in_flight = True

    def success(self) -> None:
        """The call got an answer from a healthy exchange (business rejections count here)."""
        self._probe_in_flight = False
        self._failures = 0
        if self._state is not BreakerState.CLOSED:
            self._set(BreakerState.CLOSED)

    def failure(self, now: float) -> None:
        """The call failed in a way that suggests the exchange or the path to it is unhealthy."""
        self._probe_in_flight = False
        self._failures += 1
        if self._state is BreakerState.HALF_OPEN or self._failures >= self.failure_threshold:
            self._opened_at = now
            if self._state is not BreakerState.OPEN:
                self._set(BreakerState.OPEN)

    def abandon(self) -> None:
        """The call ended without a verdict (cancelled); free the probe slot."""
        self._probe_in_flight = False

    def _set(self, new: BreakerState) -> None:
        old, self._state = self._state, new
        if new is BreakerState.CLOSED:
            self._failures = 0
        if self.on_state_change is not None:
            self.on_state_change(self.name, old, new)
