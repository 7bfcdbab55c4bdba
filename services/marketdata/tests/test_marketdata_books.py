from dataclasses import dataclass, field
from decimal import Decimal

from btcbot.contracts import ids
from btcbot.contracts.messages import Level
from btcbot.marketdata.books import to_snapshot, top_levels

D = Decimal
MS = 1_000_000


@dataclass(frozen=True)
class Book:
    timestamp_ms: int
    bids: tuple[tuple[Decimal, Decimal], ...] = field(default=())
    asks: tuple[tuple[Decimal, Decimal], ...] = field(default=())


def test_top_levels_keeps_depth_and_drops_empty_levels():
    levels = ((D("100"), D("1")), (D("99"), D("0")), (D("98"), D("2")), (D("97"), D("3")))
    assert top_levels(levels, 2) == (Level(D("100"), D("1")), Level(D("98"), D("2")))


def test_snapshot_uses_exchange_ms_as_sequence_and_deterministic_id():
    book = Book(1_700_000_000_123, bids=((D("100"), D("1")),), asks=((D("101"), D("2")),))
    received = 1_700_000_000_123 * MS + 200 * MS
    snap = to_snapshot("BTCTRY", book, depth=10, received_ts_ns=received, stale_after_ns=5_000 * MS)
    assert snap.sequence == 1_700_000_000_123
    assert snap.exchange_ts_ns == 1_700_000_000_123 * MS
    assert snap.id == ids.book_id("BTCTRY", 1_700_000_000_123 * MS, 1_700_000_000_123)
    assert snap.received_ts_ns == received
    assert snap.bids == (Level(D("100"), D("1")),)
    assert snap.asks == (Level(D("101"), D("2")),)
    assert snap.stale is False
    again = to_snapshot("BTCTRY", book, depth=10, received_ts_ns=received + 5, stale_after_ns=5_000 * MS)
    assert again.id == snap.id


def test_snapshot_is_stale_when_exchange_time_lags_receipt():
    book = Book(1_000)
    fresh = to_snapshot("BTCTRY", book, depth=5, received_ts_ns=(1_000 + 5_000) * MS, stale_after_ns=5_000 * MS)
    stale = to_snapshot("BTCTRY", book, depth=5, received_ts_ns=(1_000 + 5_001) * MS, stale_after_ns=5_000 * MS)
    assert fresh.stale is False
    assert stale.stale is True
