"""dip_buyer: an example strategy in its own package (the tutorial in docs/strategies.md builds it).

It buys `order_notional` of quote when the ask is `dip_bps` under the highest mid it has seen, and sells what
it holds once the bid is `gain_bps` over its average cost. Pure: the service passes the time and the book.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

from pydantic import Field

from btcbot.strategy.api import BookContext, Params, Plugin, Proposal, Quiet, Strategy

_BPS = Decimal(10_000)


class DipBuyerParams(Params):
    """Set as STRATEGY_DIP_BUYER__DIP_BPS, STRATEGY_DIP_BUYER__GAIN_BPS, STRATEGY_DIP_BUYER__ORDER_NOTIONAL."""

    dip_bps: Decimal = Field(Decimal(40), gt=0, allow_inf_nan=False)
    gain_bps: Decimal = Field(Decimal(40), gt=0, allow_inf_nan=False)
    order_notional: Decimal = Field(Decimal(100), gt=0, allow_inf_nan=False)


class DipBuyer(Quiet):
    """Buy the dip under the high, sell the gain over cost."""

    def __init__(self, params: DipBuyerParams) -> None:
        self.params = params
        self.highs: dict[str, Decimal] = {}

    def on_book(self, ctx: BookContext) -> Sequence[Proposal]:
        """One proposal at most per book."""
        p, symbol = self.params, ctx.book.symbol
        high = max(self.highs.get(symbol, ctx.mid), ctx.mid)
        self.highs[symbol] = high
        held = ctx.holding
        if held.quantity > 0 and ctx.bid >= held.avg_cost * (1 + p.gain_bps / _BPS):
            return (Proposal(symbol, "sell", ctx.bid, held.quantity, f"gain over {held.avg_cost}"),)
        if held.quantity == 0 and ctx.ask <= high * (1 - p.dip_bps / _BPS):
            # The engine rounds to the pair's scale and trims to the strategy's cash; no need to do it here.
            quantity = min(p.order_notional, ctx.cash) / ctx.ask
            return (Proposal(symbol, "buy", ctx.ask, quantity, f"dip under the high {high}"),)
        return ()


def _build(params: Params, symbols: tuple[str, ...]) -> Strategy:
    assert isinstance(params, DipBuyerParams)
    return DipBuyer(params)


PLUGIN = Plugin("dip_buyer", DipBuyerParams, _build, description="buy a dip under the high, sell a gain")
