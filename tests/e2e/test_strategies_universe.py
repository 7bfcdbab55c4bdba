"""End to end: `btcbot up --strategies profit_v1,mean_reversion --universe dynamic` (issue 14's acceptance run).

Marketdata's universe selects among the TRY candidates given in `--symbols`; both strategies trade, and only on
symbols the universe selected (a candidate it rejected never gets a book, so never an intent); the summary counts
the intents per strategy.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from btcbot.contracts import subjects
from btcbot.contracts.codec import Codec
from btcbot.contracts.messages import OrderFilled, OrderIntent, UniverseSelected
from btcbot.contracts.streams import UNIVERSE
from btcbot.runtime.inspect import read_stream
from btcbot.runtime.jetstream import connect

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

# Deep, tight pairs and two the simulator makes thin or wide (NEOTRY, DASHTRY: over 60 bps, under 50,000 TRY).
CANDIDATES = "BTCTRY,ETHTRY,SOLTRY,AVAXTRY,XRPTRY,DOGETRY,NEOTRY,DASHTRY"
STRATEGIES = "profit_v1,mean_reversion"
# A short anchor window, so mean reversion has an anchor within the test (its bootstrap buy needs none).
ENV = {"STRATEGY_MEAN_REVERSION__WINDOW": "20", "STRATEGY_MEAN_REVERSION__MIN_SAMPLES": "5"}


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def system(redis_url: str, pg_admin_url: str, system_starter: Any) -> AsyncIterator[Any]:
    up_args = ("--strategies", STRATEGIES, "--universe", "dynamic")
    async with system_starter(redis_url, pg_admin_url, ENV, CANDIDATES, nats_auth=True, up_args=up_args) as running:
        yield running


async def _read(js: Any, stream: str, subject: str, codec: Codec[Any]) -> list[Any]:
    return [codec.decode(s.data) async for s in read_stream(js, stream, 1, subject)]


async def test_both_strategies_trade_only_what_the_universe_selected(system: Any) -> None:
    nc = await connect(system.run["nats_url"], "e2e-universe", 5, reconnect_forever=False, auth=system.nats_auth())
    try:
        js = nc.jetstream()
        deadline = time.monotonic() + 150
        while True:
            selections = await _read(js, UNIVERSE.name, subjects.UNIVERSE_SELECTED, Codec(UniverseSelected))
            fills = await _read(js, "EXECUTION", "exec.filled.*", Codec(OrderFilled))
            if selections and {f.strategy for f in fills} >= {"profit_v1", "mean_reversion"}:
                break
            assert time.monotonic() < deadline, (
                f"{len(selections)} selections, fills by strategy {sorted({f.strategy for f in fills})}; "
                f"stderr:\n{system.stderr_tail()}"
            )
            await asyncio.sleep(1)
        intents = await _read(js, "INTENTS", "intent.*", Codec(OrderIntent))
    finally:
        await nc.close()
    ever_selected = {symbol for s in selections for symbol in s.symbols}
    assert ever_selected, "the universe selected nothing"
    rejected = set(CANDIDATES.split(",")) - ever_selected
    assert {"NEOTRY", "DASHTRY"} <= rejected, f"thin or wide pairs were selected: {ever_selected}"
    assert {i.symbol for i in intents} <= ever_selected
    assert {f.symbol for f in fills} <= ever_selected
    summary = await system.stop()
    assert summary["fills"] == summary["ledger_fills"] > 0
    by_strategy = summary["intents_by_strategy"]
    assert set(by_strategy) == {"profit_v1", "mean_reversion"}
    assert sum(by_strategy.values()) == summary["intents"]
