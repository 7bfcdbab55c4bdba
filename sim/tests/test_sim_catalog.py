"""The pair catalog: every pair's recorded rules parse, scales and ticks agree, each figure names its source."""

from __future__ import annotations

import copy
import json
from decimal import Decimal
from importlib import resources
from typing import Any

import pytest

from btcbot.sim.catalog import KNOWN_CURRENCIES, KNOWN_SYMBOLS, load_catalog
from btcbot.sim.config import SimConfig, currencies_for, default_symbols

D = Decimal
DATA = resources.files("btcbot.sim").joinpath("data")
INFO_TEXT = DATA.joinpath("exchangeinfo.json").read_text(encoding="utf-8")
MARKETS_TEXT = DATA.joinpath("markets.json").read_text(encoding="utf-8")
INFO = json.loads(INFO_TEXT)
MARKETS = json.loads(MARKETS_TEXT)
WANTED = [
    *("BTCTRY", "ETHTRY", "USDTTRY", "BTCUSDT", "ETHUSDT", "XRPTRY", "AVAXTRY", "SOLTRY", "ADATRY"),
    *("DOGETRY", "LTCTRY", "LINKTRY", "DOTTRY", "TRXTRY", "ATOMTRY", "XLMTRY"),
]


def test_at_least_twenty_real_try_and_usdt_pairs() -> None:
    assert len(KNOWN_SYMBOLS) >= 20
    assert set(WANTED) <= set(KNOWN_SYMBOLS)
    quotes = {r.denominator for r in KNOWN_SYMBOLS.values()}
    assert quotes == {"TRY", "USDT"}
    assert sum(r.denominator == "USDT" for r in KNOWN_SYMBOLS.values()) >= 5


@pytest.mark.parametrize("name", sorted(KNOWN_SYMBOLS))
def test_each_pair_is_consistent(name: str) -> None:
    rules = KNOWN_SYMBOLS[name]
    assert rules.name == rules.numerator + rules.denominator
    assert rules.has_fraction == (rules.denominator_scale > 0)
    # The tick is a whole number of price steps, and a price on the grid never has more decimals than the scale.
    price_step = D(1).scaleb(-rules.denominator_scale)
    assert rules.tick_size > 0
    assert rules.tick_size % price_step == 0
    assert rules.initial_price % rules.tick_size == 0
    assert rules.min_price < rules.initial_price < rules.max_price
    assert rules.min_exchange_value == (D("99.91") if rules.denominator == "TRY" else D("9.91"))
    # The crowd's lot is on the quantity grid, and the minimum notional is reachable in a few lots.
    assert rules.lot_size % D(1).scaleb(-rules.numerator_scale) == 0
    assert rules.lot_size * rules.initial_price * 20 > rules.min_exchange_value
    for asset in (rules.numerator, rules.denominator):
        assert asset in KNOWN_CURRENCIES
    profile = rules.profile
    assert profile.price == rules.initial_price
    assert 0 < profile.spread_bps < 500
    assert 0 < profile.daily_volatility < 0.5
    assert abs(profile.drift_24h) < 0.2


def test_every_figure_names_a_known_source() -> None:
    sources = set(INFO["sources"])
    assert "estimated" in sources
    for entry in INFO["symbols"]:
        assert set(entry["source"]) == {"scales", "tickSize", "minExchangeValue", "minPrice/maxPrice", "id/order"}
        assert set(entry["source"].values()) <= sources, entry["name"]
    for currency in INFO["currencies"]:
        assert currency["source"] in sources
    # The recorded pairs keep the recorded figures.
    btc_usdt = KNOWN_SYMBOLS["BTCUSDT"]
    assert (btc_usdt.pair_id, btc_usdt.numerator_scale, btc_usdt.denominator_scale) == (19, 8, 0)
    usdt_try = KNOWN_SYMBOLS["USDTTRY"]
    assert (usdt_try.pair_id, usdt_try.numerator_scale, usdt_try.tick_size, usdt_try.display_order) == (
        18,
        2,
        D("0.001"),
        1044,
    )
    assert (KNOWN_SYMBOLS["XRPTRY"].numerator_scale, KNOWN_SYMBOLS["XRPTRY"].denominator_scale) == (4, 3)
    assert (KNOWN_CURRENCIES["TRY"].precision, KNOWN_CURRENCIES["BTC"].min_withdrawal) == (2, D("0.0005"))


def test_ids_and_display_orders_are_unique() -> None:
    assert len({r.pair_id for r in KNOWN_SYMBOLS.values()}) == len(KNOWN_SYMBOLS)
    assert len({r.display_order for r in KNOWN_SYMBOLS.values()}) == len(KNOWN_SYMBOLS)
    assert len({c.currency_id for c in KNOWN_CURRENCIES.values()}) == len(KNOWN_CURRENCIES)


def _broken(change: Any) -> tuple[str, str]:
    info, markets = copy.deepcopy(INFO), copy.deepcopy(MARKETS)
    change(info, markets)
    return json.dumps(info), json.dumps(markets)


def _set(index: int, key: str, value: Any) -> Any:
    return lambda info, markets: info["symbols"][index].__setitem__(key, value)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (_set(0, "hasFraction", True), "pair BTCTRY: hasFraction True contradicts denominatorScale 0"),
        (_set(0, "tickSize", "0.5"), "pair BTCTRY: tickSize 0.5 must be positive with at most 0 decimals"),
        (_set(0, "numeratorScale", "8"), "pair BTCTRY: numeratorScale/denominatorScale"),
        (_set(0, "minExchangeValue", "abc"), "pair BTCTRY: minExchangeValue 'abc' is not a number"),
        (_set(0, "numerator", "ETH"), "pair BTCTRY: name is not numerator \\+ denominator"),
        (lambda i, m: m["markets"].pop("ETHTRY"), "pair ETHTRY: no entry in markets.json"),
        (lambda i, m: m["markets"]["ETHTRY"].update(price="130000.005"), "pair ETHTRY: price 130000.005 must be"),
        (lambda i, m: m["markets"]["ETHTRY"].update(spread_bps="wide"), "pair ETHTRY: spread_bps 'wide' is not"),
        (lambda i, m: m["markets"].update(NOPETRY=m["markets"]["ETHTRY"]), "markets.json lists pairs"),
        (lambda i, m: i["currencies"].pop(0), "currency TRY is not in exchangeinfo.json"),
    ],
)
def test_a_broken_fixture_names_the_pair_and_field(change: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        load_catalog(*_broken(change))


def test_symbols_all_and_their_currencies() -> None:
    every = default_symbols(["all"])
    assert [s.name for s in every] == list(KNOWN_SYMBOLS)
    assert {c.symbol for c in currencies_for(every)} == {a for s in every for a in (s.numerator, s.denominator)}
    # A config left to its defaults stays small: the four pairs the simulator always offered.
    assert [s.name for s in SimConfig().symbols] == ["BTCTRY", "ETHTRY", "BTCUSDT", "USDTTRY"]
    with pytest.raises(ValueError, match="unknown symbols"):
        default_symbols(["all", "BTCTRY"])
