"""Order book sides: best price through lazy heap deletion, level totals, depth ordering."""

from __future__ import annotations

import random
from decimal import Decimal

from btcbot.sim.book import BookSide, Order
from btcbot.sim.views import fixed, negative, plain, server_time

D = Decimal


def order(order_id: int, side: str, price: int, left: str = "1") -> Order:
    return Order(order_id, "a", "c", "BTCTRY", side, "limit", D(price), D(left), D(left), 0, 0)  # type: ignore[arg-type]


def test_best_survives_removal_and_readding_a_price() -> None:
    asks = BookSide("sell")
    a, b, c = order(1, "sell", 100), order(2, "sell", 101), order(3, "sell", 100)
    assert asks.add(a) is True
    assert asks.add(b) is True
    assert asks.add(c) is False  # same level
    best = asks.best()
    assert best is not None
    assert (best.price, best.total, list(best.orders)) == (D(100), D(2), [a, c])
    asks.remove(a)
    asks.remove(c)
    assert asks.best() is not None
    assert asks.best().price == D(101)  # type: ignore[union-attr]
    d = order(4, "sell", 100)
    asks.add(d)
    assert asks.best().price == D(100)  # type: ignore[union-attr]
    asks.remove(d)
    asks.remove(b)
    assert asks.best() is None
    assert len(asks) == 0


def test_random_churn_matches_a_naive_model() -> None:
    rng = random.Random(5)
    bids = BookSide("buy")
    live: dict[int, Order] = {}
    for i in range(5000):
        if live and rng.random() < 0.5:
            victim = live.pop(rng.choice(list(live)))
            bids.remove(victim)
        else:
            new = order(i, "buy", rng.randint(1, 300), str(rng.randint(1, 9)))
            live[i] = new
            bids.add(new)
        expected: dict[Decimal, Decimal] = {}
        for o in live.values():
            expected[o.price] = expected.get(o.price, D(0)) + o.left
        best = bids.best()
        assert (best.price if best else None) == (max(expected) if expected else None)
    top = [(lv.price, lv.total) for lv in bids.levels(10)]
    assert top == sorted(expected.items(), reverse=True)[:10]
    assert len(bids._heap) <= 2 * len(bids) + 65  # stale entries are compacted away


def test_reduce_tracks_level_total() -> None:
    bids = BookSide("buy")
    o = order(1, "buy", 10, "5")
    bids.add(o)
    bids.reduce(o, D(2))
    o.left -= D(2)
    assert bids.levels()[0].total == D(3)


def test_text_helpers() -> None:
    assert plain(D("1.500")) == "1.5"
    assert plain(D("1E+2")) == "100"
    assert plain(D("-0")) == "0"
    assert fixed(D("66800"), 2) == "66800.00"
    assert negative(D("0.06297817")) == "-0.06297817"
    assert negative(D(0)) == "0"
    assert server_time(1613313462021) == {
        "serverTime": 1613313462021,
        "serverTime2": "2021-02-14T14:37:42.0210000+00:00",
    }
