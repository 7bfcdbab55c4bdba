"""`btcbot up --profile`: one table of settings; the environment's own values win."""

from __future__ import annotations

import pytest

from btcbot.cli.profiles import PROFILES, apply_profile


def test_demo_profile_splits_service_settings_from_simulator_options() -> None:
    applied = apply_profile("demo", {})
    assert applied.service_env["RISK_ORDER_COOLDOWN"] == PROFILES["demo"]["RISK_ORDER_COOLDOWN"]
    assert "SIM_TICK_INTERVAL" not in applied.service_env
    assert "SIM_PROFILE" not in applied.service_env
    assert applied.sim_args == ("--profile", "demo", "--tick-interval", PROFILES["demo"]["SIM_TICK_INTERVAL"])


def test_the_environment_wins_over_the_profile() -> None:
    applied = apply_profile("demo", {"STRATEGY_TAKE_PROFIT_BPS": "40", "SIM_TICK_INTERVAL": "0.3"})
    assert applied.service_env["STRATEGY_TAKE_PROFIT_BPS"] == "40"
    assert applied.sim_args == ("--profile", "demo", "--tick-interval", "0.3")


def test_no_profile_changes_nothing_and_an_unknown_one_is_named() -> None:
    assert apply_profile(None, {}).service_env == {}
    with pytest.raises(ValueError, match="unknown profile 'fast'"):
        apply_profile("fast", {})


def test_every_profile_setting_is_a_real_setting() -> None:
    from btcbot.risk.settings import RiskSettings
    from btcbot.strategy.registry import variables
    from btcbot.strategy.settings import StrategySettings

    fields = {f"STRATEGY_{n.upper()}" for n in StrategySettings.model_fields} | set(variables())
    fields |= {f"RISK_{n.upper()}" for n in RiskSettings.model_fields}
    for name, settings in PROFILES.items():
        for key in settings:
            assert key.startswith("SIM_") or key in fields, f"profile {name}: {key} is no setting"


def test_every_simulator_option_of_a_profile_exists() -> None:
    from btcbot.sim.__main__ import build_parser

    for name in PROFILES:
        build_parser().parse_args(list(apply_profile(name, {}).sim_args))  # exits 2 on an unknown option
