"""`btcbot report` over a real ledger database: text, JSON, CSV, the plot, and ledger-vs-exchange balances."""

from __future__ import annotations

import json
import secrets
from decimal import Decimal
from pathlib import Path

import pytest

from btcbot.cli.report import ReportOptions, load_report, plot, run_report, to_csv, to_json, to_text
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
    await store.seed_balances({"TRY": D(10000), "BTC": D(0)}, NOW)
    await store.apply_fill(fill("1", "buy", "1000", "2", "2"), Origin("exec.filled.BTCTRY", "EXECUTION", 1), NOW)
    await store.apply_fill(fill("2", "sell", "1100", "1", "1"), Origin("exec.filled.BTCTRY", "EXECUTION", 2), NOW)
    await store.record_equity(D(10000), "start", NOW)
    await store.record_equity(D(9900), "fill", NOW + 10**9)
    await store.record_equity(D(10100), "fill", NOW + 2 * 10**9)
    await store.close()
    yield url
    await drop_database(pg_admin_url, name)


async def test_report_shows_positions_pnl_and_balances(ledger: str, tmp_path: Path) -> None:
    report = await load_report(ledger, "TRY")
    (position,) = report.positions
    assert position["symbol"] == "BTCTRY"
    assert D(position["quantity"]) == D(1)
    # Bought 2 at 1000 with 2 TRY fee: cost 1001 each; sold 1 at 1100 with 1 TRY fee: realized 98.
    assert D(position["realized_pnl"]) == D(98)
    assert report.balances == {"TRY": D(10000) - 2002 + 1099, "BTC": D(1)}
    assert "BTCTRY" in to_text(report)
    data = json.loads(to_json(report))
    assert data["balances"]["TRY"] == "9097"
    assert "exchange_balances" not in data
    rows = to_csv(report).splitlines()
    assert rows[0] == "section,item,field,value"
    assert "balance,TRY,total,9097" in rows
    assert len(report.curve) == 3
    png = tmp_path / "equity.png"
    plot(report, png)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


async def test_balances_match_needs_every_asset_and_the_exit_code_follows(
    ledger: str, capsys: pytest.CaptureFixture[str]
) -> None:
    report = await load_report(ledger, "TRY")
    report.exchange = [
        {"asset": "TRY", "ledger": D(9097), "exchange": D(9097), "difference": D(0), "match": True},
        {"asset": "BTC", "ledger": D(1), "exchange": D("0.9"), "difference": D("0.1"), "match": False},
    ]
    assert report.balances_match is False
    report.exchange[1]["match"] = True
    assert report.balances_match is True
    # Without an exchange to compare with, the report prints and succeeds.
    assert await run_report(ReportOptions(json=True), {"DATABASE_URL": ledger}) == 0
    assert json.loads(capsys.readouterr().out)["balances"]["BTC"] == "1"
