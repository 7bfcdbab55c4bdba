"""One side-aware limit order book: price levels kept in heaps, FIFO queue per level."""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Literal

Side = Literal["buy", "sell"]
Status = Literal["Untouched", "Partial", "Canceled", "Closed"]
Method = Literal["limit", "market"]


@dataclass(eq=False)
class Order:
    """An order as the exchange records it; `left` is in base units (quote for a market buy)."""

    order_id: int
    account: str
    client_id: str
    pair: str
    side: Side
    method: Method
    price: Decimal
    quantity: Decimal
    left: Decimal
    created_ms: int
    updated_ms: int
    status: Status = "Untouched"
    filled_base: Decimal = Decimal(0)
    filled_quote: Decimal = Decimal(0)
    # Funds still on hold for this order (quote for buys, base for sells).
    reserved: Decimal = Decimal(0)
    first_fill_price: Decimal | None = None

    @property
    def is_open(self) -> bool:
        """Still resting in the book."""
        return self.status in ("Untouched", "Partial")


@dataclass
class Level:
    """All orders at one price, oldest first."""

    price: Decimal
    orders: deque[Order] = field(default_factory=deque)
    total: Decimal = Decimal(0)


class BookSide:
    """Bids or asks. Best price in O(log n) through a heap with lazy deletion of emptied levels."""

    def __init__(self, side: Side) -> None:
        self.side = side
        self._levels: dict[Decimal, Level] = {}
        self._heap: list[Decimal] = []
        self._in_heap: set[Decimal] = set()

    def _key(self, price: Decimal) -> Decimal:
        return -price if self.side == "buy" else price

    def add(self, order: Order) -> bool:
        """Queue an order at its price; True when this opened a new price level."""
        level = self._levels.get(order.price)
        created = level is None
        if level is None:
            level = Level(order.price)
            self._levels[order.price] = level
            if order.price not in self._in_heap:
                heapq.heappush(self._heap, self._key(order.price))
                self._in_heap.add(order.price)
        level.orders.append(order)
        level.total += order.left
        return created

    def remove(self, order: Order) -> None:
        """Take an order out of its level (cancel or complete fill)."""
        level = self._levels[order.price]
        level.orders.remove(order)
        level.total -= order.left
        if not level.orders:
            del self._levels[order.price]
            if len(self._heap) > 2 * len(self._levels) + 64:
                self._compact()

    def _compact(self) -> None:
        self._heap = [self._key(p) for p in self._levels]
        heapq.heapify(self._heap)
        self._in_heap = set(self._levels)

    def reduce(self, order: Order, amount: Decimal) -> None:
        """Account for a partial fill of a resting order."""
        self._levels[order.price].total -= amount

    def best(self) -> Level | None:
        """The best level, dropping stale heap entries on the way."""
        while self._heap:
            price = -self._heap[0] if self.side == "buy" else self._heap[0]
            level = self._levels.get(price)
            if level is not None:
                return level
            heapq.heappop(self._heap)
            self._in_heap.discard(price)
        return None

    def levels(self, limit: int | None = None) -> list[Level]:
        """Levels best first, at most `limit` of them."""
        keys = self._levels.keys()
        ordered = heapq.nsmallest(limit, keys, key=self._key) if limit is not None else sorted(keys, key=self._key)
        return [self._levels[p] for p in ordered]

    def orders(self) -> Iterator[Order]:
        """Every resting order (no particular order)."""
        for level in self._levels.values():
            yield from level.orders

    def __len__(self) -> int:
        return len(self._levels)


class OrderBook:
    """Both sides of one pair."""

    def __init__(self, pair: str) -> None:
        self.pair = pair
        self.bids = BookSide("buy")
        self.asks = BookSide("sell")

    def side(self, side: Side) -> BookSide:
        """The side an order of `side` rests on."""
        return self.bids if side == "buy" else self.asks

    def opposite(self, side: Side) -> BookSide:
        """The side an order of `side` trades against."""
        return self.asks if side == "buy" else self.bids

    def best_bid(self) -> Decimal | None:
        """Highest bid price."""
        level = self.bids.best()
        return level.price if level else None

    def best_ask(self) -> Decimal | None:
        """Lowest ask price."""
        level = self.asks.best()
        return level.price if level else None

    def depth(self, limit: int) -> tuple[list[tuple[Decimal, Decimal]], list[tuple[Decimal, Decimal]]]:
        """Top `limit` (price, amount) levels of bids (descending) and asks (ascending)."""
        bids = [(lv.price, lv.total) for lv in self.bids.levels(limit)]
        asks = [(lv.price, lv.total) for lv in self.asks.levels(limit)]
        return bids, asks
