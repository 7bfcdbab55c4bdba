"""Turn exchange order books into BookSnapshot messages: depth, sequence, staleness.

A REST book carries no sequence number, so its exchange timestamp in milliseconds stands in for one (see
`sequence.py` for how REST and WebSocket sequences share one increasing series per symbol).
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


def snapshot_of(
    symbol: str,
    *,
    sequence: int,
    bids: Sequence[tuple[Decimal, Decimal]],
    asks: Sequence[tuple[Decimal, Decimal]],
    depth: int,
    exchange_ts_ns: int,
    received_ts_ns: int,
    stale_after_ns: int,
    source: str,
) -> BookSnapshot:
    """A BookSnapshot of the top `depth` levels; `stale` when the exchange time lags receipt by too much."""
    return BookSnapshot(
        id=ids.book_id(symbol, exchange_ts_ns, sequence),
        ts_ns=received_ts_ns,
        symbol=symbol,
        sequence=sequence,
        bids=top_levels(bids, depth),
        asks=top_levels(asks, depth),
        exchange_ts_ns=exchange_ts_ns,
        received_ts_ns=received_ts_ns,
        source=source,
        stale=received_ts_ns - exchange_ts_ns > stale_after_ns,
    )


def to_snapshot(
    symbol: str,
    book: RawBook,
    *,
    depth: int,
    received_ts_ns: int,
    stale_after_ns: int,
    sequence: int | None = None,
    source: str = "rest",
) -> BookSnapshot:
    """The snapshot of one REST book; its sequence defaults to the exchange time in ms."""
    return snapshot_of(
        symbol,
        sequence=book.timestamp_ms if sequence is None else sequence,
        bids=book.bids,
        asks=book.asks,
        depth=depth,
        exchange_ts_ns=book.timestamp_ms * _NS_PER_MS,
        received_ts_ns=received_ts_ns,
        stale_after_ns=stale_after_ns,
        source=source,
    )
