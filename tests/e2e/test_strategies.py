"""End to end: `btcbot up` with two strategies at once (STRATEGY_STRATEGIES, what `up --strategies` sets).

Both strategies send intents whose ids and `strategy` field carry their names, and orders of both fill at the
simulator, each priced and sized at the pair's exchange rules (read by the strategy from exchangeinfo).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import pytest
import pytest_asyncio

from btcbot.contracts.codec import Codec
from btcbot.contracts.messages import OrderFilled, OrderIntent
from btcbot.runtime.inspect import read_stream
from btcbot.runtime.jetstream import connect

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

TWO = {
    "STRATEGY_STRATEGIES": "profit_v1,mean_reversion",
    "STRATEGY_MEAN_REVERSION__WINDOW": "20",
    "STRATEGY_MEAN_REVERSION__MIN_SAMPLES": "5",
    "STRATEGY_MEAN_REVERSION__WEIGHT": "1",
}


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def system(redis_url: str, pg_admin_url: str, system_starter: Any) -> AsyncIterator[Any]:
    async with system_starter(redis_url, pg_admin_url, TWO, symbols="BTCTRY") as running:
        yield running


async def _read(js: Any, stream: str, subject: str, codec: Codec[Any]) -> list[Any]:
    return [codec.decode(s.data) async for s in read_stream(js, stream, 1, subject)]


async def test_two_strategies_trade_side_by_side(system: Any) -> None:
    nc = await connect(system.run["nats_url"], "e2e-strategies", 5, reconnect_forever=False, auth=system.nats_auth())
    try:
        js = nc.jetstream()
        deadline = time.monotonic() + 120
        while True:
            intents = await _read(js, "INTENTS", "intent.*", Codec(OrderIntent))
            fills = await _read(js, "EXECUTION", "exec.filled.*", Codec(OrderFilled))
            if {f.strategy for f in fills} >= {"profit_v1", "mean_reversion"}:
                break
            assert time.monotonic() < deadline, (
                f"intents by strategy {sorted({i.strategy for i in intents})}, fills by strategy "
                f"{sorted({f.strategy for f in fills})}; stderr:\n{system.stderr_tail()}"
            )
            await asyncio.sleep(1)
    finally:
        await nc.close()
    for intent in intents:
        assert intent.id.startswith(f"intent:{intent.strategy}:BTCTRY:")
        # The simulator's BTCTRY rules: 8 decimals, whole-lira prices, 99.91 TRY minimum.
        assert intent.quantity == intent.quantity.quantize(Decimal("1E-8"))
        assert intent.price == intent.price.to_integral_value()
        assert intent.quantity * intent.price >= Decimal("99.91")
    summary = await system.stop()
    assert summary["fills"] == summary["ledger_fills"]
    # The summary counts intents per strategy (both at least the ones read above).
    by_strategy = summary["intents_by_strategy"]
    assert set(by_strategy) == {"profit_v1", "mean_reversion"}
    assert sum(by_strategy.values()) == summary["intents"]
