"""How the exchange is doing, seen from our calls: breakers open too long, failed calls in a row (no I/O).

Two alarms of the kill chain come from here (see `btcbot.runtime.alarms`):
- `execution.breaker_open`: an endpoint group's circuit breaker has not been closed for `breaker_after_ns`
  (it left CLOSED and half-open probes kept failing); clears once every breaker is closed again;
- `execution.repeated_failures`: `failures_after` exchange calls in a row failed (network, 5xx, 429, 401,
  unreadable answers, lost answers); clears at the next call the exchange answers.
A refusal (a business reject, an unknown order) is an answer, so it counts as a success here; a call the
breaker refused never reached the exchange and counts as neither.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

from btcbot.btcturk.errors import BreakerOpen, BtcTurkError, NotFound, Rejected
from btcbot.execution.exchange import Exchange
from btcbot.execution.orders import Fill, Order
from btcbot.execution.reconcile import ExchangeOrder

T = TypeVar("T")

BREAKER_OPEN = "breaker_open"
REPEATED_FAILURES = "repeated_failures"


@dataclass(frozen=True)
class Condition:
    """One alarm condition as observed now: whether it holds, what caused this state, and words for humans."""

    kind: str
    active: bool
    cause: str
    detail: str


@dataclass
class ExchangeWatch:
    """Breaker states and call outcomes in, alarm conditions out; time is passed in (ns)."""

    breaker_after_ns: int
    failures_after: int  # 0: the repeated-failures alarm is off
    open_since: dict[str, int] = field(default_factory=dict)  # group -> when it left CLOSED
    failures: int = 0
    first_failure_ns: int = 0
    last_success_ns: int = 0
    last_error: str = ""

    def breaker_changed(self, group: str, closed: bool, now_ns: int) -> None:
        """A breaker moved: closed, or open / half-open (which keeps the time it first left CLOSED)."""
        if closed:
            self.open_since.pop(group, None)
        else:
            self.open_since.setdefault(group, now_ns)

    def succeeded(self, now_ns: int) -> None:
        """The exchange answered a call."""
        self.failures = 0
        self.last_success_ns = now_ns

    def failed(self, now_ns: int, error: str) -> None:
        """A call reached for the exchange and got no usable answer."""
        if self.failures == 0:
            self.first_failure_ns = now_ns
        self.failures += 1
        self.last_error = error

    def conditions(self, now_ns: int) -> list[Condition]:
        """Each alarm's state now; a condition with no evidence either way yet is left out."""
        out: list[Condition] = []
        too_long = {g: s for g, s in self.open_since.items() if now_ns - s >= self.breaker_after_ns}
        if too_long:
            group, since = min(too_long.items(), key=lambda item: item[1])
            secs = (now_ns - since) / 1e9
            out.append(Condition(BREAKER_OPEN, True, f"{group}:{since}", f"breaker {group} open for {secs:.0f}s"))
        elif not self.open_since and self.last_success_ns:
            out.append(Condition(BREAKER_OPEN, False, f"ok:{self.last_success_ns}", "every breaker closed"))
        if self.failures_after:
            if self.failures >= self.failures_after:
                detail = f"{self.failures} exchange calls failed in a row; last: {self.last_error}"
                out.append(Condition(REPEATED_FAILURES, True, str(self.first_failure_ns), detail))
            elif self.failures == 0 and self.last_success_ns:
                out.append(Condition(REPEATED_FAILURES, False, f"ok:{self.last_success_ns}", "the exchange answers"))
        return out


class WatchedExchange:
    """An :class:`Exchange` that reports every call's outcome to an :class:`ExchangeWatch`."""

    def __init__(self, inner: Exchange, watch: ExchangeWatch, clock: Callable[[], int]) -> None:
        self._inner = inner
        self._watch = watch
        self._clock = clock

    async def _observe(self, call: Awaitable[T]) -> T:
        try:
            result = await call
        except (Rejected, NotFound):
            self._watch.succeeded(self._clock())  # the exchange answered: no
            raise
        except BreakerOpen:
            raise  # nothing was sent
        except BtcTurkError as exc:
            self._watch.failed(self._clock(), f"{type(exc).__name__}: {exc}")
            raise
        self._watch.succeeded(self._clock())
        return result

    async def submit(self, order: Order) -> str:
        """See :class:`Exchange`."""
        return await self._observe(self._inner.submit(order))

    async def cancel(self, exchange_order_id: str) -> None:
        """See :class:`Exchange`."""
        await self._observe(self._inner.cancel(exchange_order_id))

    async def get(self, exchange_order_id: str) -> ExchangeOrder | None:
        """See :class:`Exchange`."""
        return await self._observe(self._inner.get(exchange_order_id))

    async def find(self, symbol: str, client_order_id: str) -> ExchangeOrder | None:
        """See :class:`Exchange`."""
        return await self._observe(self._inner.find(symbol, client_order_id))

    async def open_orders(self, symbol: str) -> list[ExchangeOrder]:
        """See :class:`Exchange`."""
        return await self._observe(self._inner.open_orders(symbol))

    async def trades(self, symbol: str, since_ms: int) -> list[Fill]:
        """See :class:`Exchange`."""
        return await self._observe(self._inner.trades(symbol, since_ms))

    async def order_trades(self, exchange_order_id: str) -> list[Fill]:
        """See :class:`Exchange`."""
        return await self._observe(self._inner.order_trades(exchange_order_id))
