"""rebalance: hold the portfolio at target weights, trading at most `turnover_cap` of its value per round.

`weights` is JSON ({"BTCTRY": 0.5, "ETHTRY": 0.3, "CASH": 0.2}) or CSV (BTCTRY:0.5,ETHTRY:0.3,CASH:0.2);
CASH is the quote asset; the weights must sum to 1. Every `interval` seconds the strategy plans a round from
its holdings, its cash and the last mids: each symbol's gap to its target, largest first, as long as the round's
turnover (the sum of the planned order values) stays within `turnover_cap` x portfolio value; gaps under
`band` x value or under the symbol's minimum order value are left alone; buys never plan more than the cash
(plus what the round's sells bring). Each planned order is sent on its symbol's next book; what the round did
not send by its end is dropped.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Literal

from pydantic import Field, field_validator

from btcbot.strategy.api import BookContext, Params, Plugin, Proposal, Quiet, Strategy

NAME = "rebalance"
CASH = "CASH"
_NS = 1_000_000_000
_ZERO = Decimal(0)


def parse_weights(text: str) -> dict[str, Decimal]:
    """Weights from JSON or CSV; ValueError naming what is wrong."""
    text = text.strip()
    pairs: list[tuple[str, object]]
    if text.startswith("{"):
        try:
            loaded = json.loads(text, parse_float=Decimal)
        except json.JSONDecodeError as exc:
            raise ValueError(f"not JSON: {exc}") from None
        if not isinstance(loaded, dict):
            raise ValueError("JSON weights must be an object of SYMBOL: weight")
        pairs = [(str(k), v) for k, v in loaded.items()]
    else:
        pairs = []
        for item in filter(None, (part.strip() for part in text.split(","))):
            symbol, sep, number = item.partition(":")
            if not sep:
                raise ValueError(f"{item!r} is not SYMBOL:WEIGHT")
            pairs.append((symbol, number))
    weights: dict[str, Decimal] = {}
    for name, value in pairs:
        try:
            weight = Decimal(str(value).strip())
        except InvalidOperation:
            raise ValueError(f"weight of {name} is not a number: {value!r}") from None
        if not weight.is_finite() or weight < 0:
            raise ValueError(f"weight of {name} must be >= 0, got {value}")
        weights[name.strip().upper()] = weight
    if not weights:
        raise ValueError("no weights given")
    if abs(sum(weights.values(), _ZERO) - 1) > Decimal("1e-9"):
        raise ValueError(f"weights sum to {sum(weights.values(), _ZERO)}, not 1")
    return weights


class RebalanceParams(Params):
    """The knobs of rebalance."""

    weights: dict[str, Decimal] = Field(default_factory=lambda: {CASH: Decimal(1)})
    turnover_cap: Decimal = Field(Decimal("0.10"), gt=0, le=1, allow_inf_nan=False, description="of value per round")
    band: Decimal = Field(Decimal("0.01"), ge=0, lt=1, allow_inf_nan=False, description="gap left alone")
    interval: float = Field(3600.0, gt=0, description="seconds between rounds")

    @field_validator("weights", mode="before")
    @classmethod
    def _parse(cls, value: object) -> object:
        return parse_weights(value) if isinstance(value, str) else value


@dataclass(frozen=True)
class Trade:
    """One planned order of a round: quote value to buy or sell."""

    symbol: str
    side: Literal["buy", "sell"]
    notional: Decimal


def plan(
    values: Mapping[str, Decimal],
    cash: Decimal,
    weights: Mapping[str, Decimal],
    turnover_cap: Decimal,
    band: Decimal,
    minimums: Mapping[str, Decimal],
) -> list[Trade]:
    """The trades of one round; their notionals sum to at most turnover_cap x (cash + sum of values)."""
    total = cash + sum(values.values(), _ZERO)
    if total <= 0:
        return []
    budget = turnover_cap * total
    gaps = {s: w * total - values.get(s, _ZERO) for s, w in weights.items() if s != CASH}
    for symbol, value in values.items():
        gaps.setdefault(symbol, -value)  # held but not in the weights: its target is 0
    trades: list[Trade] = []
    # Sells first, so buys can use what they bring; then each side by size of gap.
    order = sorted(gaps, key=lambda s: (gaps[s] > 0, -abs(gaps[s]), s))
    spendable = cash
    for symbol in order:
        gap = gaps[symbol]
        if abs(gap) <= band * total:
            continue
        take = min(abs(gap), budget)
        if gap > 0:
            take = min(take, spendable)
        if take <= 0 or take < minimums.get(symbol, _ZERO):
            continue
        side: Literal["buy", "sell"] = "buy" if gap > 0 else "sell"
        trades.append(Trade(symbol, side, take))
        budget -= take
        spendable += take if side == "sell" else -take
    return trades


class Rebalance(Quiet):
    """Rounds of target-weight rebalancing."""

    def __init__(self, params: RebalanceParams, symbols: tuple[str, ...]) -> None:
        self.params = params
        self.symbols = symbols
        self._round_ns: int | None = None
        self._planned: dict[str, Trade] = {}
        self._minimums: dict[str, Decimal] = {}

    def on_book(self, ctx: BookContext) -> Sequence[Proposal]:
        """Plan a round when one is due and every weighted symbol has a mark; send this symbol's trade."""
        p, symbol = self.params, ctx.book.symbol
        self._minimums[symbol] = ctx.rules.min_notional or _ZERO
        interval_ns = int(p.interval * _NS)
        if self._round_ns is None or ctx.now_ns - self._round_ns >= interval_ns:
            wanted = [s for s in p.weights if s != CASH]
            if any(s not in ctx.marks for s in wanted):
                return ()
            values = {
                s: h.quantity * ctx.marks[s] for s, h in ctx.holdings.items() if h.quantity > 0 and s in ctx.marks
            }
            self._planned = {t.symbol: t for t in plan(values, ctx.cash, p.weights, p.turnover_cap, p.band,
                                                       self._minimums)}  # fmt: skip
            self._round_ns = ctx.now_ns
        trade = self._planned.pop(symbol, None)
        if trade is None:
            return ()
        price = ctx.ask if trade.side == "buy" else ctx.bid
        quantity = ctx.rules.round_quantity(trade.notional / price)
        if trade.side == "sell":
            quantity = min(quantity, ctx.holding.quantity)
        if quantity <= 0:
            return ()
        why = f"rebalance: {trade.side} {trade.notional:.2f} toward weight {p.weights.get(symbol, _ZERO)}"
        return (Proposal(symbol, trade.side, price, quantity, why),)


def _build(params: Params, symbols: tuple[str, ...]) -> Strategy:
    assert isinstance(params, RebalanceParams)
    untraded = sorted(set(params.weights) - {CASH} - set(symbols))
    if untraded:
        # A weight on a pair the service has no books of could never be reached: no round would ever plan.
        raise ValueError(f"weights name {', '.join(untraded)}, not among BTCBOT_SYMBOLS ({','.join(symbols)})")
    return Rebalance(params, symbols)


PLUGIN = Plugin(NAME, RebalanceParams, _build, description="target weights with a turnover cap per round")
