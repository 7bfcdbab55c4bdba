"""Turn exchange order books into BookSnapshot messages: depth, sequence, staleness, de-duplication.

The REST book carries no sequence number, so its exchange timestamp in milliseconds stands in for one: it is
monotonic for one symbol and the same for every replica that fetches the same book, which keeps the
snapshot id deterministic.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import Protocol

from btcbot.contracts import ids
from btcbot.contracts.messages import BookSnapshot, Level

_NS_PER_MS = 1_000_000


class RawBook(Protocol):
    """An exchange order book as the REST client returns it (bids descending, asks ascending)."""

    @property
    def timestamp_ms(self) -> int:
        """Exchange time of the book in milliseconds."""
        ...

    @property
    def bids(self) -> Sequence[tuple[Decimal, Decimal]]:
        """(price, quantity) levels, best first."""
        ...

    @property
    def asks(self) -> Sequence[tuple[Decimal, Decimal]]:
        """(price, quantity) levels, best first."""
        ...


def top_levels(levels: Sequence[tuple[Decimal, Decimal]], depth: int) -> tuple[Level, ...]:
    """The first `depth` levels with a positive quantity."""
    out: list[Level] = []
    for price, quantity in levels:
        if len(out) >= depth:
            break
        if quantity > 0 and price > 0:
            out.append(Level(price=price, quantity=quantity))
    return tuple(out)


def to_snapshot(
    symbol: str,
    book: RawBook,
    *,
    depth: int,
    received_ts_ns: int,
    stale_after_ns: int,
    source: str = "rest",
) -> BookSnapshot:
    """Build the snapshot of one REST book; `stale` when the exchange time lags receipt by too much."""
    exchange_ts_ns = book.timestamp_ms * _NS_PER_MS
    sequence = book.timestamp_ms
    return BookSnapshot(
        id=ids.book_id(symbol, exchange_ts_ns, sequence),
        ts_ns=received_ts_ns,
        symbol=symbol,
        sequence=sequence,
        bids=top_levels(book.bids, depth),
        asks=top_levels(book.asks, depth),
        exchange_ts_ns=exchange_ts_ns,
        received_ts_ns=received_ts_ns,
        source=source,
        stale=received_ts_ns - exchange_ts_ns > stale_after_ns,
    )


class SequenceGate:
    """Lets through only books newer than the last one published for their symbol."""

    def __init__(self) -> None:
        self._last: dict[str, int] = {}

    def is_new(self, symbol: str, sequence: int) -> bool:
        """True if `sequence` is beyond the last one accepted for `symbol`."""
        last = self._last.get(symbol)
        return last is None or sequence > last

    def accept(self, symbol: str, sequence: int) -> None:
        """Remember `sequence` as published (call after the publish succeeded)."""
        self._last[symbol] = max(sequence, self._last.get(symbol, sequence))

    def last(self, symbol: str) -> int | None:
        """The last sequence published for `symbol`, if any."""
        return self._last.get(symbol)
