"""The example plug-in, installed by `make setup`: discovered, configured from the environment, trading."""

from decimal import Decimal

import pytest

from btcbot.btcturk.rulebook import SymbolRules
from btcbot.contracts import ids
from btcbot.contracts.messages import Balance, BookSnapshot, Level, OrderIntent, PortfolioSnapshot
from btcbot.runtime.errors import SettingsError
from btcbot.strategy.registry import configure, discover
from btcbot.strategy.signals import Engine, ProfitParams, Slot
from btcbot_example_strategy import PLUGIN, DipBuyerParams

D = Decimal
S = 1_000_000_000
T0 = 1_700_000_000 * S
RULES = {"BTCTRY": SymbolRules("BTCTRY", True, price_scale=0, quantity_scale=8, tick_size=D(1), min_notional=D(10))}


def book(bid, ask, seq):
    at = T0 + seq * S
    return BookSnapshot(
        id=ids.book_id("BTCTRY", at, seq), ts_ns=at, symbol="BTCTRY", sequence=seq,
        bids=(Level(D(bid), D(1)),), asks=(Level(D(ask), D(1)),), exchange_ts_ns=at, received_ts_ns=at,
    )  # fmt: skip


def funded() -> PortfolioSnapshot:
    z = D(0)
    return PortfolioSnapshot(
        id="p", ts_ns=T0, account="main", quote_asset="TRY", balances=(Balance(asset="TRY", total=D(10_000)),),
        positions=(), exposure=z, realized_pnl=z, unrealized_pnl=z, fees=z, equity=z, peak_equity=z, drawdown=z,
        fills=0,
    )  # fmt: skip


def test_the_installed_package_is_discovered_through_its_entry_point():
    assert discover()["dip_buyer"] is PLUGIN


def test_it_is_configured_from_its_variables_and_refuses_a_bad_one():
    [configured] = configure(["dip_buyer"], {"STRATEGY_DIP_BUYER__DIP_BPS": "25"}, ("BTCTRY",))
    assert isinstance(configured.params, DipBuyerParams)
    assert configured.params.dip_bps == D(25)
    with pytest.raises(SettingsError, match="STRATEGY_DIP_BUYER__GAIN_BPS"):
        configure(["dip_buyer"], {"STRATEGY_DIP_BUYER__GAIN_BPS": "-3"}, ("BTCTRY",))


def test_it_produces_intents_in_the_engine_beside_profit_v1():
    environ = {"STRATEGY_DIP_BUYER__DIP_BPS": "25"}
    configured = configure(["profit_v1", "dip_buyer"], environ, ("BTCTRY",))
    slots = [Slot(c.name, c.strategy, c.allocation.weight, c.allocation.capital) for c in configured]
    engine = Engine(("BTCTRY",), ProfitParams(cooldown_ns=0), slots=slots, rules=RULES.get)
    engine.on_portfolio(funded())
    first = engine.decide(book("1000000", "1000100", 1), T0 + S)
    assert [d.strategy for d in first if isinstance(d, OrderIntent)] == ["profit_v1"]  # no dip yet
    dip = engine.decide(book("996000", "996100", 2), T0 + 2 * S)  # ~40 bps under the high
    [intent] = [d for d in dip if isinstance(d, OrderIntent) and d.strategy == "dip_buyer"]
    assert intent.id == ids.intent_id("dip_buyer", "BTCTRY", book("996000", "996100", 2).id)
    assert (intent.side, intent.price) == ("buy", D(996100))
    assert intent.quantity == D("0.00010039")  # 100 TRY at the ask, rounded down to BTCTRY's 8 decimals
