"""Where `btcbot report --plot` puts the trade markers on the bot's PnL curve."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from btcbot.cli.reportplot import marker_points, plot

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def at(seconds: int) -> datetime:
    return T0 + timedelta(seconds=seconds)


CURVE = [(at(10), Decimal(0)), (at(20), Decimal(-2)), (at(30), Decimal(5))]


def test_a_marker_sits_on_the_last_valuation_before_its_trade() -> None:
    trades = [{"ts": at(5), "side": "buy"}, {"ts": at(20), "side": "sell"}, {"ts": at(25), "side": "buy"}]
    assert marker_points(CURVE, trades) == [
        (at(5), Decimal(0), "buy"),
        (at(20), Decimal(-2), "sell"),
        (at(25), Decimal(-2), "buy"),
    ]


def test_plot_writes_a_png_and_returns_its_absolute_path(tmp_path: Path) -> None:
    target = plot(CURVE, [{"ts": at(15), "side": "buy"}], "TRY", tmp_path / "p.png")
    assert target == (tmp_path / "p.png").resolve()
    assert target.read_bytes()[:4] == b"\x89PNG"
    assert plot([], [], "TRY", tmp_path / "empty.png").exists()
