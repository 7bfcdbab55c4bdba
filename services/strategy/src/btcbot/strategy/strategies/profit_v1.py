"""profit_v1, as the original bot ran it: buy a small amount when flat, sell a quarter at a small profit.

- Entry: when the strategy holds (about) nothing and the spread is at most `max_spread_bps` (100 = 1 %), buy
  min(its free quote, `order_notional` = 100) worth at the ask.
- Take profit: once the bid is `take_profit_bps` (30, the original's MIN_PROFIT_BPS) above average cost, sell
  `sell_fraction` (25 %) of the position at the bid, rounded down to the symbol's quantity scale. A quarter
  below the symbol's minimum order value sells the whole position instead (a quarter could never trade).
- Optional stop loss: `stop_loss_bps` under average cost sells the same slice.
Its parameters keep their flat names (STRATEGY_ORDER_NOTIONAL, STRATEGY_TAKE_PROFIT_BPS, ...).
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

from pydantic import Field

from btcbot.btcturk.rulebook import SymbolRules
from btcbot.strategy.api import BookContext, Holding, Params, Plugin, Proposal, Quiet, Strategy

NAME = "profit_v1"
_BPS = Decimal(10_000)
_ZERO = Decimal(0)


class ProfitV1Params(Params):
    """The knobs of profit_v1 (money in the quote asset)."""

    order_notional: Decimal = Field(Decimal(100), gt=0, allow_inf_nan=False, description="quote spent per entry")
    max_order_notional: Decimal = Field(Decimal(5000), gt=0, allow_inf_nan=False, description="largest exit value")
    max_spread_bps: Decimal = Field(Decimal(100), gt=0, allow_inf_nan=False, description="widest spread to enter")
    take_profit_bps: Decimal = Field(Decimal(30), gt=0, allow_inf_nan=False, description="gain that sells")
    sell_fraction: Decimal = Field(Decimal("0.25"), gt=0, le=1, allow_inf_nan=False, description="part sold")
    stop_loss_bps: Decimal | None = Field(None, gt=0, allow_inf_nan=False, description="loss that sells")
    # Unset: the symbol's minimum order value (a position that cannot be sold is as good as flat).
    dust_notional: Decimal | None = Field(None, ge=0, allow_inf_nan=False, description="value counted as flat")


def entry_quantity(cash: Decimal, order_notional: Decimal, ask: Decimal, rules: SymbolRules) -> Decimal:
    """Quantity an entry buys: min(cash, order_notional) at `ask`, rounded down; 0 below the minimum value."""
    spend = min(cash, order_notional)
    if spend <= 0 or ask <= 0:
        return _ZERO
    quantity = rules.round_quantity(spend / ask)
    if quantity <= 0 or (rules.min_notional is not None and quantity * ask < rules.min_notional):
        return _ZERO
    return quantity


def exit_quantity(holding: Holding, fraction: Decimal, bid: Decimal, cap: Decimal, rules: SymbolRules) -> Decimal:
    """Quantity an exit sells: `fraction` of the position (within `cap` quote), rounded down to the scale.

    When that slice is under the minimum order value the whole position goes (if it can: else 0).
    """
    quantity = rules.round_quantity(min(holding.quantity * fraction, cap / bid))
    minimum = rules.min_notional
    if minimum is not None and quantity * bid < minimum:
        quantity = rules.round_quantity(min(holding.quantity, cap / bid))
        if quantity * bid < minimum:
            return _ZERO
    return quantity


class ProfitV1(Quiet):
    """The profit_v1 rules for a set of symbols."""

    def __init__(self, params: ProfitV1Params) -> None:
        self.params = params

    def on_book(self, ctx: BookContext) -> Sequence[Proposal]:
        """Entry when flat and the spread is tight; a slice at take profit (or stop loss) when holding."""
        p = self.params
        holding, bid, ask, symbol = ctx.holding, ctx.bid, ctx.ask, ctx.book.symbol
        dust = p.dust_notional if p.dust_notional is not None else (ctx.rules.min_notional or _ZERO)
        if holding.quantity * bid <= dust or holding.quantity <= 0:
            spread = ctx.spread_bps
            if spread > p.max_spread_bps:
                return ()
            quantity = entry_quantity(ctx.cash, p.order_notional, ask, ctx.rules)
            if quantity <= 0:
                return ()
            reason = f"entry: flat, spread {spread:.2f}bps <= {p.max_spread_bps}bps, buy {quantity * ask:.2f} at ask"
            return (Proposal(symbol, "buy", ask, quantity, reason),)
        if holding.avg_cost <= 0:
            return ()
        why = None
        if bid >= holding.avg_cost * (1 + p.take_profit_bps / _BPS):
            why = f"take profit: bid {bid} >= avg cost {holding.avg_cost:.8f} + {p.take_profit_bps}bps"
        elif p.stop_loss_bps is not None and bid <= holding.avg_cost * (1 - p.stop_loss_bps / _BPS):
            why = f"stop loss: bid {bid} <= avg cost {holding.avg_cost:.8f} - {p.stop_loss_bps}bps"
        if why is None:
            return ()
        quantity = exit_quantity(holding, p.sell_fraction, bid, p.max_order_notional, ctx.rules)
        if quantity <= 0:
            return ()
        return (Proposal(symbol, "sell", bid, quantity, f"{why}, sell {quantity}"),)


def _build(params: Params, symbols: tuple[str, ...]) -> Strategy:
    assert isinstance(params, ProfitV1Params)
    return ProfitV1(params)


PLUGIN = Plugin(
    name=NAME,
    params=ProfitV1Params,
    build=_build,
    env_prefix="STRATEGY_",
    description="buy min(free quote, 100) when flat and the spread <= 1 %; sell 25 % at +30 bps",
)
