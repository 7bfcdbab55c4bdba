"""BTCTurk's pairs and currencies as the simulator offers them, loaded from the JSON fixtures in `data/`.

`data/exchangeinfo.json` holds each pair's exchange rules (scales, tick, minimum notional, price bounds) and each
currency's precision, every figure naming where it was recorded or that it is estimated; `data/markets.json`
holds the simulated market of each pair (starting price, spread, depth, volatility, 24 h drift and volume), all
estimated. Both are read once at import; a malformed entry stops the import with the pair and field named.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from decimal import ROUND_DOWN, Decimal, InvalidOperation
from importlib import resources
from typing import Any

# The crowd quotes this many levels a side at start, each of a lot x U(0.2, 3.0) (mean 1.6 lots).
LADDER_LEVELS = 25
_MEAN_LOTS_PER_QUOTE = Decimal("1.6")


@dataclass(frozen=True)
class PairMarket:
    """How the simulated crowd trades one pair; see data/markets.json for what each figure means."""

    price: Decimal
    spread_bps: float = 10.0
    depth: Decimal = Decimal(100_000)
    daily_volatility: float = 0.04
    drift_24h: float = 0.0
    volume_24h: Decimal = Decimal(1_000_000)
    # Typical size of one crowd order, in base units; derived from depth unless given.
    lot_size: Decimal = Decimal("0.01")


@dataclass(frozen=True)
class SymbolRules:
    """One trading pair with the rules BTCTurk publishes for it in exchangeinfo, and its simulated market."""

    name: str
    pair_id: int
    numerator: str
    denominator: str
    numerator_scale: int
    denominator_scale: int
    tick_size: Decimal
    min_exchange_value: Decimal
    min_price: Decimal
    max_price: Decimal
    initial_price: Decimal
    display_order: int
    display_format: str = "#,###"
    # Typical size of one participant order, in base units; sets the market's depth.
    lot_size: Decimal = Decimal("0.01")
    market: PairMarket | None = field(default=None, compare=False)

    @property
    def normalized(self) -> str:
        """The `BTC_TRY` spelling of the pair."""
        return f"{self.numerator}_{self.denominator}"

    @property
    def has_fraction(self) -> bool:
        """Whether prices may carry decimals (false for integer-priced pairs such as BTCTRY)."""
        return self.denominator_scale > 0

    @property
    def profile(self) -> PairMarket:
        """The pair's simulated market; a plain default around the initial price when none was given."""
        if self.market is not None:
            return self.market
        return PairMarket(price=self.initial_price, lot_size=self.lot_size)


@dataclass(frozen=True)
class Currency:
    """One asset as listed in exchangeinfo currencies and in balances."""

    symbol: str
    name: str
    precision: int
    currency_id: int
    min_withdrawal: Decimal = Decimal(0)
    min_deposit: Decimal = Decimal(0)


def _text(path: str) -> str:
    return resources.files("btcbot.sim").joinpath("data", path).read_text(encoding="utf-8")


def _decimal(entry: dict[str, Any], key: str, where: str) -> Decimal:
    raw = entry.get(key)
    try:
        value = Decimal(str(raw))
    except InvalidOperation:
        raise ValueError(f"{where}: {key} {raw!r} is not a number") from None
    if not value.is_finite() or value < 0:
        raise ValueError(f"{where}: {key} {raw!r} must be a non-negative number")
    return value


def _scale_of(value: Decimal) -> int:
    exponent = value.normalize().as_tuple().exponent
    assert isinstance(exponent, int)
    return max(0, -exponent)


def _lot_size(market: dict[str, Any], price: Decimal, numerator_scale: int, where: str) -> Decimal:
    """Crowd order size that puts about `depth` of quote currency on a side of the starting ladder."""
    depth = _decimal(market, "depth", where)
    step = Decimal(1).scaleb(-numerator_scale)
    lot = (depth / (LADDER_LEVELS * _MEAN_LOTS_PER_QUOTE * price)).quantize(step, ROUND_DOWN)
    return max(lot, step)


def parse_market(entry: dict[str, Any], numerator_scale: int, tick: Decimal, where: str) -> PairMarket:
    """One markets.json entry; ValueError names the pair and the field."""
    price = _decimal(entry, "price", where)
    if price <= 0 or price % tick:
        raise ValueError(f"{where}: price {price} must be positive and on the tick grid ({tick})")
    floats = {}
    for key in ("spread_bps", "daily_volatility", "drift_24h"):
        value = entry.get(key)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"{where}: {key} {value!r} is not a number")
        floats[key] = float(value)
    if floats["spread_bps"] <= 0 or floats["daily_volatility"] <= 0:
        raise ValueError(f"{where}: spread_bps and daily_volatility must be positive")
    return PairMarket(
        price=price,
        spread_bps=floats["spread_bps"],
        depth=_decimal(entry, "depth", where),
        daily_volatility=floats["daily_volatility"],
        drift_24h=floats["drift_24h"],
        volume_24h=_decimal(entry, "volume_24h", where),
        lot_size=_lot_size(entry, price, numerator_scale, where),
    )


def parse_symbol(entry: dict[str, Any], market: dict[str, Any] | None) -> SymbolRules:
    """One exchangeinfo.json symbol (and its markets.json entry); ValueError names the pair and the field."""
    name = str(entry.get("name", "?"))
    where = f"pair {name}"
    numerator, denominator = str(entry.get("numerator", "")), str(entry.get("denominator", ""))
    if not numerator or name != numerator + denominator:
        raise ValueError(f"{where}: name is not numerator + denominator ({numerator!r} + {denominator!r})")
    scales = entry.get("numeratorScale"), entry.get("denominatorScale")
    if not all(isinstance(s, int) and not isinstance(s, bool) and 0 <= s <= 18 for s in scales):
        raise ValueError(f"{where}: numeratorScale/denominatorScale {scales} must be integers 0..18")
    numerator_scale, denominator_scale = int(str(scales[0])), int(str(scales[1]))
    if entry.get("hasFraction") != (denominator_scale > 0):
        fraction = entry.get("hasFraction")
        raise ValueError(f"{where}: hasFraction {fraction} contradicts denominatorScale {denominator_scale}")
    tick = _decimal(entry, "tickSize", where)
    if tick <= 0 or _scale_of(tick) > denominator_scale:
        raise ValueError(f"{where}: tickSize {tick} must be positive with at most {denominator_scale} decimals")
    min_price, max_price = _decimal(entry, "minPrice", where), _decimal(entry, "maxPrice", where)
    minimum = _decimal(entry, "minExchangeValue", where)
    if not 0 < min_price < max_price or minimum <= 0:
        raise ValueError(f"{where}: need 0 < minPrice < maxPrice and minExchangeValue > 0")
    if market is None:
        raise ValueError(f"{where}: no entry in markets.json")
    profile = parse_market(market, numerator_scale, tick, where)
    if not min_price <= profile.price <= max_price:
        raise ValueError(f"{where}: price {profile.price} outside [{min_price}, {max_price}]")
    return SymbolRules(
        name=name,
        pair_id=int(entry["id"]),
        numerator=numerator,
        denominator=denominator,
        numerator_scale=numerator_scale,
        denominator_scale=denominator_scale,
        tick_size=tick,
        min_exchange_value=minimum,
        min_price=min_price,
        max_price=max_price,
        initial_price=profile.price,
        display_order=int(entry["order"]),
        display_format=str(entry.get("displayFormat", "#,###")),
        lot_size=profile.lot_size,
        market=profile,
    )


def parse_currency(entry: dict[str, Any]) -> Currency:
    """One exchangeinfo.json currency."""
    where = f"currency {entry.get('symbol')}"
    precision = entry.get("precision")
    if not isinstance(precision, int) or isinstance(precision, bool) or not 0 <= precision <= 18:
        raise ValueError(f"{where}: precision {precision!r} must be an integer 0..18")
    return Currency(
        symbol=str(entry["symbol"]),
        name=str(entry["name"]),
        precision=precision,
        currency_id=int(entry["id"]),
        min_withdrawal=_decimal(entry, "minWithdrawal", where),
        min_deposit=_decimal(entry, "minDeposit", where),
    )


def load_catalog(info_text: str, markets_text: str) -> tuple[dict[str, SymbolRules], dict[str, Currency]]:
    """Pairs and currencies from the two fixtures' text; every pair's assets must be listed currencies."""
    info, markets = json.loads(info_text), json.loads(markets_text)["markets"]
    symbols: dict[str, SymbolRules] = {}
    ids: set[int] = set()
    for entry in info["symbols"]:
        rules = parse_symbol(entry, markets.get(entry.get("name")))
        if rules.name in symbols or rules.pair_id in ids:
            raise ValueError(f"pair {rules.name}: duplicate name or id {rules.pair_id}")
        symbols[rules.name] = rules
        ids.add(rules.pair_id)
    currencies = {c.symbol: c for c in map(parse_currency, info["currencies"])}
    for rules in symbols.values():
        for asset in (rules.numerator, rules.denominator):
            if asset not in currencies:
                raise ValueError(f"pair {rules.name}: currency {asset} is not in exchangeinfo.json")
    extra = set(markets) - set(symbols)
    if extra:
        raise ValueError(f"markets.json lists pairs exchangeinfo.json does not: {sorted(extra)}")
    return symbols, currencies


KNOWN_SYMBOLS, KNOWN_CURRENCIES = load_catalog(_text("exchangeinfo.json"), _text("markets.json"))
