"""Local L2 books of every symbol kept from one obdiff WebSocket feed, and when each needs a resync.

The rules (btcturk-api.md 4.2): the 431 snapshot of the same obdiff subscription starts a book; diffs with
CS <= the book's are stale and dropped; any other jump is a gap, answered by a resubscribe and a fresh
snapshot. A lost socket invalidates every book; the client re-sends the subscriptions on reconnect.
Diffs arriving between a resubscribe and its snapshot belong to the old subscription and are ignored,
so one gap costs one resubscribe. A snapshot that does not come within the resync timeout is asked for
again.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable

from btcbot.btcturk.book import BookGapError, LocalBook
from btcbot.btcturk.wsmodels import BookDiff, BookSnapshot


class DiffOutcome(enum.Enum):
    """What a 432 did to its book."""

    APPLIED = "applied"
    STALE = "stale"  # CS at or below the book's: an old frame, dropped
    WAITING = "waiting"  # no book yet (awaiting a snapshot): dropped
    GAP = "gap"  # a change-set is missing: resubscribe
    IGNORED = "ignored"  # not one of our symbols


class LocalBooks:
    """One LocalBook per symbol plus its sync state; every method is given the time, none reads a clock."""

    def __init__(self, symbols: Iterable[str], wanted: Iterable[str] | None = None) -> None:
        self._books = {symbol: LocalBook(symbol) for symbol in symbols}
        # The symbols subscribed (a dynamic universe subscribes to its selection only); by default all.
        self.wanted: frozenset[str] = frozenset(self._books if wanted is None else wanted) & self._books.keys()
        # When each unsynced symbol started waiting for a snapshot (None: not asked yet, socket down, not wanted).
        self._waiting_since: dict[str, int | None] = dict.fromkeys(self._books)
        self.connected = False
        self.gaps = 0
        self.resyncs = 0

    @property
    def symbols(self) -> tuple[str, ...]:
        """The symbols kept."""
        return tuple(self._books)

    def book(self, symbol: str) -> LocalBook:
        """The local book of `symbol`."""
        return self._books[symbol]

    def synced(self, symbol: str) -> bool:
        """True while `symbol` has a book built from a snapshot and every diff since."""
        return self.connected and self._books[symbol].synced

    def on_connected(self, now_ns: int) -> None:
        """A (re)connection is up and has re-sent the subscriptions: every symbol awaits a snapshot."""
        self.connected = True
        for symbol, book in self._books.items():
            book.invalidate()
            self._waiting_since[symbol] = now_ns if symbol in self.wanted else None

    def want(self, symbols: Iterable[str], now_ns: int) -> tuple[set[str], set[str]]:
        """Subscribe to these symbols only; returns (added, dropped). A dropped book is forgotten, an added one
        awaits its snapshot."""
        wanted = frozenset(symbols) & self._books.keys()
        added, dropped = set(wanted - self.wanted), set(self.wanted - wanted)
        self.wanted = wanted
        for symbol in dropped:
            self._books[symbol].invalidate()
            self._waiting_since[symbol] = None
        for symbol in added:
            self._books[symbol].invalidate()
            self._waiting_since[symbol] = now_ns if self.connected else None
        return added, dropped

    def on_disconnected(self) -> None:
        """The socket dropped: every book is unknown until the next connection's snapshots."""
        self.connected = False
        for symbol, book in self._books.items():
            book.invalidate()
            self._waiting_since[symbol] = None

    def on_snapshot(self, snapshot: BookSnapshot) -> bool:
        """Apply a 431 of the obdiff channel; True if it (re)started a book of ours."""
        book = self._books.get(snapshot.pair)
        if (
            book is None
            or snapshot.pair not in self.wanted
            or snapshot.channel not in (None, "obdiff")
            or not self.connected
        ):
            return False
        book.apply_snapshot(snapshot)
        self._waiting_since[snapshot.pair] = None
        return True

    def on_diff(self, diff: BookDiff, now_ns: int) -> DiffOutcome:
        """Apply a 432; on a gap the book is dropped and marked as resubscribing at `now_ns`."""
        book = self._books.get(diff.pair)
        if book is None:
            return DiffOutcome.IGNORED
        if not book.synced:
            return DiffOutcome.WAITING
        try:
            applied = book.apply_diff(diff)
        except BookGapError:
            self.gaps += 1
            self.resubscribing(diff.pair, now_ns)
            return DiffOutcome.GAP
        return DiffOutcome.APPLIED if applied else DiffOutcome.STALE

    def resubscribing(self, symbol: str, now_ns: int) -> None:
        """A resubscribe for `symbol` was sent at `now_ns`: wait for its snapshot."""
        self._books[symbol].invalidate()
        self._waiting_since[symbol] = now_ns
        self.resyncs += 1

    def overdue(self, now_ns: int, timeout_ns: int) -> list[str]:
        """Connected symbols that have waited longer than `timeout_ns` for a snapshot."""
        if not self.connected:
            return []
        return [s for s, since in self._waiting_since.items() if since is not None and now_ns - since > timeout_ns]
