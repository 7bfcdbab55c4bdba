"""Pure local L2 order book kept from an obdiff subscription: one 431 snapshot, then 432 diffs.

Sync rule (spec 4.2): the snapshot comes from the same obdiff subscription; diffs with
``CS <= snapshot CS`` are stale and dropped; every later diff must carry exactly the previous
CS + 1. Anything else is a gap: the book marks itself out of sync and the caller resubscribes.
"""

from __future__ import annotations

from decimal import Decimal

from btcbot.btcturk.models import Level
from btcbot.btcturk.wsmodels import BookChange, BookDiff, BookSnapshot, LevelChange


class BookGapError(Exception):
    """A diff does not follow the last applied change-set; resubscribe to resync."""

    def __init__(self, pair: str, expected: int | None, got: int) -> None:
        super().__init__(f"{pair}: expected CS {expected}, got {got}")
        self.pair = pair
        self.expected = expected
        self.got = got


class LocalBook:
    """Price-level book of one pair; ``synced`` is False until a snapshot and after any gap."""

    def __init__(self, pair: str) -> None:
        self.pair = pair
        self._bids: dict[Decimal, Decimal] = {}
        self._asks: dict[Decimal, Decimal] = {}
        self.cs: int | None = None
        self.synced = False

    def apply_snapshot(self, snapshot: BookSnapshot) -> None:
        """Replace the whole book with a 431 snapshot."""
        self._bids = {price: amount for price, amount in snapshot.bids if amount > 0}
        self._asks = {price: amount for price, amount in snapshot.asks if amount > 0}
        self.cs = snapshot.cs
        self.synced = True

    def apply_diff(self, diff: BookDiff) -> bool:
        """Apply a 432 diff; False if it was stale, :class:`BookGapError` if one is missing."""
        if not self.synced or self.cs is None:
            raise BookGapError(self.pair, None, diff.cs)
        if diff.cs <= self.cs:
            return False
        expected = self.cs + 1
        if diff.cs != expected:
            self.invalidate()
            raise BookGapError(self.pair, expected, diff.cs)
        _apply(self._bids, diff.bids)
        _apply(self._asks, diff.asks)
        self.cs = diff.cs
        return True

    def invalidate(self) -> None:
        """Forget the book (gap or disconnect); a new snapshot is needed."""
        self._bids.clear()
        self._asks.clear()
        self.cs = None
        self.synced = False

    def bids(self, depth: int | None = None) -> tuple[Level, ...]:
        """Best ``depth`` bids, highest price first."""
        return tuple(sorted(self._bids.items(), reverse=True)[:depth])

    def asks(self, depth: int | None = None) -> tuple[Level, ...]:
        """Best ``depth`` asks, lowest price first."""
        return tuple(sorted(self._asks.items())[:depth])

    def best_bid(self) -> Level | None:
        """Highest bid, if any."""
        return max(self._bids.items(), default=None)

    def best_ask(self) -> Level | None:
        """Lowest ask, if any."""
        return min(self._asks.items(), default=None)

    @property
    def crossed(self) -> bool:
        """True if best bid >= best ask, a sign the book is corrupt."""
        bid, ask = self.best_bid(), self.best_ask()
        return bid is not None and ask is not None and bid[0] >= ask[0]


def _apply(side: dict[Decimal, Decimal], changes: tuple[LevelChange, ...]) -> None:
    for change in changes:
        if change.change is BookChange.DELETE or change.amount <= 0:
            side.pop(change.price, None)
        else:
            # CP 0 (amount changed) and CP 1 (new level) both set the level's amount.
            side[change.price] = change.amount
