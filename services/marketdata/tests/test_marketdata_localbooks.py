from decimal import Decimal

from btcbot.btcturk.wsmodels import BookChange, BookDiff, BookSnapshot, LevelChange
from btcbot.marketdata.localbooks import DiffOutcome, LocalBooks

D = Decimal


def snap(cs, pair="BTCTRY", channel="obdiff"):
    return BookSnapshot(pair=pair, cs=cs, bids=((D(100), D(1)),), asks=((D(101), D(1)),), channel=channel)


def diff(cs, pair="BTCTRY", bid="99"):
    return BookDiff(pair=pair, cs=cs, bids=(LevelChange(D(bid), D(2), BookChange.NEW),), asks=())


def test_nothing_is_synced_before_a_connection_and_its_snapshot():
    books = LocalBooks(["BTCTRY"])
    assert not books.on_snapshot(snap(10))  # socket not up: a frame from nowhere
    books.on_connected(now_ns=1)
    assert not books.synced("BTCTRY")
    assert books.on_diff(diff(11), 2) is DiffOutcome.WAITING
    assert books.on_snapshot(snap(10))
    assert books.synced("BTCTRY")
    assert books.on_diff(diff(10), 3) is DiffOutcome.STALE
    assert books.on_diff(diff(11), 3) is DiffOutcome.APPLIED
    assert books.book("BTCTRY").bids() == ((D(100), D(1)), (D(99), D(2)))


def test_a_gap_drops_the_book_once_and_ignores_the_old_subscriptions_diffs():
    books = LocalBooks(["BTCTRY"])
    books.on_connected(0)
    books.on_snapshot(snap(10))
    assert books.on_diff(diff(12), 5) is DiffOutcome.GAP
    assert not books.synced("BTCTRY")
    assert (books.gaps, books.resyncs) == (1, 1)
    # Frames of the old subscription still in flight do not cause a second resubscribe.
    assert books.on_diff(diff(13), 6) is DiffOutcome.WAITING
    assert books.gaps == 1
    assert books.on_snapshot(snap(2_000_000))
    assert books.on_diff(diff(2_000_001), 7) is DiffOutcome.APPLIED


def test_orderbook_channel_snapshots_and_foreign_pairs_are_ignored():
    books = LocalBooks(["BTCTRY"])
    books.on_connected(0)
    assert not books.on_snapshot(snap(10, channel="orderbook"))
    assert not books.on_snapshot(snap(10, pair="ETHTRY"))
    assert books.on_diff(diff(11, pair="ETHTRY"), 1) is DiffOutcome.IGNORED


def test_a_drop_invalidates_every_book_until_the_next_connection():
    books = LocalBooks(["BTCTRY", "ETHTRY"])
    books.on_connected(0)
    books.on_snapshot(snap(10))
    books.on_snapshot(snap(20, pair="ETHTRY"))
    books.on_disconnected()
    assert not books.synced("BTCTRY")
    assert not books.synced("ETHTRY")
    assert books.overdue(now_ns=10**12, timeout_ns=1) == []  # nothing to ask for while down
    books.on_connected(100)
    assert books.overdue(now_ns=150, timeout_ns=100) == []
    assert books.overdue(now_ns=201, timeout_ns=100) == ["BTCTRY", "ETHTRY"]
    books.on_snapshot(snap(30))
    assert books.overdue(now_ns=201, timeout_ns=100) == ["ETHTRY"]
    books.resubscribing("ETHTRY", 201)
    assert books.overdue(now_ns=250, timeout_ns=100) == []


async def test_an_unchanged_book_is_republished_once_per_heartbeat():
    from btcbot.contracts.messages import BookSnapshot as Published
    from btcbot.marketdata.freshness import Freshness
    from btcbot.marketdata.handlers import WsBookPublisher
    from btcbot.marketdata.sequence import Sequencer
    from btcbot.runtime.memory import InMemoryBus

    s = 1_000_000_000
    books = LocalBooks(["BTCTRY"])
    books.on_connected(now_ns=0)
    books.on_snapshot(snap(10))
    bus = InMemoryBus()
    publisher = WsBookPublisher(
        bus, books, Sequencer(), depth=5, stale_after_ns=5 * s, freshness=Freshness(["BTCTRY"], 5 * s), heartbeat_ns=s
    )
    await publisher.snapshot("BTCTRY", 10, received_ts_ns=10 * s)
    # Frames that leave the top unchanged: nothing new until a heartbeat is due.
    assert await publisher.diff("BTCTRY", 11, received_ts_ns=10 * s + s // 2) is None
    again = await publisher.diff("BTCTRY", 12, received_ts_ns=11 * s)
    assert again is not None
    published = bus.of_type(Published)
    assert len(published) == 2
    assert published[1].sequence > published[0].sequence
    assert published[1].id != published[0].id


def test_only_wanted_symbols_are_kept_and_awaited():
    books = LocalBooks(["BTCTRY", "ETHTRY"], wanted=[])
    books.on_connected(0)
    assert books.overdue(10, 5) == []  # nothing subscribed, nothing overdue
    assert not books.on_snapshot(snap(10))
    added, dropped = books.want(["BTCTRY"], 20)
    assert (added, dropped) == ({"BTCTRY"}, set())
    assert books.overdue(30, 5) == ["BTCTRY"]
    assert books.on_snapshot(snap(10))
    assert books.synced("BTCTRY")
    added, dropped = books.want(["ETHTRY", "XRPTRY"], 40)  # a symbol not kept is ignored
    assert (added, dropped) == ({"ETHTRY"}, {"BTCTRY"})
    assert not books.synced("BTCTRY")
    assert books.overdue(50, 5) == ["ETHTRY"]
