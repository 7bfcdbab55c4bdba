import pytest

from btcbot.marketdata.settings import MarketdataSettings
from btcbot.runtime.errors import SettingsError
from btcbot.runtime.settings import load_settings


@pytest.fixture
def env(monkeypatch):
    monkeypatch.setenv("BTCTURK_API_KEY", "k")
    monkeypatch.setenv("BTCTURK_API_SECRET", "s")
    return monkeypatch


def test_defaults(env):
    s = load_settings(MarketdataSettings)
    assert (s.poll_interval, s.depth, s.stale_after) == (0.5, 10, 5.0)
    assert s.stale_after_ns == 5_000_000_000


def test_prefixed_overrides(env):
    env.setenv("MARKETDATA_DEPTH", "20")
    env.setenv("MARKETDATA_POLL_INTERVAL", "0.25")
    s = load_settings(MarketdataSettings)
    assert (s.depth, s.poll_interval) == (20, 0.25)


@pytest.mark.parametrize(
    ("name", "value"), [("MARKETDATA_POLL_INTERVAL", "0"), ("MARKETDATA_DEPTH", "x"), ("MARKETDATA_STALE_AFTER", "-1")]
)
def test_bad_setting_names_the_variable(env, name, value):
    env.setenv(name, value)
    with pytest.raises(SettingsError, match=name):
        load_settings(MarketdataSettings)
