"""`btcbot report --plot FILE`: the bot's PnL over time with a marker at each buy and sell (a PNG, no display).

The curve is the ledger's `bot_pnl` per valuation (opening holdings excluded), so a market move of what the account
held before the bot traded does not show here. A trade's marker sits on the curve at the trade's time.
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

Curve = Sequence[tuple[datetime, Decimal]]


def marker_points(curve: Curve, trades: Sequence[Mapping[str, Any]]) -> list[tuple[datetime, Decimal, str]]:
    """(time, bot PnL then, side) per trade: the last valuation at or before the trade, 0 before the first."""
    times = [ts for ts, _ in curve]
    points = []
    for trade in trades:
        i = bisect.bisect_right(times, trade["ts"]) - 1
        points.append((trade["ts"], curve[i][1] if i >= 0 else Decimal(0), str(trade["side"])))
    return points


def plot(curve: Curve, trades: Sequence[Mapping[str, Any]], quote_asset: str, path: Path) -> Path:
    """Draw the bot's PnL with buy/sell markers into `path`; returns the absolute path written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 5))
    if curve:
        # Plotting only: the figures themselves stay Decimal everywhere else.
        times: list[Any] = [ts for ts, _ in curve]  # matplotlib converts datetimes; its stubs do not say so
        ax.step(times, [float(p) for _, p in curve], where="post", color="tab:blue", linewidth=1.2)
        ax.axhline(0, color="grey", linewidth=0.8)
    else:
        ax.text(0.5, 0.5, "no valuation yet", ha="center", va="center", transform=ax.transAxes)
    marks = marker_points(curve, trades)
    for side, style in (("buy", ("^", "tab:green")), ("sell", ("v", "tab:red"))):
        when: list[Any] = [ts for ts, _, s in marks if s == side]
        if when:
            pnl = [float(y) for _, y, s in marks if s == side]
            ax.scatter(when, pnl, marker=style[0], color=style[1], s=50, zorder=3, label=side)
    if marks:
        ax.legend(loc="best")
    ax.set_ylabel(f"bot PnL ({quote_asset})")
    ax.set_title(f"Bot PnL (opening holdings excluded), {len(trades)} trades")
    ax.grid(alpha=0.3)
    fig.autofmt_xdate()
    fig.tight_layout()
    target = path.resolve()
    fig.savefig(target, dpi=100)
    plt.close(fig)
    return target
