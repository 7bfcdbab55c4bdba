"""Published book sequences: strictly increasing per symbol, whichever source the book came from.

Two sources feed one symbol's `md.book` subject. REST books carry no sequence, so their exchange time in
ms stands in for one. WebSocket books carry the obdiff change-set (CS), but a resubscribe or reconnect
starts a new CS counter that may be lower than the last. Each WebSocket subscription is therefore an
epoch: its snapshot is published at the first free sequence not below the receive time in ms, and its
diffs follow as base + (CS - snapshot CS). Sequences then stay in step with time across sources,
resubscribes and restarts, and a CS gap in one epoch shows as a gap in the published sequence.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Epoch:
    """One WebSocket subscription's mapping: published = base + (cs - snapshot_cs)."""

    snapshot_cs: int
    base: int


class Sequencer:
    """Hands out book sequences per symbol; `commit` records the ones actually published."""

    def __init__(self) -> None:
        self._last: dict[str, int] = {}
        self._epochs: dict[str, Epoch] = {}
        self._rest_ts: dict[str, int] = {}

    def last(self, symbol: str) -> int | None:
        """The last sequence published for `symbol`, if any."""
        return self._last.get(symbol)

    def _next(self, symbol: str, wanted: int) -> int:
        last = self._last.get(symbol)
        return wanted if last is None else max(last + 1, wanted)

    def ws_snapshot(self, symbol: str, cs: int, received_ms: int) -> int:
        """Start a new epoch at a 431 snapshot with change-set `cs`; its published sequence."""
        base = self._next(symbol, received_ms)
        self._epochs[symbol] = Epoch(cs, base)
        return base

    def ws_diff(self, symbol: str, cs: int) -> int:
        """The sequence of the book after applying change-set `cs` of the current epoch."""
        epoch = self._epochs.get(symbol)
        if epoch is None:
            raise LookupError(f"{symbol}: no WebSocket snapshot yet")
        return self._next(symbol, epoch.base + cs - epoch.snapshot_cs)

    def rest(self, symbol: str, timestamp_ms: int) -> int | None:
        """The sequence of a REST book stamped `timestamp_ms`; None if no newer than the last REST book."""
        seen = self._rest_ts.get(symbol)
        if seen is not None and timestamp_ms <= seen:
            return None
        return self._next(symbol, timestamp_ms)

    def commit(self, symbol: str, sequence: int, *, rest_ts_ms: int | None = None) -> None:
        """Record `sequence` as published (call after the publish succeeded)."""
        self._last[symbol] = max(sequence, self._last.get(symbol, sequence))
        if rest_ts_ms is not None:
            self._rest_ts[symbol] = max(rest_ts_ms, self._rest_ts.get(symbol, rest_ts_ms))
