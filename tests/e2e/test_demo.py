"""End to end: `btcbot up --profile demo --duration 60` (what `make demo` runs) trades visibly.

One run: its summary has at least 10 fills with sells among them and the bot's realized PnL, and stderr showed each
entry and exit as it happened and the status line, which progress.json repeats.
"""

from __future__ import annotations

import asyncio
import json
import re
from decimal import Decimal
from typing import Any

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

TRADE_LINE = re.compile(r"^   (BUY|SELL) [0-9.]+ [A-Z]+ @ [0-9,.]+ \((.+)\)$", re.MULTILINE)


async def test_the_demo_trades_visibly(redis_url: str, pg_admin_url: str, system_starter: Any) -> None:
    async with system_starter(
        redis_url, pg_admin_url, nats_auth=True, up_args=("--profile", "demo", "--duration", "60")
    ) as system:
        # --duration ends the run by itself (stop() would Ctrl-C it at once); its summary is then read.
        await asyncio.wait_for(system.process.wait(), 300)
        summary = await system.stop()
        stderr = system.stderr_tail(200_000)
        progress = json.loads((system.state_dir / "progress.json").read_text())

    assert summary["fills"] >= 10, summary
    assert summary["ledger_fills"] == summary["fills"], summary
    assert summary["balances_match"] is True, summary["balance_mismatches"]
    trades = summary["bot_trades"]
    assert trades["count"] == summary["fills"]
    assert trades["buys"] > 0, trades
    assert trades["sells"] > 0, trades
    # The bot's own realized PnL: sells happened, so it moved (fees alone make it non-zero).
    assert Decimal(summary["realized_pnl"]) != 0, summary
    assert Decimal(summary["bot_pnl"]) == Decimal(summary["realized_pnl"]) + Decimal(summary["unrealized_pnl"])
    assert Decimal(summary["fees"]) > 0
    assert sum(summary["intents_by_strategy"].values()) == summary["intents"]

    printed = TRADE_LINE.findall(stderr)
    assert {side for side, _ in printed} == {"BUY", "SELL"}, stderr[-3000:]
    assert len(printed) == summary["fills"], stderr[-3000:]
    assert re.search(r"^   books [0-9.]+/s  intents \d+  orders \d+ \(\d+ denied\)  fills \d+", stderr, re.MULTILINE)
    assert progress["fills"] == summary["fills"]
    assert "profile demo:" in stderr
