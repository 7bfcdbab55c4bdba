"""Every service's settings errors name the variable the user sets (issue 10, item 3): an alias stays an alias
(`BTCTURK_API_KEY`, `BTCBOT_LOG_LEVEL`), and a service's own field carries its prefix (`EXECUTION_LIVE`)."""

from __future__ import annotations

import importlib
import inspect
import os

import pytest

from btcbot.runtime.errors import SettingsError
from btcbot.runtime.settings import CommonSettings, env_name, load_settings

SERVICES = ("marketdata", "strategy", "risk", "execution", "ledger")


def settings_class(service: str) -> type[CommonSettings]:
    module = importlib.import_module(f"btcbot.{service}.settings")
    found = [
        obj
        for obj in vars(module).values()
        if inspect.isclass(obj) and issubclass(obj, CommonSettings) and obj.__module__ == module.__name__
    ]
    assert len(found) == 1
    return found[0]


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No variable a service reads is inherited from the shell running the tests."""
    for name in list(os.environ):
        if name.startswith(
            ("BTCBOT_", "BTCTURK_", "NATS_", "REDIS_", "DATABASE_", *(f"{s.upper()}_" for s in SERVICES))
        ):
            monkeypatch.delenv(name)
    return monkeypatch


@pytest.mark.parametrize("service", SERVICES)
def test_a_common_setting_is_named_without_the_service_prefix(service: str, clean_env: pytest.MonkeyPatch) -> None:
    cls = settings_class(service)
    clean_env.setenv("BTCBOT_LOG_LEVEL", "LOUD")
    clean_env.setenv("BTCBOT_SHUTDOWN_GRACE", "-1")
    with pytest.raises(SettingsError) as info:
        load_settings(cls)
    message = str(info.value)
    assert "\n" not in message
    named = {part.split(":")[0].strip() for part in message.removeprefix("invalid settings:").split(";")}
    assert {"BTCBOT_LOG_LEVEL", "BTCBOT_SHUTDOWN_GRACE"} <= named
    assert not any(n.startswith(f"{service.upper()}_BTCBOT_") for n in named), message


def test_a_missing_exchange_key_is_named_as_set(clean_env: pytest.MonkeyPatch) -> None:
    with pytest.raises(SettingsError) as info:
        load_settings(settings_class("execution"))
    assert "BTCTURK_API_KEY: Field required" in str(info.value)
    assert "EXECUTION_BTCTURK" not in str(info.value)


def test_env_name_gives_the_alias_or_the_prefixed_name() -> None:
    execution = settings_class("execution")
    assert env_name(execution, "btcturk_api_key") == "BTCTURK_API_KEY"
    assert env_name(execution, "BTCTURK_API_KEY") == "BTCTURK_API_KEY"
    assert env_name(execution, "live") == "EXECUTION_LIVE"
    assert env_name(execution, "key_prefix") == "BTCBOT_KEY_PREFIX"
    assert env_name(settings_class("ledger"), "shutdown_grace") == "BTCBOT_SHUTDOWN_GRACE"
    with pytest.raises(KeyError, match="no_such_field"):
        env_name(execution, "no_such_field")
