"""End to end: the price drops 8 %, the drawdown rule takes the account to OBSERVE_ONLY within one snapshot, and
trading resumes after the cooldown once the price is back (issue 8, "Done when").

The whole pipeline runs (`btcbot up`, one symbol) with a small drawdown limit and a short cooldown; the other
money rules are off so that only the rule under test can move the mode. The bot's drawdown comes from the
ledger's `bot_drawdown` (its own trading, opening holdings excluded).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import httpx
import pytest
import pytest_asyncio

from btcbot.contracts import subjects
from btcbot.contracts.codec import Codec
from btcbot.contracts.messages import ModeChanged, PortfolioSnapshot, SubmitOrder
from btcbot.runtime.inspect import read_stream
from btcbot.runtime.jetstream import connect

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

SYMBOL = "BTCTRY"
MAX_DRAWDOWN = Decimal(40)  # TRY; an 8 % drop on a ~1000 TRY entry loses ~80
MIN_POSITION_VALUE = Decimal(900)
COOLDOWN_S = 8.0
ENV = {
    "RISK_MAX_DRAWDOWN": str(MAX_DRAWDOWN),
    "RISK_MODE_COOLDOWN": str(COOLDOWN_S),
    "RISK_MAX_DAILY_LOSS": "0",
    "RISK_MAX_GROSS_EXPOSURE": "0",
    "RISK_MAX_POSITION_SHARE": "0",
    # One ~1000 TRY entry (profit_v1's default is the original bot's 100 TRY).
    "STRATEGY_ORDER_NOTIONAL": "1000",
}


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def auto_system(redis_url: str, pg_admin_url: str, system_starter: Any) -> AsyncIterator[Any]:
    async with system_starter(redis_url, pg_admin_url, ENV, symbols=SYMBOL) as running:
        yield running


class Recorder:
    """Every portfolio snapshot and automatic mode change, in arrival order (core subscriptions)."""

    def __init__(self) -> None:
        self.snapshots: list[PortfolioSnapshot] = []
        self.auto: list[ModeChanged] = []
        self._portfolio: Codec[PortfolioSnapshot] = Codec(PortfolioSnapshot)
        self._mode: Codec[ModeChanged] = Codec(ModeChanged)

    async def on_portfolio(self, msg: Any) -> None:
        self.snapshots.append(self._portfolio.decode(msg.data))

    async def on_auto(self, msg: Any) -> None:
        self.auto.append(self._mode.decode(msg.data))


def bot_position_value(snapshot: PortfolioSnapshot) -> Decimal:
    for p in snapshot.positions:
        if p.symbol == SYMBOL and p.mark is not None:
            return (p.quantity - p.opening_quantity) * p.mark
    return Decimal(0)


async def until(predicate: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = predicate()
        if found:
            return found
        await asyncio.sleep(0.25)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


async def set_mid(system: Any, mid: Decimal) -> None:
    async with httpx.AsyncClient(
        base_url=system.run["sim_url"], timeout=5, headers={"X-Sim-Admin-Token": system.run["sim_admin_token"]}
    ) as client:
        response = await client.post("/sim/market", json={"pair": SYMBOL, "mid": str(mid)})
        response.raise_for_status()


async def current_mid(system: Any) -> Decimal:
    async with httpx.AsyncClient(
        base_url=system.run["sim_url"], timeout=5, headers={"X-Sim-Admin-Token": system.run["sim_admin_token"]}
    ) as client:
        response = await client.post("/sim/market", json={"pair": SYMBOL})
        response.raise_for_status()
        return Decimal(str(response.json()["mid"][SYMBOL]))


async def test_an_8_percent_drop_stops_trading_and_the_cooldown_lets_it_resume(auto_system: Any) -> None:
    nc = await connect(auto_system.run["nats_url"], "e2e-auto-mode", 5, reconnect_forever=False)
    recorder = Recorder()
    await nc.subscribe("portfolio.*", cb=recorder.on_portfolio)
    await nc.subscribe(subjects.CONTROL_AUTO, cb=recorder.on_auto)
    try:
        # The bot holds a position worth enough for an 8 % drop to exceed the limit.
        def holding() -> PortfolioSnapshot | None:
            last = recorder.snapshots[-1] if recorder.snapshots else None
            return last if last is not None and bot_position_value(last) >= MIN_POSITION_VALUE else None

        before = await until(holding, 150, f"a bot position of {SYMBOL} worth {MIN_POSITION_VALUE} TRY")
        assert before.bot_drawdown < MAX_DRAWDOWN, before
        mid = await current_mid(auto_system)
        seen = len(recorder.snapshots)
        await set_mid(auto_system, (mid * Decimal("0.92")).quantize(Decimal(1)))

        # Within one snapshot: the first snapshot showing the drawdown is the one that caused the change.
        def drawn_down() -> PortfolioSnapshot | None:
            return next((s for s in recorder.snapshots[seen:] if s.bot_drawdown >= MAX_DRAWDOWN), None)

        trigger = await until(drawn_down, 60, "a snapshot with the drawdown over the limit")

        def observe_only() -> ModeChanged | None:
            return next((m for m in recorder.auto if m.mode == "OBSERVE_ONLY" and "DRAWDOWN" in m.reasons), None)

        changed = await until(observe_only, 10, "ModeChanged(source=auto, OBSERVE_ONLY, DRAWDOWN)")
        assert changed.source == "auto"
        assert changed.id.startswith(f"auto-mode:OBSERVE_ONLY:{trigger.id}:"), (changed.id, trigger.id)

        # The price comes back (1 % above where it was: the drawdown clears, and profit_v1's take profit at +30 bps
        # gives it something to sell); once the cooldown has passed, the mode is NORMAL again.
        await set_mid(auto_system, (mid * Decimal("1.01")).quantize(Decimal(1)))

        def normal_again() -> ModeChanged | None:
            return next((m for m in recorder.auto if m.mode == "NORMAL" and m.ts_ns > changed.ts_ns), None)

        relaxed = await until(normal_again, 90, "ModeChanged(source=auto, NORMAL) after the cooldown")
        assert relaxed.ts_ns - changed.ts_ns >= COOLDOWN_S * 1e9
        # And an intent is approved again.
        js = nc.jetstream()

        async def approved_after() -> bool:
            async for stored in read_stream(js, "ORDERS", 1, "order.submit.*"):
                if Codec(SubmitOrder).decode(stored.data).ts_ns > relaxed.ts_ns:
                    return True
            return False

        deadline = time.monotonic() + 120
        while not await approved_after():
            assert time.monotonic() < deadline, "no intent approved after the automatic mode relaxed"
            await asyncio.sleep(1.0)
    finally:
        await nc.close()
