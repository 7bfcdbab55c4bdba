"""Readiness of the market data feed: every symbol polled successfully within the stale threshold."""

from __future__ import annotations

from collections.abc import Iterable


class Freshness:
    """Last successful poll time per symbol; fresh only when every symbol is recent enough."""

    def __init__(self, symbols: Iterable[str], max_age_ns: int) -> None:
        self._symbols = tuple(symbols)
        self._max_age_ns = max_age_ns
        self._last_ok: dict[str, int] = {}

    def record(self, symbol: str, now_ns: int) -> None:
        """A poll of `symbol` succeeded at `now_ns`."""
        self._last_ok[symbol] = max(now_ns, self._last_ok.get(symbol, now_ns))

    def last_ok(self, symbol: str) -> int | None:
        """When `symbol` was last polled successfully, if ever."""
        return self._last_ok.get(symbol)

    def stale_symbols(self, now_ns: int) -> tuple[str, ...]:
        """Symbols never polled, or not polled successfully within the threshold."""
        return tuple(
            s for s in self._symbols if (last := self._last_ok.get(s)) is None or now_ns - last > self._max_age_ns
        )

    def fresh(self, now_ns: int) -> bool:
        """True when no symbol is stale."""
        return not self.stale_symbols(now_ns)
