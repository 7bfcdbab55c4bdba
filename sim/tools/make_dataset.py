"""Write the simulator's built-in playback dataset (src/btcbot/sim/datasets/builtin.jsonl).

The prices are made, not recorded: per pair a seeded log-price Brownian bridge (it ends where it started,
so looping playback has no jump), a spread that widens with volatility, mid quotes every ~2 s and trades
arriving as a Poisson process, buys printing at the ask and sells at the bid, takers leaning with the
trend. Run from the repository root:

    .venv/bin/python sim/tools/make_dataset.py [--seed 20251124] [--minutes 5] [--out PATH]
"""

from __future__ import annotations

import argparse
import json
import math
import random
from dataclasses import dataclass
from decimal import ROUND_DOWN, ROUND_HALF_EVEN, Decimal
from pathlib import Path

DEFAULT_OUT = Path(__file__).resolve().parent.parent / "src/btcbot/sim/datasets/builtin.jsonl"
START_MS = 1_764_000_000_000  # 2025-11-24T16:00:00Z


@dataclass(frozen=True)
class PairShape:
    """How one pair's made-up market looks."""

    pair: str
    start: float
    tick: Decimal
    # Relative volatility per second, typical spread as a fraction of price, mean trades per second.
    vol_per_s: float
    spread: float
    trades_per_s: float
    lot: float


PAIRS = (
    PairShape("BTCTRY", 3_612_000, Decimal(1), 0.00025, 0.00012, 1.2, 0.004),
    PairShape("ETHTRY", 131_450, Decimal(1), 0.00035, 0.00025, 1.0, 0.12),
)
QUOTE_EVERY_MS = 2000


def bridge(rng: random.Random, steps: int, vol: float) -> list[float]:
    """Log-returns of a random walk pinned to zero at both ends (a Brownian bridge), cumulated."""
    walk = [0.0]
    for _ in range(steps):
        walk.append(walk[-1] + vol * rng.gauss(0.0, 1.0))
    end = walk[-1]
    return [w - end * i / steps for i, w in enumerate(walk)]


def on_tick(value: float, tick: Decimal) -> Decimal:
    """The nearest price on the tick grid."""
    return (Decimal(repr(value)) / tick).quantize(Decimal(1), ROUND_HALF_EVEN) * tick


def records(shape: PairShape, rng: random.Random, seconds: int) -> list[dict[str, object]]:
    """Quote and trade records of one pair over `seconds`."""
    path = bridge(rng, seconds, shape.vol_per_s)

    def mid_at(ms: int) -> float:
        i, frac = divmod(ms / 1000, 1)
        j = min(int(i) + 1, seconds)
        return shape.start * math.exp(path[int(i)] * (1 - frac) + path[j] * frac)

    def spread_at(ms: int) -> float:
        i = min(int(ms // 1000) + 1, seconds)
        move = abs(path[i] - path[i - 1]) / shape.vol_per_s
        return shape.start * shape.spread * (0.7 + 0.5 * move) * rng.uniform(0.8, 1.25)

    out: list[dict[str, object]] = []
    for ms in range(0, seconds * 1000, QUOTE_EVERY_MS):
        mid = on_tick(mid_at(ms), shape.tick)
        spread = max(on_tick(spread_at(ms), shape.tick), 2 * shape.tick)
        out.append({"ts_ms": START_MS + ms, "pair": shape.pair, "mid": str(mid), "spread": str(spread)})
    ms = 0
    while True:
        ms += max(1, int(rng.expovariate(shape.trades_per_s) * 1000))
        if ms >= seconds * 1000:
            break
        second = min(int(ms // 1000) + 1, seconds)
        trend = path[second] - path[second - 1]
        side = "buy" if rng.random() < (0.65 if trend > 0 else 0.35) else "sell"
        fair, half = mid_at(ms), spread_at(ms) / 2
        price = on_tick(fair + half if side == "buy" else fair - half, shape.tick)
        amount = Decimal(repr(shape.lot * rng.lognormvariate(0.0, 0.8))).quantize(Decimal("0.00000001"), ROUND_DOWN)
        record = {"ts_ms": START_MS + ms, "pair": shape.pair, "price": str(price), "amount": str(amount), "side": side}
        out.append(record)
    return out


def main() -> None:
    """Write the dataset file."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=20251124)
    parser.add_argument("--minutes", type=int, default=5)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    rows = [r for shape in PAIRS for r in records(shape, rng, args.minutes * 60)]
    # Stable sort: at one timestamp a quote precedes the trades, and pairs keep their order.
    rows.sort(key=lambda r: int(str(r["ts_ms"])))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("".join(json.dumps(r, separators=(",", ":")) + "\n" for r in rows), "utf-8")


if __name__ == "__main__":
    main()
