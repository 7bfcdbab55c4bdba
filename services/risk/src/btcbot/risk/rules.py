"""Per-symbol trading rules as risk checks them, built from the exchange's exchangeinfo.

The exchange's own models stay in the client library; risk keeps only the fields its checks read, so a
rule set can also be written by hand in tests and replays.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Protocol


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


def _positive(value: Decimal | None) -> Decimal | None:
    # The exchange sends 0 or absurdly small values for "no limit"; a non-positive tick is no rule at all.
    return value if value is not None and value.is_finite() and value > 0 else None


def rules_from_exchange(symbols: Iterable[ExchangeSymbol]) -> dict[str, SymbolRules]:
    """Rules keyed by symbol name (upper case, no separator)."""
    out: dict[str, SymbolRules] = {}
    for info in symbols:
        name = info.name.replace("_", "").upper()
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
