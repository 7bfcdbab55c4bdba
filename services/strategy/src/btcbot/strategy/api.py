"""The strategy plug-in API: what a strategy sees, what it proposes, and how the service finds it.

A strategy is a plain object with three pure methods (`on_book`, `on_fill`, `on_portfolio`) that return
proposals; the service (signals.py) turns a proposal into an `OrderIntent` whose id carries the strategy's
name, rounds it to the symbol's exchange rules, and keeps one order in flight per strategy and symbol.
Time is passed in, nothing here reads a clock or the environment, so replay runs the same code.

A package adds a strategy by exposing a `Plugin` under the entry-point group `btcbot.strategies`
(see docs/strategies.md). Parameters are a pydantic model, validated at start; an error names the
parameter and the environment variable that set it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Literal, Protocol

from pydantic import BaseModel, ConfigDict

from btcbot.btcturk.rulebook import SymbolRules
from btcbot.contracts.messages import BookSnapshot, OrderFilled, PortfolioSnapshot

ENTRY_POINT_GROUP = "btcbot.strategies"
_BPS = Decimal(10_000)


class Params(BaseModel):
    """Base of a strategy's parameters: frozen, strict about unknown names."""

    model_config = ConfigDict(frozen=True, extra="forbid")


@dataclass(frozen=True)
class Holding:
    """This strategy's own position in one symbol (what it bought and has not sold) at average cost."""

    quantity: Decimal = Decimal(0)
    avg_cost: Decimal = Decimal(0)


@dataclass(frozen=True)
class BookContext:
    """Everything a strategy may look at when a book of one of its symbols arrives."""

    book: BookSnapshot
    now_ns: int
    # The exchange's rules of the book's symbol (the service holds a book without rules back: fail closed).
    rules: SymbolRules
    # This strategy's own position in the book's symbol (fills of other strategies are not in it).
    holding: Holding
    # Quote the strategy may spend now: its share (weight) of the account's free quote, within its capital.
    cash: Decimal
    # This strategy's positions in every symbol it trades, and the last mid of each (for portfolio strategies).
    holdings: Mapping[str, Holding] = field(default_factory=dict)
    marks: Mapping[str, Decimal] = field(default_factory=dict)

    @property
    def bid(self) -> Decimal:
        """Best bid (the service passes only books with both sides)."""
        return self.book.bids[0].price

    @property
    def ask(self) -> Decimal:
        """Best ask."""
        return self.book.asks[0].price

    @property
    def mid(self) -> Decimal:
        """Mid price: the mark."""
        return (self.bid + self.ask) / 2

    @property
    def spread_bps(self) -> Decimal:
        """Spread relative to the mid, in basis points."""
        return (self.ask - self.bid) / self.mid * _BPS


@dataclass(frozen=True)
class Proposal:
    """A limit order a strategy wants: the service rounds it to the symbol's rules and sends it as an intent."""

    symbol: str
    side: Literal["buy", "sell"]
    price: Decimal
    quantity: Decimal
    reason: str


class Strategy(Protocol):
    """A trading strategy: pure, synchronous, time passed in."""

    def on_book(self, ctx: BookContext) -> Sequence[Proposal]:
        """Decide on a book of one of the strategy's symbols."""
        ...

    def on_fill(self, fill: OrderFilled, now_ns: int) -> Sequence[Proposal]:
        """One fill of this strategy's own order; proposals are decided on the symbol's next book."""
        ...

    def on_portfolio(self, snapshot: PortfolioSnapshot, now_ns: int) -> Sequence[Proposal]:
        """A ledger snapshot of the account; proposals are decided on their symbol's next book."""
        ...


@dataclass(frozen=True)
class Plugin:
    """What an entry point of `btcbot.strategies` names: a strategy's parameters and how to build it.

    `env_prefix`: where its parameters come from (default `STRATEGY_<NAME>__`); `build(params, symbols)`.
    """

    name: str
    params: type[Params]
    build: Callable[[Params, tuple[str, ...]], Strategy]
    env_prefix: str | None = None
    description: str = ""

    def prefix(self) -> str:
        """The environment prefix of this strategy's parameters."""
        return self.env_prefix if self.env_prefix is not None else f"STRATEGY_{self.name.upper()}__"


class Quiet:
    """Mixin for strategies that do not react to fills or snapshots."""

    def on_fill(self, fill: OrderFilled, now_ns: int) -> Sequence[Proposal]:
        """No reaction."""
        return ()

    def on_portfolio(self, snapshot: PortfolioSnapshot, now_ns: int) -> Sequence[Proposal]:
        """No reaction."""
        return ()
