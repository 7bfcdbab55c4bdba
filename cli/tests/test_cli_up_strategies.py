"""`btcbot up --strategies`: checked against the installed strategies before anything starts."""

import argparse

import pytest

from btcbot.cli.commands import up
from btcbot.cli.errors import UserError


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    up.add_arguments(parser)
    return parser.parse_args(list(argv))


def test_an_unknown_strategy_is_refused_naming_it_and_the_installed_ones():
    with pytest.raises(UserError, match=r"unknown strategy nope \(installed: .*mean_reversion.*profit_v1"):
        up.run(parse("--strategies", "profit_v1,nope"))


def test_the_selection_reaches_the_strategy_service_s_environment(monkeypatch, tmp_path):
    seen = {}

    async def fake_run_up(opts):
        seen["strategies"] = opts.strategies
        return 0

    monkeypatch.setattr("btcbot.cli.up.run_up", fake_run_up)
    assert up.run(parse("--strategies", " Profit_V1, mean_reversion ", "--state-dir", str(tmp_path / "run"))) == 0
    assert seen["strategies"] == "profit_v1,mean_reversion"
