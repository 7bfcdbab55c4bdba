"""How much a strategy may spend, and a proposal fitted to the symbol's exchange rules. Pure.

Cash: the account's free quote (the snapshot's quote balance less its locked part, less buys the snapshot does
not reflect yet and buy orders in flight), split by weight among the strategies, within a strategy's capital
less what it holds at cost. A proposal: price on the pair's step (buys down, sells up), quantity down to the
pair's scale, a sell within what the strategy holds, a buy within its cash, nothing under the minimum value.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Literal

from btcbot.contracts.messages import PortfolioSnapshot
from btcbot.strategy.api import BookContext, Holding, Proposal

_ZERO = Decimal(0)
# "No bound stated": the strategy's own limits and risk's balance checks bound the order.
UNBOUNDED = Decimal("1E+18")


@dataclass(frozen=True)
class Sized:
    """A proposal as it may be sent."""

    side: Literal["buy", "sell"]
    price: Decimal
    quantity: Decimal


def free_quote(snapshot: PortfolioSnapshot | None, committed: Iterable[Decimal]) -> Decimal:
    """The account's free quote less what is `committed` (unbooked buys, buy orders in flight).

    No snapshot (only with require_portfolio off) or one that states no quote asset (replay's --assume-flat
    start): no bound is stated, UNBOUNDED.
    """
    if snapshot is None or not snapshot.quote_asset:
        return UNBOUNDED
    quote = snapshot.quote_asset.upper()
    balance = next((b for b in snapshot.balances if b.asset.upper() == quote), None)
    free = _ZERO if balance is None else balance.total - balance.locked
    return free - sum(committed, _ZERO)


def share(
    free: Decimal, weight: Decimal, total_weight: Decimal, capital: Decimal | None, holdings: Mapping[str, Holding]
) -> Decimal:
    """A strategy's cash: its weight's part of `free`, within its capital less what it holds at cost."""
    part = free * weight / total_weight
    if capital is not None:
        deployed = sum((h.quantity * h.avg_cost for h in holdings.values()), _ZERO)
        part = min(part, capital - deployed)
    return max(part, _ZERO)


def fit(ctx: BookContext, proposal: Proposal) -> Sized | str:
    """`proposal` on the symbol's steps and within the strategy's holding or cash, or why it cannot go."""
    rules = ctx.rules
    if not (proposal.price.is_finite() and proposal.quantity.is_finite()) or proposal.price <= 0:
        return "proposal without a usable price or quantity"
    price = rules.round_price(proposal.price, up=proposal.side == "sell")
    if price <= 0:
        return f"price {proposal.price} rounds to nothing at the pair's step {rules.price_step}"
    limit = ctx.holding.quantity if proposal.side == "sell" else ctx.cash / price
    quantity = rules.round_quantity(min(proposal.quantity, limit))
    if quantity <= 0:
        return f"{proposal.side} rounds to nothing at {rules.quantity_scale} decimals"
    if rules.min_notional is not None and quantity * price < rules.min_notional:
        return f"{proposal.side} {quantity * price} is under the minimum {rules.min_notional}"
    return Sized(proposal.side, price, quantity)
