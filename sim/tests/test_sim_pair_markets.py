"""Each pair's simulated market: 24 h momentum, spread and depth differ per pair and repeat per seed; the demo
profile moves prices enough for a 30 bps take-profit within a minute, the realistic one does not."""

from __future__ import annotations

import math
import random
import statistics
from dataclasses import dataclass
from decimal import Decimal

import pytest

from btcbot.sim import views
from btcbot.sim.config import KNOWN_SYMBOLS, MARKET_PROFILES, Fees, MarketSettings
from btcbot.sim.engine import MatchingEngine
from btcbot.sim.history import day_path
from btcbot.sim.market import Crowd

START_MS = 1_764_000_000_000
TRY_PAIRS = [name for name, rules in KNOWN_SYMBOLS.items() if rules.denominator == "TRY"]


@dataclass(frozen=True)
class Measured:
    """What a universe scorer sees of a pair after a run: 24 h change, median spread (bps), median depth (quote)."""

    momentum: float
    spread_bps: float
    depth: float
    high: Decimal
    low: Decimal


@dataclass
class Run:
    engine: MatchingEngine
    crowd: Crowd
    now_ms: int
    measured: dict[str, Measured]
    mids: dict[str, list[float]]


def run(names: list[str], seed: int, seconds: int, settings: MarketSettings) -> Run:
    """The crowd alone for `seconds` of 0.2 s ticks; spread and depth (top 10 levels a side) sampled every second."""
    symbols = [KNOWN_SYMBOLS[n] for n in names]
    engine = MatchingEngine(symbols, Fees(), first_order_id=1, first_trade_id=1)
    crowd = Crowd(engine, symbols, settings, random.Random(seed))
    crowd.seed(START_MS)
    samples: dict[str, list[tuple[float, float]]] = {n: [] for n in names}
    mids: dict[str, list[float]] = {n: [float(crowd.mid(n))] for n in names}
    now = START_MS
    for step in range(1, seconds * 5 + 1):
        now = START_MS + step * 200
        crowd.step(now)
        engine.drain_events()
        for name in names:
            mids[name].append(float(crowd.mid(name)))
            if step % 5 == 0:
                book = engine.books[name]
                bids, asks = book.depth(10)
                bid, ask = book.best_bid(), book.best_ask()
                assert bid is not None
                assert ask is not None
                assert bid < ask
                spread = float((ask - bid) / ((ask + bid) / 2)) * 10_000
                samples[name].append((spread, float(sum(p * a for p, a in (*bids, *asks)))))
    measured = {}
    for name in names:
        stats = engine.day_stats(name, now)
        assert stats is not None
        measured[name] = Measured(
            momentum=float((stats.last - stats.open) / stats.open),
            spread_bps=statistics.median(s for s, _ in samples[name]),
            depth=statistics.median(d for _, d in samples[name]),
            high=stats.high,
            low=stats.low,
        )
    return Run(engine, crowd, now, measured, mids)


@pytest.fixture(scope="module")
def realistic() -> Run:
    return run(TRY_PAIRS, 7, 60, MarketSettings())


def test_momentum_is_each_pairs_drift_and_they_differ(realistic: Run) -> None:
    for name, seen in realistic.measured.items():
        profile = KNOWN_SYMBOLS[name].profile
        # The synthesized day ends where the live market starts; the last trade then prints at the bid or the ask
        # (or deeper, for a market order), and a realistic minute moves the mid a little.
        tolerance = 0.003 + 1.5 * profile.spread_bps / 10_000
        assert seen.momentum == pytest.approx(math.exp(profile.drift_24h) - 1, abs=tolerance), name
        assert seen.high > seen.low
    rounded = {round(m.momentum, 3) for m in realistic.measured.values()}
    assert len(rounded) >= 14
    assert {m.momentum > 0.03 for m in realistic.measured.values()} == {True, False}
    assert {m.momentum < -0.02 for m in realistic.measured.values()} == {True, False}


def test_spread_and_depth_separate_the_pairs(realistic: Run) -> None:
    seen = realistic.measured
    # Spreads follow each pair's profile (never tighter, at most a few bps or half again wider).
    for name, m in seen.items():
        nominal = KNOWN_SYMBOLS[name].profile.spread_bps
        assert nominal * 0.8 <= m.spread_bps <= nominal * 1.5 + 5, (name, m.spread_bps)
    assert seen["BTCTRY"].spread_bps < seen["SOLTRY"].spread_bps < seen["DOTTRY"].spread_bps < seen["NEOTRY"].spread_bps
    assert seen["BTCTRY"].depth > seen["XRPTRY"].depth > seen["LINKTRY"].depth > seen["DASHTRY"].depth
    # Issue 14's filters (spread <= 60 bps, depth >= 50,000 TRY) keep some pairs and drop others, on each count.
    keeps = {n for n, m in seen.items() if m.spread_bps <= 60 and m.depth >= 50_000}
    assert {"BTCTRY", "ETHTRY", "SOLTRY", "AVAXTRY", "DOGETRY"} <= keeps
    assert {n for n, m in seen.items() if m.spread_bps > 60} >= {"NEOTRY", "DASHTRY"}
    assert {n for n, m in seen.items() if m.depth < 50_000} >= {"NEOTRY", "DASHTRY"}
    assert 8 <= len(keeps) < len(seen)


def test_the_ticker_shows_the_synthesized_day(realistic: Run) -> None:
    for name in ("BTCTRY", "AVAXTRY", "DOTTRY"):
        rules = KNOWN_SYMBOLS[name]
        ticker = views.ticker(rules, realistic.engine, realistic.now_ms)
        drift = rules.profile.drift_24h
        assert float(ticker["dailyPercent"]) == pytest.approx((math.exp(drift) - 1) * 100, abs=0.6)
        assert ticker["low"] <= ticker["last"] <= ticker["high"]
        assert ticker["low"] < ticker["open"] * Decimal("1.001") or ticker["high"] > ticker["open"]
        traded = float(ticker["volume"]) * float(ticker["average"])
        assert traded == pytest.approx(float(rules.profile.volume_24h), rel=0.2), name


def test_the_market_is_deterministic_per_seed() -> None:
    names = ["BTCTRY", "AVAXTRY", "XLMTRY", "BTCUSDT"]
    first, again, other = (run(names, seed, 10, MarketSettings()) for seed in (3, 3, 4))
    assert first.measured == again.measured
    assert first.mids == again.mids
    assert first.measured != other.measured
    # Whatever the seed, the 24 h change is the pair's drift; the day's path differs.
    for name in names:
        tolerance = 0.003 + 3 * KNOWN_SYMBOLS[name].profile.spread_bps / 10_000
        assert first.measured[name].momentum == pytest.approx(other.measured[name].momentum, abs=tolerance)
    assert [first.measured[n].high for n in names] != [other.measured[n].high for n in names]


def test_day_path_ends_at_the_price_and_opens_at_the_drift() -> None:
    path = day_path(random.Random(1), 100.0, drift_24h=0.05, daily_volatility=0.04, volume_24h=1_000_000.0)
    assert len(path) == 1440
    assert [t.minutes_ago for t in path] == list(range(1439, -1, -1))
    assert path[-1].price == pytest.approx(100.0)
    assert path[0].price == pytest.approx(100.0 / math.exp(0.05), rel=0.01)
    assert sum(t.amount * t.price for t in path) == pytest.approx(1_000_000.0)
    with pytest.raises(ValueError, match="end_price"):
        day_path(random.Random(1), 0.0, drift_24h=0.0, daily_volatility=0.04, volume_24h=1.0)


def _largest_move_bps(mids: list[float]) -> float:
    return max(abs(math.log(m / mids[0])) for m in mids) * 10_000


def _take_profits(mids: list[float], bps: float) -> int:
    """Round trips of a buyer who enters at the current mid and exits `bps` above it, then enters again."""
    exits, entry = 0, mids[0]
    for mid in mids:
        if mid >= entry * (1 + bps / 10_000):
            exits += 1
            entry = mid
    return exits


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_the_demo_profile_moves_prices_in_a_minute(seed: int) -> None:
    names = ["BTCTRY", "ETHTRY"]
    calm = run(names, seed, 60, MARKET_PROFILES["realistic"])
    demo = run(names, seed, 60, MARKET_PROFILES["demo"])
    for name in names:
        assert _largest_move_bps(calm.mids[name]) < 30, name
        assert _largest_move_bps(demo.mids[name]) >= 40, name
    # A 30 bps take-profit plus the spread crossed on entry: several exits a minute across the two pairs.
    exits = sum(_take_profits(demo.mids[n], 30 + KNOWN_SYMBOLS[n].profile.spread_bps) for n in names)
    assert exits >= 3
    assert sum(_take_profits(calm.mids[n], 30 + KNOWN_SYMBOLS[n].profile.spread_bps) for n in names) == 0
