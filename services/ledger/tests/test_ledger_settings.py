"""Ledger settings from the environment: prefixes, the shared DATABASE_URL, opening balances."""

from __future__ import annotations

from decimal import Decimal

import pytest

from btcbot.ledger.settings import LedgerSettings
from btcbot.runtime.errors import SettingsError
from btcbot.runtime.settings import load_settings


def test_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("DATABASE_URL", "LEDGER_OPENING_BALANCES", "LEDGER_QUOTE_ASSET", "LEDGER_DATABASE_URL"):
        monkeypatch.delenv(var, raising=False)
    settings = load_settings(LedgerSettings)
    assert settings.database_url == "postgresql://postgres@127.0.0.1:5432/btcbot"
    assert settings.opening_balances == {}
    assert settings.quote_asset == "TRY"


def test_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://u@db:5432/books")
    monkeypatch.setenv("LEDGER_DATABASE_URL", "postgresql://ignored")  # the URL is shared, not prefixed
    monkeypatch.setenv("LEDGER_OPENING_BALANCES", "TRY=1000000,BTC=1")
    monkeypatch.setenv("LEDGER_REVALUE_INTERVAL", "2.5")
    settings = load_settings(LedgerSettings)
    assert settings.database_url == "postgresql://u@db:5432/books"
    assert settings.opening_balances == {"TRY": Decimal(1000000), "BTC": Decimal(1)}
    assert settings.revalue_interval == 2.5


@pytest.mark.parametrize(
    ("var", "value"),
    [("LEDGER_OPENING_BALANCES", "TRY:5"), ("LEDGER_REVALUE_INTERVAL", "0"), ("LEDGER_QUOTE_ASSET", "try")],
)
def test_a_bad_value_names_its_variable(monkeypatch: pytest.MonkeyPatch, var: str, value: str) -> None:
    monkeypatch.setenv(var, value)
    with pytest.raises(SettingsError, match=var):
        load_settings(LedgerSettings)
