"""A synthesized last day of trading for a pair, so its ticker has a 24 h open, range and volume from the start.

The path is a Brownian bridge in log price: it opens `drift_24h` below the starting mid, ends exactly at it, and
wanders with the pair's daily volatility in between. The 24 h change a ticker reports is therefore the pair's
drift (whatever the seed), while the intraday range and the volume per minute depend on the seed. Pure: the
random source comes in.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

MINUTES_PER_DAY = 1440


@dataclass(frozen=True)
class PastTrade:
    """One synthesized trade, `minutes_ago` before the start (1439 .. 0)."""

    minutes_ago: int
    price: float
    amount: float


def day_path(
    rng: random.Random,
    end_price: float,
    *,
    drift_24h: float,
    daily_volatility: float,
    volume_24h: float,
    minutes: int = MINUTES_PER_DAY,
) -> list[PastTrade]:
    """One trade a minute over the last `minutes`, oldest first; the last one prints at `end_price`.

    `volume_24h` is in quote currency; amounts are in base units and sum to about volume_24h / price.
    """
    if end_price <= 0 or minutes < 1:
        raise ValueError("end_price must be positive and minutes at least 1")
    step = daily_volatility / math.sqrt(MINUTES_PER_DAY)
    walk = [0.0]
    for _ in range(minutes):
        walk.append(walk[-1] + rng.gauss(0.0, step))
    start = math.log(end_price) - drift_24h
    weights = [rng.uniform(0.3, 1.7) for _ in range(minutes)]
    scale = volume_24h / sum(weights)
    trades = []
    for k in range(1, minutes + 1):
        # The bridge pins both ends: log price is `start` at k=0 and log(end_price) at k=minutes.
        bridge = walk[k] - k / minutes * walk[minutes]
        price = math.exp(start + k / minutes * drift_24h + bridge)
        trades.append(PastTrade(minutes - k, price, weights[k - 1] * scale / price))
    return trades
