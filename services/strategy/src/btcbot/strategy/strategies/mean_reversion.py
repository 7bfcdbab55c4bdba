"""mean_reversion: buy when the price is `threshold_bps` (50) below a rolling mean, sell the same above it.

The original's anchor silently fell back to the mark, so only its bootstrap buy ever fired. Here the anchor
is the mean of the mids seen over the last `window` seconds (at least `min_samples` of them). The bootstrap
(`bootstrap`): while flat, and until a buy of its own has filled in the symbol, one buy at the ask whatever
the anchor (it may be denied or expire: it is proposed again until one fills). After that a buy is priced at
the ask and only when the ask is at or under anchor x (1 - threshold); a sell at the bid at or over
anchor x (1 + threshold).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from decimal import Decimal

from pydantic import Field

from btcbot.contracts.messages import OrderFilled
from btcbot.strategy.api import BookContext, Params, Plugin, Proposal, Quiet, Strategy
from btcbot.strategy.strategies.profit_v1 import entry_quantity, exit_quantity

NAME = "mean_reversion"
_BPS = Decimal(10_000)
_NS = 1_000_000_000


class MeanReversionParams(Params):
    """The knobs of mean_reversion."""

    threshold_bps: Decimal = Field(Decimal(50), gt=0, lt=10_000, allow_inf_nan=False)  # the original's bps
    window: float = Field(300.0, gt=0, description="seconds of mids in the rolling mean")
    min_samples: int = Field(20, ge=1, description="mids needed before the anchor counts")
    order_notional: Decimal = Field(Decimal(100), gt=0, allow_inf_nan=False)
    max_holding_notional: Decimal = Field(Decimal(1000), gt=0, allow_inf_nan=False)
    bootstrap: bool = True


class RollingMean:
    """Mean of the values seen over the last `window_ns` (by the time passed in)."""

    def __init__(self, window_ns: int) -> None:
        self.window_ns = window_ns
        self._values: deque[tuple[int, Decimal]] = deque()
        self._sum = Decimal(0)

    def add(self, ts_ns: int, value: Decimal) -> None:
        """Add a value and drop those older than the window."""
        self._values.append((ts_ns, value))
        self._sum += value
        while self._values and self._values[0][0] < ts_ns - self.window_ns:
            self._sum -= self._values.popleft()[1]

    def __len__(self) -> int:
        return len(self._values)

    @property
    def mean(self) -> Decimal | None:
        """The mean, or None with no values."""
        return self._sum / len(self._values) if self._values else None


def buy_limit(anchor: Decimal, threshold_bps: Decimal) -> Decimal:
    """The highest price mean reversion buys at."""
    return anchor * (1 - threshold_bps / _BPS)


def sell_floor(anchor: Decimal, threshold_bps: Decimal) -> Decimal:
    """The lowest price mean reversion sells at."""
    return anchor * (1 + threshold_bps / _BPS)


class MeanReversion(Quiet):
    """The mean reversion rules, one anchor per symbol."""

    def __init__(self, params: MeanReversionParams) -> None:
        self.params = params
        self._anchors: dict[str, RollingMean] = {}
        self._bootstrapped: set[str] = set()

    def anchor(self, symbol: str) -> Decimal | None:
        """The symbol's anchor once it is ready."""
        mean = self._anchors.get(symbol)
        if mean is None or len(mean) < self.params.min_samples:
            return None
        return mean.mean

    def on_book(self, ctx: BookContext) -> Sequence[Proposal]:
        """Feed the anchor, then buy under it or sell over it."""
        p, symbol = self.params, ctx.book.symbol
        mean = self._anchors.setdefault(symbol, RollingMean(int(p.window * _NS)))
        mean.add(ctx.now_ns, ctx.mid)
        held = ctx.holding.quantity
        if p.bootstrap and held <= 0 and symbol not in self._bootstrapped:
            quantity = entry_quantity(ctx.cash, p.order_notional, ctx.ask, ctx.rules)
            if quantity > 0:
                return (Proposal(symbol, "buy", ctx.ask, quantity, "bootstrap: flat, no buy of ours filled yet"),)
        anchor = self.anchor(symbol)
        if anchor is None:
            return ()
        if held > 0 and ctx.bid >= sell_floor(anchor, p.threshold_bps):
            quantity = exit_quantity(ctx.holding, Decimal(1), ctx.bid, p.order_notional, ctx.rules)
            if quantity > 0:
                why = f"reversion: bid {ctx.bid} >= anchor {anchor:.8f} + {p.threshold_bps}bps"
                return (Proposal(symbol, "sell", ctx.bid, quantity, why),)
        if ctx.ask <= buy_limit(anchor, p.threshold_bps):
            room = p.max_holding_notional - held * ctx.ask
            quantity = entry_quantity(min(ctx.cash, room), p.order_notional, ctx.ask, ctx.rules)
            if quantity > 0:
                why = f"reversion: ask {ctx.ask} <= anchor {anchor:.8f} - {p.threshold_bps}bps"
                return (Proposal(symbol, "buy", ctx.ask, quantity, why),)
        return ()

    def on_fill(self, fill: OrderFilled, now_ns: int) -> Sequence[Proposal]:
        """A buy of ours filled: the symbol is bootstrapped."""
        if fill.side == "buy":
            self._bootstrapped.add(fill.symbol)
        return ()


def _build(params: Params, symbols: tuple[str, ...]) -> Strategy:
    assert isinstance(params, MeanReversionParams)
    return MeanReversion(params)


PLUGIN = Plugin(NAME, MeanReversionParams, _build, description="buy 50 bps under a rolling mean, sell 50 bps over")
