"""Per-symbol exchange rules as every service reads them, and the one holder they are loaded into.

exchangeinfo is read by execution (the last check before an order leaves), risk (intent checks) and strategy
(price and quantity scales, minimum order value). This module is the one place that turns its symbols into
rules keyed as our contracts spell a pair (BTCTRY); `btcbot.runtime.rulefeed` keeps a holder fresh. Pure.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from typing import Generic, Protocol, TypeVar


@dataclass(frozen=True)
class SymbolRules:
    """What an order of one symbol must satisfy at the exchange."""

    symbol: str
    trading: bool
    price_scale: int
    quantity_scale: int
    tick_size: Decimal | None = None
    min_notional: Decimal | None = None
    min_price: Decimal | None = None
    max_price: Decimal | None = None

    @property
    def price_step(self) -> Decimal:
        """Smallest price increment: the tick, never finer than the price scale."""
        scale_step = Decimal(1).scaleb(-self.price_scale)
        return scale_step if self.tick_size is None else max(self.tick_size, scale_step)

    @property
    def quantity_step(self) -> Decimal:
        """Smallest quantity increment."""
        return Decimal(1).scaleb(-self.quantity_scale)

    def round_quantity(self, quantity: Decimal) -> Decimal:
        """`quantity` rounded down to the pair's scale (never more than asked)."""
        return _to_step(quantity, self.quantity_step, ROUND_FLOOR)

    def round_price(self, price: Decimal, *, up: bool) -> Decimal:
        """`price` on the pair's step: up for sells (never cheaper), down for buys (never dearer)."""
        return _to_step(price, self.price_step, ROUND_CEILING if up else ROUND_FLOOR)


def _to_step(value: Decimal, step: Decimal, rounding: str) -> Decimal:
    return (value / step).to_integral_value(rounding=rounding) * step


class ExchangeSymbol(Protocol):
    """The fields of an exchangeinfo symbol that the rules come from."""

    @property
    def name(self) -> str:
        """Pair name such as BTCTRY."""
        ...

    @property
    def status(self) -> str:
        """TRADING when orders are accepted."""
        ...

    @property
    def numerator_scale(self) -> int:
        """Decimals allowed in a quantity."""
        ...

    @property
    def denominator_scale(self) -> int:
        """Decimals allowed in a price."""
        ...

    @property
    def tick_size(self) -> Decimal | None:
        """Price increment, if the exchange sets one."""
        ...

    @property
    def min_exchange_value(self) -> Decimal | None:
        """Minimum order value in the quote asset."""
        ...

    @property
    def min_price(self) -> Decimal | None:
        """Lowest accepted price."""
        ...

    @property
    def max_price(self) -> Decimal | None:
        """Highest accepted price."""
        ...


def symbol_key(name: str) -> str:
    """A pair name as our contracts spell it: BTC_TRY and btctry are BTCTRY."""
    return name.replace("_", "").upper()


def _positive(value: Decimal | None) -> Decimal | None:
    # The exchange sends 0 or absurdly small values for "no limit"; a non-positive tick is no rule at all.
    return value if value is not None and value.is_finite() and value > 0 else None


def rules_from_exchange(symbols: Iterable[ExchangeSymbol]) -> dict[str, SymbolRules]:
    """Rules keyed by symbol name (upper case, no separator)."""
    out: dict[str, SymbolRules] = {}
    for info in symbols:
        name = symbol_key(info.name)
        out[name] = SymbolRules(
            symbol=name,
            trading=info.status.upper() == "TRADING",
            price_scale=info.denominator_scale,
            quantity_scale=info.numerator_scale,
            tick_size=_positive(info.tick_size),
            min_notional=_positive(info.min_exchange_value),
            min_price=_positive(info.min_price),
            max_price=_positive(info.max_price),
        )
    return out


RulesBook = Mapping[str, SymbolRules]


T = TypeVar("T", bound=ExchangeSymbol)


class RulesHolder(Generic[T]):
    """The rules a service holds: None until exchangeinfo was read once (then nothing is decided: fail closed).

    `current` keeps the exchange's own symbol objects (execution checks orders with the client library's
    arithmetic); `rules` is the same list as SymbolRules (risk and strategy).
    """

    def __init__(self, symbols: Iterable[T] | None = None) -> None:
        self.current: dict[str, T] | None = None
        self.rules: dict[str, SymbolRules] | None = None
        if symbols is not None:
            self.load(symbols)

    @property
    def loaded(self) -> bool:
        """True once exchangeinfo was read."""
        return self.current is not None

    def load(self, symbols: Iterable[T]) -> int:
        """Replace the rules with a fresh exchangeinfo's; returns how many symbols it lists."""
        listed = list(symbols)
        self.current = {symbol_key(info.name): info for info in listed}
        self.rules = rules_from_exchange(listed)
        return len(self.current)

    def get(self, symbol: str) -> SymbolRules | None:
        """The rules of `symbol`, or None when not loaded or not listed."""
        return None if self.rules is None else self.rules.get(symbol)
