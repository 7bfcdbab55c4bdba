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
        ("STRATEGY_INTENT_TIMEOUT", "0"),
    ],
)
def test_bad_setting_stops_start_up_naming_the_variable(monkeypatch, name, value):
    monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError, match=name):
        load_settings(StrategySettings)
