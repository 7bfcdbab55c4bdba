"""The one exchange-rules reload loop: loads, keeps the old rules on failure, retries with backoff, stops."""

import asyncio
import random
from decimal import Decimal

import structlog

from btcbot.btcturk.rulebook import RulesHolder, SymbolRules
from btcbot.runtime.rulefeed import keep_rules


class Info:
    def __init__(self, name: str, scale: int) -> None:
        self.name, self.status, self.numerator_scale, self.denominator_scale = name, "TRADING", scale, 0
        self.tick_size, self.min_exchange_value, self.min_price, self.max_price = Decimal(1), Decimal(10), None, None


class FlakyError(Exception):
    pass


async def test_the_loop_loads_survives_failures_and_reloads():
    answers: list[object] = [[Info("BTC_TRY", 8)], FlakyError("503"), [Info("BTCTRY", 8), Info("USDTTRY", 2)]]
    calls = 0

    async def fetch():
        nonlocal calls
        calls += 1
        answer = answers[min(calls - 1, len(answers) - 1)]
        if isinstance(answer, Exception):
            raise answer
        return answer

    holder: RulesHolder[Info] = RulesHolder()
    stop = asyncio.Event()
    loaded: list[int] = []
    task = asyncio.create_task(
        keep_rules(
            stop,
            fetch,
            holder,
            structlog.get_logger("t"),
            service="t",
            every=0.01,
            retry_max=1.0,
            errors=(FlakyError,),
            rng=random.Random(1),
            on_load=lambda: loaded.append(calls),
        )
    )
    for _ in range(400):
        if calls >= 3:
            break
        await asyncio.sleep(0.01)
    assert holder.loaded
    assert holder.rules is not None
    assert set(holder.rules) >= {"BTCTRY"}
    # The failure kept the first rules; the third load replaced them.
    assert loaded[:2] == [1, 3]
    assert holder.get("USDTTRY") == SymbolRules("USDTTRY", True, 0, 2, Decimal(1), Decimal(10))
    stop.set()
    await asyncio.wait_for(task, 5)


def test_rules_round_to_the_pair_s_steps():
    rules = SymbolRules("USDTTRY", True, price_scale=2, quantity_scale=2, tick_size=Decimal("0.01"))
    assert rules.round_quantity(Decimal("2.8977")) == Decimal("2.89")
    assert rules.round_price(Decimal("34.505"), up=True) == Decimal("34.51")
    assert rules.round_price(Decimal("34.505"), up=False) == Decimal("34.50")
    assert RulesHolder().get("BTCTRY") is None  # nothing loaded: no rules (callers hold back)
