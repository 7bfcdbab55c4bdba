"""Local L2 book from a 431 snapshot and 432 diffs, with change-set gap detection."""

from decimal import Decimal

import pytest

from btcbot.btcturk.book import BookGapError, LocalBook
from btcbot.btcturk.wsmodels import BookChange, BookDiff, BookSnapshot, LevelChange

D = Decimal


def snapshot(cs=10):
    return BookSnapshot(
        pair="BTCTRY",
        cs=cs,
        bids=((D(100), D(1)), (D(99), D(2)), (D(98), D(3))),
        asks=((D(101), D(1)), (D(102), D(2))),
    )


def diff(cs, bids=(), asks=()):
    return BookDiff(pair="BTCTRY", cs=cs, bids=tuple(bids), asks=tuple(asks))


def ch(price, amount, change):
    return LevelChange(price=D(price), amount=D(amount), change=change)


def test_snapshot_then_diffs():
    book = LocalBook("BTCTRY")
    assert not book.synced
    book.apply_snapshot(snapshot())
    assert book.best_bid() == (D(100), D(1))
    assert book.best_ask() == (D(101), D(1))
    assert book.apply_diff(diff(9)) is False  # stale, dropped
    assert book.apply_diff(diff(10)) is False
    assert book.apply_diff(
        diff(
            11,
            bids=[ch(100, "1.5", BookChange.UPDATE), ch("100.5", 4, BookChange.NEW), ch(98, 0, BookChange.DELETE)],
            asks=[ch(101, 0, BookChange.DELETE)],
        )
    )
    assert book.cs == 11
    assert book.bids() == ((D("100.5"), D(4)), (D(100), D("1.5")), (D(99), D(2)))
    assert book.asks(1) == ((D(102), D(2)),)
    assert not book.crossed


def test_gap_invalidates_and_raises():
    book = LocalBook("BTCTRY")
    book.apply_snapshot(snapshot())
    book.apply_diff(diff(11))
    with pytest.raises(BookGapError) as info:
        book.apply_diff(diff(13))
    assert (info.value.expected, info.value.got) == (12, 13)
    assert not book.synced
    assert book.bids() == ()
    with pytest.raises(BookGapError):
        book.apply_diff(diff(14))
    book.apply_snapshot(snapshot(cs=20))
    assert book.apply_diff(diff(21))


def test_diff_before_snapshot_is_a_gap():
    with pytest.raises(BookGapError):
        LocalBook("BTCTRY").apply_diff(diff(1))


def test_crossed_detection():
    book = LocalBook("BTCTRY")
    book.apply_snapshot(snapshot())
    book.apply_diff(diff(11, bids=[ch(101, 1, BookChange.NEW)]))
    assert book.crossed


def test_zero_amount_levels_in_snapshot_are_ignored():
    book = LocalBook("X")
    book.apply_snapshot(BookSnapshot(pair="X", cs=1, bids=((D(1), D(0)),), asks=()))
    assert book.best_bid() is None
