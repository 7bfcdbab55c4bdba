import pytest

from btcbot.runtime.errors import SettingsError
from btcbot.runtime.settings import load_settings
from btcbot.strategy.settings import StrategySettings


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("STRATEGY_ORDER_NOTIONAL", "0"),
        ("STRATEGY_ORDER_NOTIONAL", "abc"),
        ("STRATEGY_MAX_SPREAD_BPS", "-1"),
        ("STRATEGY_TAKE_PROFIT_BPS", "NaN"),
        ("STRATEGY_STOP_LOSS_BPS", "0"),
        ("STRATEGY_SELL_FRACTION", "1.5"),
    ],
)
def test_bad_setting_stops_start_up_naming_the_variable(monkeypatch, name, value):
    monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError, match=name):
        load_settings(StrategySettings)


def test_an_engine_setting_is_checked_by_the_settings_model(monkeypatch):
    monkeypatch.setenv("STRATEGY_INTENT_TIMEOUT", "0")
    with pytest.raises(SettingsError, match="STRATEGY_INTENT_TIMEOUT"):
        load_settings(StrategySettings)


def test_quantity_scale_is_no_setting_any_more(monkeypatch):
    # The exchange's rules give each symbol its scale; the old variable is ignored like any unknown one.
    monkeypatch.setenv("STRATEGY_QUANTITY_SCALE", "2")
    assert not hasattr(load_settings(StrategySettings), "quantity_scale")


def test_a_bad_parameter_of_a_selected_strategy_stops_the_settings_load(monkeypatch):
    monkeypatch.setenv("STRATEGY_STRATEGIES", "profit_v1,mean_reversion")
    monkeypatch.setenv("STRATEGY_MEAN_REVERSION__WINDOW", "0")
    with pytest.raises(SettingsError, match="STRATEGY_MEAN_REVERSION__WINDOW"):
        load_settings(StrategySettings)
    monkeypatch.setenv("STRATEGY_STRATEGIES", "profit_v1,nope")
    with pytest.raises(SettingsError, match="STRATEGY_STRATEGIES: unknown strategy 'nope'"):
        load_settings(StrategySettings)
