"""The simulated crowd: it trades, moves the price, keeps a two-sided book and fills our orders."""

from __future__ import annotations

import asyncio
import random
from decimal import Decimal
from typing import Any

from btcbot.sim.config import KNOWN_SYMBOLS, Fees, MarketSettings
from btcbot.sim.engine import Fill, MatchingEngine, OrderRequest
from btcbot.sim.market import Crowd

D = Decimal
SYMBOLS = [KNOWN_SYMBOLS["BTCTRY"], KNOWN_SYMBOLS["USDTTRY"]]


def run(seed: int, steps: int) -> tuple[MatchingEngine, list[Fill]]:
    engine = MatchingEngine(SYMBOLS, Fees(), first_order_id=1, first_trade_id=1)
    crowd = Crowd(engine, SYMBOLS, MarketSettings(), random.Random(seed))
    crowd.seed(0)
    fills: list[Fill] = []
    for step in range(steps):
        crowd.step(step * 200)
        fills.extend(e for e in engine.drain_events() if isinstance(e, Fill))
    return engine, fills


def test_crowd_trades_and_keeps_a_sane_book() -> None:
    engine, fills = run(7, 300)
    for rules in SYMBOLS:
        mine = [f for f in fills if f.pair == rules.name]
        assert len(mine) > 50
        assert {f.taker_side for f in mine} == {"buy", "sell"}
        assert len({f.price for f in mine}) > 10
        book = engine.books[rules.name]
        bid, ask = book.best_bid(), book.best_ask()
        assert bid is not None
        assert ask is not None
        assert bid < ask
        assert ask / bid < D("1.01")
        assert len(book.bids) >= 10
        assert len(book.asks) >= 10
        for f in mine:
            assert f.price % rules.tick_size == 0
            assert f.amount > 0
            # prices stay near where they started over one simulated minute
            assert abs(f.price / rules.initial_price - 1) < D("0.1")


def test_crowd_is_deterministic_per_seed() -> None:
    _, a = run(11, 50)
    _, b = run(11, 50)
    _, c = run(12, 50)
    key = [(f.trade_id, f.pair, f.price, f.amount) for f in a]
    assert key == [(f.trade_id, f.pair, f.price, f.amount) for f in b]
    assert key != [(f.trade_id, f.pair, f.price, f.amount) for f in c]


def test_crowd_fills_a_resting_order_near_the_touch() -> None:
    engine = MatchingEngine(SYMBOLS, Fees(), first_order_id=1, first_trade_id=1)
    engine.open_account("bot", {"TRY": D(10_000_000), "BTC": D(1)})
    crowd = Crowd(engine, SYMBOLS, MarketSettings(), random.Random(3))
    crowd.seed(0)
    bid = engine.books["BTCTRY"].best_bid()
    ask = engine.books["BTCTRY"].best_ask()
    assert bid is not None
    assert ask is not None
    buy = engine.place(OrderRequest("bot", "b1", "BTCTRY", "buy", "limit", D("0.001"), bid + 1), 0)
    sell = engine.place(OrderRequest("bot", "s1", "BTCTRY", "sell", "limit", D("0.001"), ask - 1), 0)
    for step in range(1, 2000):
        crowd.step(step * 200)
        if not engine.open_orders("bot"):
            break
    assert engine.open_orders("bot") == []
    assert {t.client_id for t in engine.trades_of("bot")} == {"b1", "s1"}
    assert all(t.is_maker for t in engine.trades_of("bot"))
    assert getattr(buy, "status", None) == "Closed"
    assert getattr(sell, "status", None) == "Closed"


async def test_background_task_moves_the_market(sim_factory: Any) -> None:
    async with sim_factory(run_market=True, tick_interval=0.01) as sim:
        deadline = asyncio.get_running_loop().time() + 5
        while True:
            await asyncio.sleep(0.05)
            sim.clock.now += 200
            status, body = await sim.public("/api/v2/trades", pairSymbol="BTCTRY", last=50)
            assert status == 200
            if len(body["data"]) > 5:
                break
            assert asyncio.get_running_loop().time() < deadline, "the market never traded"


async def test_admin_moves_the_market(sim: Any) -> None:
    async with sim.session.post(sim.url("/sim/market"), json={"pair": "BTCTRY", "mid": "3000000", "ticks": 60}) as resp:
        assert resp.status == 200
        body = await resp.json()
    assert body["ticks"] == 60
    assert D(body["mid"]["BTCTRY"]) < D(3_100_000)
    _, ticker = await sim.public("/api/v2/ticker", pairSymbol="BTCTRY")
    # the crowd has traded down toward the new mid
    assert ticker["data"][0]["last"] < 3_500_000
    for bad in ({"pair": "NOPE", "mid": "1"}, {"ticks": -1}, {"pair": "BTCTRY", "mid": "-5"}, {"ticks": True}):
        async with sim.session.post(sim.url("/sim/market"), json=bad) as resp:
            assert resp.status == 400, bad
