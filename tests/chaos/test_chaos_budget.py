"""Chaos (d) of issue 8: two risk replicas, 200 concurrent intents that together exceed the exposure budget.

Both replicas share the intents durable and reserve in one Redis with one Lua script, so whatever replica
approves what, the buy orders that reach the simulator never add up to more than RISK_EXPOSURE_BUDGET. The buys
rest far below the market so none fills: what is reserved is exactly what was placed, and the sum is exact.
Then both replicas are SIGKILLed and restarted and 20 more buys come: the reservations survived, none is placed.
"""

from __future__ import annotations

import asyncio
import time
from decimal import ROUND_CEILING, ROUND_DOWN, Decimal
from typing import Any

import pytest

pytestmark = [pytest.mark.chaos, pytest.mark.integration]

SYMBOL = "BTCTRY"
INTENTS = 200
AFTER_RESTART = 20
BUDGET = Decimal(10000)
QUANTITY = Decimal("0.0001")
RISKS = ("risk-a", "risk-b")
ENV = {
    # Only the budget (and the cash reserve, far from binding) limits these buys.
    "RISK_EXPOSURE_BUDGET": str(BUDGET),
    "RISK_MAX_SYMBOL_EXPOSURE": str(BUDGET * 1000),
    "RISK_CASH_RESERVE": "300",
    "RISK_MAX_OPEN_ORDERS_PER_SYMBOL": "100000",
    "RISK_MAX_OPEN_ORDERS": "100000",
    "RISK_ORDER_COOLDOWN": "0",
    "RISK_DENY_UNKNOWN_OUTCOME": "false",
}


async def wait_for_snapshot(rig: Any, timeout: float = 60.0) -> None:
    """Until the ledger published the account's snapshot (risk denies buys without knowing the cash)."""
    from btcbot.contracts import subjects

    js = rig.nc.jetstream()
    deadline = time.monotonic() + timeout
    while True:
        try:
            await js.get_last_msg("PORTFOLIO", subjects.portfolio("main"))
            return
        except Exception:  # not found yet (nats raises NotFoundError)
            assert time.monotonic() < deadline, "the ledger published no portfolio snapshot"
            await asyncio.sleep(0.5)


async def verdicts(rig: Any, timeout: float, intents: int = INTENTS) -> dict[str, Any]:
    """Until every intent has a verdict and every approved order an outcome; returns verify's summary."""
    deadline = time.monotonic() + timeout
    while True:
        verdict = await rig.verdict()
        decided = verdict["submits"] + verdict["denied"] == intents
        if decided and verdict["accepted"] + verdict["rejected"] == verdict["submits"]:
            return verdict
        assert time.monotonic() < deadline, f"not settled: {verdict}"
        await asyncio.sleep(2.0)


async def test_two_risk_replicas_never_place_more_than_the_budget_together(chaos_rig: Any) -> None:
    async with chaos_rig(risk_replicas=RISKS, risk_env=ENV) as rig:
        await wait_for_snapshot(rig)
        bid, _ask = await rig.top()
        # Far below the market: the buys rest, nothing fills, so placed == reserved.
        price = (bid * Decimal("0.8")).quantize(Decimal(1), rounding=ROUND_DOWN)
        # Risk counts money in hundredths, rounded against us.
        notional = (price * QUANTITY).quantize(Decimal("0.01"), rounding=ROUND_CEILING)
        fits = int(BUDGET // notional)
        assert INTENTS * notional > 3 * BUDGET, "the intents must exceed the budget by far"
        # Give both replicas time to read the snapshot, then publish everything at once.
        await asyncio.sleep(2.0)
        await asyncio.gather(*(publish_buy(rig, price) for _ in range(INTENTS)))

        verdict = await asyncio.wait_for(verdicts(rig, 150.0), 160.0)
        buys, placed = await placed_buys(rig)
        assert placed <= BUDGET, (placed, len(buys), verdict)
        # The budget was used (so the test can fail), and nothing beyond what fits was approved.
        assert len(buys) == verdict["submits"] == fits, (len(buys), verdict, fits)
        assert all(Decimal(str(o["filled"])) == 0 for o in buys)
        # Every denial says why, and it is the budget.
        reasons = {e.get("reason") for name in RISKS for e in rig.log_events(name, "risk.denied")}
        assert reasons == {"EXPOSURE_BUDGET"}, reasons
        # Both replicas decided intents: the budget held across them, not inside one.
        decided = {name: len(rig.log_events(name, "risk.approved")) + len(rig.log_events(name, "risk.denied"))
                   for name in RISKS}  # fmt: skip
        assert all(n > 0 for n in decided.values()), decided
        assert sum(decided.values()) >= INTENTS

        # Reservations survive restarts: both replicas SIGKILLed and restarted, the budget is still used up.
        for name in RISKS:
            await rig.kill(name)
        for name in RISKS:
            await rig.restart(name)
        for name in RISKS:
            await rig.sup.wait_ready(name, 90)
        await asyncio.sleep(2.0)
        await asyncio.gather(*(publish_buy(rig, price) for _ in range(AFTER_RESTART)))
        after = await asyncio.wait_for(verdicts(rig, 60.0, INTENTS + AFTER_RESTART), 70.0)
        buys, placed = await placed_buys(rig)
        assert placed <= BUDGET, (placed, len(buys), after)
        assert len(buys) == after["submits"] == fits, (len(buys), after, fits)


async def placed_buys(rig: Any) -> tuple[list[dict[str, Any]], Decimal]:
    """Every buy order of the account at the simulator, and what they add up to."""
    state = await rig.state()
    buys = [o for o in state["orders"] if o["side"] == "buy" and o["pair"] == SYMBOL]
    return buys, sum((Decimal(str(o["price"])) * Decimal(str(o["quantity"])) for o in buys), Decimal(0))


async def publish_buy(rig: Any, price: Decimal) -> None:
    from btcbot.contracts import ids, subjects
    from btcbot.contracts.messages import OrderIntent

    book = ids.book_id(SYMBOL, time.time_ns(), len(rig.published))
    rig.published.append(book)
    intent = OrderIntent(
        id=ids.intent_id("chaos", SYMBOL, book), ts_ns=time.time_ns(), strategy="chaos", symbol=SYMBOL, side="buy",
        order_type="limit", price=price, quantity=QUANTITY, reason="budget chaos", book_id=book,
    )  # fmt: skip
    await rig.publisher.publish(subjects.intent(SYMBOL), intent)
