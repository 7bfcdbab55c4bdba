"""momentum: deploy (cash - reserve) across the symbols with the best 24 h momentum, in proportion to score.

BookSnapshot carries no 24 h ticker, so the strategy keeps its own mark history: one mid per `sample`
seconds per symbol over `lookback` (24 h). A symbol's score is mid now / oldest mid in the history - 1, once
the history spans at least `min_history` seconds (a fresh start trades on the momentum it has seen, not on
none). The top `top_n` symbols with a positive score are selected; the budget is split in proportion to score,
symbols whose share is under their minimum order value are dropped and the rest re-split. A symbol below its
target by at least its minimum order value is bought at the ask; a held symbol that leaves the selection is
sold at the bid.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping, Sequence
from decimal import Decimal

from pydantic import Field

from btcbot.strategy.api import BookContext, Params, Plugin, Proposal, Quiet, Strategy
from btcbot.strategy.strategies.profit_v1 import entry_quantity, exit_quantity

NAME = "momentum"
_NS = 1_000_000_000
_ZERO = Decimal(0)


class MomentumParams(Params):
    """The knobs of momentum."""

    lookback: float = Field(86_400.0, gt=0, description="seconds of momentum (24 h)")
    min_history: float = Field(600.0, gt=0, description="history needed before a symbol is scored")
    sample: float = Field(60.0, gt=0, description="seconds between kept mids")
    top_n: int = Field(3, ge=1)
    reserve: Decimal = Field(Decimal(0), ge=0, allow_inf_nan=False, description="quote never deployed")
    max_order_notional: Decimal = Field(Decimal(1000), gt=0, allow_inf_nan=False)


def allocate(
    scores: Mapping[str, Decimal], budget: Decimal, minimums: Mapping[str, Decimal], top_n: int
) -> dict[str, Decimal]:
    """Quote per selected symbol: `budget` in proportion to positive scores among the best `top_n`; a share
    under the symbol's minimum drops it and the rest is re-split. Sums to `budget` (or nothing at all)."""
    ranked = sorted((s for s in scores if scores[s] > 0), key=lambda s: (-scores[s], s))[:top_n]
    if budget <= 0:
        return {}
    while ranked:
        total = sum((scores[s] for s in ranked), _ZERO)
        shares = {s: budget * scores[s] / total for s in ranked}
        kept = [s for s in ranked if shares[s] >= minimums.get(s, _ZERO)]
        if kept == ranked:
            return shares
        ranked = kept
    return {}


class MarkHistory:
    """One mid per sample interval over the lookback, for one symbol."""

    def __init__(self, lookback_ns: int, sample_ns: int) -> None:
        self.lookback_ns = lookback_ns
        self.sample_ns = sample_ns
        self.marks: deque[tuple[int, Decimal]] = deque()

    def add(self, ts_ns: int, mid: Decimal) -> None:
        """Keep `mid` if the last kept one is a sample interval old; drop what left the lookback."""
        if not self.marks or ts_ns - self.marks[-1][0] >= self.sample_ns:
            self.marks.append((ts_ns, mid))
        while self.marks and self.marks[0][0] < ts_ns - self.lookback_ns:
            self.marks.popleft()

    def score(self, now_ns: int, mid: Decimal, min_history_ns: int) -> Decimal | None:
        """mid / oldest mid - 1, when the history spans `min_history_ns`."""
        if not self.marks or now_ns - self.marks[0][0] < min_history_ns or self.marks[0][1] <= 0:
            return None
        return mid / self.marks[0][1] - 1


class Momentum(Quiet):
    """The momentum allocation over a set of symbols."""

    def __init__(self, params: MomentumParams) -> None:
        self.params = params
        self._history: dict[str, MarkHistory] = {}
        self._mids: dict[str, Decimal] = {}
        self._minimums: dict[str, Decimal] = {}

    def scores(self, now_ns: int) -> dict[str, Decimal]:
        """Every symbol's score that can be computed now."""
        out: dict[str, Decimal] = {}
        for symbol, history in self._history.items():
            score = history.score(now_ns, self._mids[symbol], int(self.params.min_history * _NS))
            if score is not None:
                out[symbol] = score
        return out

    def on_book(self, ctx: BookContext) -> Sequence[Proposal]:
        """Record the mid, re-allocate, and move this symbol toward its share."""
        p, symbol = self.params, ctx.book.symbol
        history = self._history.setdefault(symbol, MarkHistory(int(p.lookback * _NS), int(p.sample * _NS)))
        history.add(ctx.now_ns, ctx.mid)
        self._mids[symbol] = ctx.mid
        self._minimums[symbol] = ctx.rules.min_notional or _ZERO
        scores = self.scores(ctx.now_ns)
        if symbol not in scores:
            return ()
        # What the strategy holds in the selection counts in its budget: it is allocated capital already.
        held = {s: h.quantity * self._mids.get(s, _ZERO) for s, h in ctx.holdings.items() if h.quantity > 0}
        budget = ctx.cash + sum(held.values(), _ZERO) - p.reserve
        targets = allocate(scores, budget, self._minimums, p.top_n)
        value = ctx.holding.quantity * ctx.mid
        if symbol not in targets:
            if ctx.holding.quantity > 0:
                quantity = exit_quantity(ctx.holding, Decimal(1), ctx.bid, p.max_order_notional, ctx.rules)
                if quantity > 0:
                    why = f"momentum: {symbol} left the selection (score {scores[symbol]:.5f})"
                    return (Proposal(symbol, "sell", ctx.bid, quantity, why),)
            return ()
        gap = targets[symbol] - value
        if gap < (ctx.rules.min_notional or _ZERO) or gap <= 0:
            return ()
        spend = min(gap, ctx.cash - p.reserve)
        quantity = entry_quantity(spend, p.max_order_notional, ctx.ask, ctx.rules)
        if quantity <= 0:
            return ()
        why = f"momentum: score {scores[symbol]:.5f}, target {targets[symbol]:.2f}, holding {value:.2f}"
        return (Proposal(symbol, "buy", ctx.ask, quantity, why),)


def _build(params: Params, symbols: tuple[str, ...]) -> Strategy:
    assert isinstance(params, MomentumParams)
    return Momentum(params)


PLUGIN = Plugin(NAME, MomentumParams, _build, description="24 h momentum allocation of (cash - reserve)")
