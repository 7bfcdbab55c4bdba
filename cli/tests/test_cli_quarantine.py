"""`btcbot ledger quarantine [--adopt ID]` against a real Postgres."""

from __future__ import annotations

import json
import secrets
from decimal import Decimal

import pytest

from btcbot.cli.quarantine import run_quarantine
from btcbot.contracts.messages import OrderFilled
from btcbot.ledger.migrations import migrate
from btcbot.ledger.store import Origin, Store

pytestmark = pytest.mark.integration

D = Decimal
NOW = 1_750_000_000 * 10**9


@pytest.fixture
async def ledger(pg_admin_url: str):
    from btcbot.devstack.infra import drop_database, ensure_database

    name = f"btcbot_quarantine_{secrets.token_hex(4)}"
    url = await ensure_database(pg_admin_url, name)
    await migrate(url)
    store = await Store.open(url)
    store.quarantine_unknown = True
    await store.seed_balances({"TRY": D(10000)}, NOW)
    fill = OrderFilled(id="fill:ghost", ts_ns=NOW, client_order_id="ghost", exchange_order_id="9", strategy="s",
                       symbol="BTCTRY", side="buy", trade_id="77", price=D(1000), quantity=D(2), fee=D(0),
                       fee_asset="TRY", exchange_ts_ns=NOW)  # fmt: skip
    assert (await store.apply_fill(fill, Origin("exec.filled.BTCTRY", "EXECUTION", 1), NOW)).status == "quarantined"
    await store.close()
    yield url
    await drop_database(pg_admin_url, name)


async def test_list_then_adopt(ledger: str, capsys: pytest.CaptureFixture[str]) -> None:
    env = {"DATABASE_URL": ledger}
    assert await run_quarantine(env, None, "alice", False) == 1  # something is held
    [row] = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert (row["client_order_id"], row["quantity"], row["resolved_at"]) == ("ghost", "2", None)
    assert await run_quarantine(env, 999, "alice", False) == 1  # no such hold
    capsys.readouterr()
    assert await run_quarantine(env, row["id"], "alice", False) == 0
    assert json.loads(capsys.readouterr().out) == {"adopted": row["id"], "status": "applied", "operator": "alice"}
    assert await run_quarantine(env, None, "alice", False) == 0
    assert capsys.readouterr().out == ""
    assert await run_quarantine(env, None, "alice", True) == 0  # --all shows the released one
    [done] = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert (done["resolution"], done["resolved_by"]) == ("adopted", "alice")
    store = await Store.open(ledger)
    try:
        state = await store.state()
    finally:
        await store.close()
    assert state.positions["BTCTRY"].quantity == D(2)
    assert state.quarantined == 0
