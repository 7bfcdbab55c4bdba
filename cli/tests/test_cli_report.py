"""`btcbot report` over a real ledger database: text, JSON, CSV, the plot, and ledger-vs-exchange balances."""

from __future__ import annotations

import json
import secrets
from decimal import Decimal
from pathlib import Path

import pytest

from btcbot.cli.report import ReportOptions, load_report, run_report, to_csv, to_json, to_text
from btcbot.contracts import ids
from btcbot.contracts.messages import OrderFilled
from btcbot.ledger.migrations import migrate
from btcbot.ledger.store import Origin, Store

pytestmark = pytest.mark.integration

D = Decimal
NOW = 1_750_000_000 * 10**9


def fill(trade: str, side: str, price: str, qty: str, fee: str) -> OrderFilled:
    return OrderFilled(
        id=ids.fill_id("BTCTRY", trade, "x1"),
        ts_ns=NOW,
        client_order_id="bb1",
        exchange_order_id="x1",
        strategy="t",
        symbol="BTCTRY",
        side=side,  # type: ignore[arg-type]
        trade_id=trade,
        price=D(price),
        quantity=D(qty),
        fee=D(fee),
        fee_asset="TRY",
        exchange_ts_ns=NOW + int(trade) * 10**9,
        base_asset="BTC",
        quote_asset="TRY",
    )


@pytest.fixture
async def ledger(pg_admin_url: str):
    from btcbot.devstack.infra import drop_database, ensure_database

    name = f"btcbot_report_{secrets.token_hex(4)}"
    url = await ensure_database(pg_admin_url, name)
    await migrate(url)
    store = await Store.open(url)
    # The account started with 1 BTC: an opening holding, never the bot's PnL.
    await store.seed_balances({"TRY": D(10000), "BTC": D(1)}, NOW)
    await store.record_opening({"BTC": "BTCTRY"}, {"BTC": D(1)}, "start", NOW)
    await store.apply_fill(fill("1", "buy", "1000", "2", "2"), Origin("exec.filled.BTCTRY", "EXECUTION", 1), NOW)
    await store.apply_fill(fill("2", "sell", "1100", "1", "1"), Origin("exec.filled.BTCTRY", "EXECUTION", 2), NOW)
    await store.record_equity(D(10000), "start", NOW, bot_pnl=D(0))
    await store.record_equity(D(9900), "fill", NOW + 10**9, bot_pnl=D(-2))
    await store.record_equity(D(10100), "fill", NOW + 2 * 10**9, marks={"BTCTRY": D(1300)}, bot_pnl=D(397))
    await store.close()
    yield url
    await drop_database(pg_admin_url, name)


@pytest.fixture
async def empty_ledger(pg_admin_url: str):
    from btcbot.devstack.infra import drop_database, ensure_database

    name = f"btcbot_report_{secrets.token_hex(4)}"
    url = await ensure_database(pg_admin_url, name)
    await migrate(url)
    yield url
    await drop_database(pg_admin_url, name)


async def test_report_shows_the_bots_pnl_apart_from_opening_holdings(ledger: str, tmp_path: Path) -> None:
    report = await load_report(ledger, "TRY")
    (position,) = report.positions
    assert position["symbol"] == "BTCTRY"
    # Bought 2 at 1000 with 2 TRY fee: cost 1001 each; sold 1 at 1100 with 1 TRY fee: realized 1100 - 1 - 1001.
    assert position["realized_pnl"] == D("98.00")
    # The bot holds 1 BTC at cost 1001; at the mark 1300 that is 299. The opening 1 BTC is left out (it would
    # make 1599), and shown apart: its market value, not PnL.
    assert position["quantity"] == D("1.00000000")
    assert position["opening_quantity"] == D("1.00000000")
    assert position["avg_cost"] == D("1001.00")
    assert position["unrealized_pnl"] == D("299.00")
    assert report.totals["bot_pnl"] == D("397.00")
    assert report.totals["bot_pnl"] == report.totals["realized_pnl"] + report.totals["unrealized_pnl"]
    assert report.totals["fees"] == D("3.00")
    assert report.totals["opening_holdings_value"] == D("1300.00")
    assert (report.totals["buys"], report.totals["sells"]) == (1, 1)
    assert [(t["side"], t["price"], t["quantity"], t["fee"]) for t in report.trades] == [
        ("buy", D("1000"), D("2.00000000"), D("2.00")),
        ("sell", D("1100"), D("1.00000000"), D("1.00")),
    ]
    assert report.balances == {"TRY": D(10000) - 2002 + 1099, "BTC": D(2)}
    text = to_text(report)
    assert "bot PnL 397.00 TRY: realized 98.00  unrealized 299.00" in text
    assert "SELL" in text
    data = json.loads(to_json(report))
    assert data["balances"]["TRY"] == "9097.00"
    assert data["totals"]["realized_pnl"] == "98.00"
    assert len(data["trades"]) == 2
    assert "exchange_balances" not in data
    rows = to_csv(report).splitlines()
    assert rows[0] == "section,item,field,value"
    assert "balance,TRY,total,9097.00" in rows
    assert "trade,2,side,sell" in rows
    assert [p for _, p in report.curve] == [D(0), D(-2), D(397)]


async def test_plot_says_where_it_wrote(ledger: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    png = tmp_path / "pnl.png"
    assert await run_report(ReportOptions(json=True, plot=png), {"DATABASE_URL": ledger}) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert f"plot written to {png.resolve()}" in capsys.readouterr().err


async def test_an_empty_ledger_reports_no_trades_and_no_none(
    empty_ledger: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    report = await load_report(empty_ledger, "TRY")
    text = to_text(report)
    assert "None" not in text
    assert "the bot has not traded yet" in text
    assert "equity n/a" in text
    assert report.totals["bot_pnl"] == D("0.00")
    png = tmp_path / "empty.png"
    assert await run_report(ReportOptions(csv=True, plot=png), {"DATABASE_URL": empty_ledger}) == 0
    assert png.exists()
    assert capsys.readouterr().out.startswith("section,item,field,value")


async def test_balances_match_needs_every_asset_and_the_exit_code_follows(
    ledger: str, capsys: pytest.CaptureFixture[str]
) -> None:
    report = await load_report(ledger, "TRY")
    report.exchange = [
        {"asset": "TRY", "ledger": D(9097), "exchange": D(9097), "difference": D(0), "match": True},
        {"asset": "BTC", "ledger": D(2), "exchange": D("1.9"), "difference": D("0.1"), "match": False},
    ]
    assert report.balances_match is False
    report.exchange[1]["match"] = True
    assert report.balances_match is True
    # Without an exchange to compare with, the report prints and succeeds.
    assert await run_report(ReportOptions(json=True), {"DATABASE_URL": ledger}) == 0
    assert json.loads(capsys.readouterr().out)["balances"]["BTC"] == "2.00000000"
