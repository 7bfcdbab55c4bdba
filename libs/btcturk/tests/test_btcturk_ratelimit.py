"""Rate limiter timing with an injected clock: it never exceeds any documented window."""

import asyncio

import pytest

from btcbot.btcturk.limits import DEFAULT_LIMITS, Budget, EndpointGroup, Window
from btcbot.btcturk.ratelimit import RateLimiter


class FakeTime:
    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)


def max_in_any_window(times: list[float], period: float) -> int:
    return max(sum(1 for t in times if start <= t < start + period) for start in times)


def test_documented_limits_table():
    assert DEFAULT_LIMITS[EndpointGroup.SUBMIT] == (Window(300, 60.0), Window(10, 1.0))
    assert DEFAULT_LIMITS[EndpointGroup.CANCEL] == (Window(300, 60.0), Window(10, 1.0))
    assert DEFAULT_LIMITS[EndpointGroup.GET_ORDER] == (Window(900, 60.0), Window(30, 1.0))
    assert DEFAULT_LIMITS[EndpointGroup.BALANCES] == (Window(120, 60.0),)
    assert DEFAULT_LIMITS[EndpointGroup.ORDERBOOK] == (Window(180, 60.0),)
    assert DEFAULT_LIMITS[EndpointGroup.TICKER] == (Window(600, 60.0),)
    assert set(DEFAULT_LIMITS) == set(EndpointGroup)


async def test_per_second_window_spaces_bursts():
    ft = FakeTime()
    limiter = RateLimiter(clock=ft.clock, sleep=ft.sleep, margin=0.05)
    sent: list[float] = []
    for _ in range(25):
        await limiter.acquire(EndpointGroup.SUBMIT)
        sent.append(ft.now)
    assert sent[:10] == [1000.0] * 10
    assert max_in_any_window(sent, 1.0) == 10
    assert sent[10] == pytest.approx(1001.05)
    assert sent[20] == pytest.approx(1002.10)


async def test_per_minute_window_also_holds():
    ft = FakeTime()
    limiter = RateLimiter({EndpointGroup.SUBMIT: (Window(300, 60.0), Window(10, 1.0))}, clock=ft.clock, sleep=ft.sleep)
    sent = []
    for _ in range(320):
        await limiter.acquire(EndpointGroup.SUBMIT)
        sent.append(ft.now)
    assert max_in_any_window(sent, 60.0) == 300
    assert max_in_any_window(sent, 1.0) == 10
    assert sent[300] - sent[0] >= 60.0


async def test_concurrent_callers_share_the_budget():
    ft = FakeTime()
    limiter = RateLimiter({EndpointGroup.BALANCES: (Window(5, 1.0),)}, clock=ft.clock, sleep=ft.sleep)
    sent: list[float] = []

    async def one() -> None:
        await limiter.acquire(EndpointGroup.BALANCES)
        sent.append(ft.now)

    await asyncio.gather(*(one() for _ in range(12)))
    assert len(sent) == 12
    assert max_in_any_window(sorted(sent), 1.0) == 5


async def test_retry_after_blocks_only_that_group():
    ft = FakeTime()
    limiter = RateLimiter(clock=ft.clock, sleep=ft.sleep)
    limiter.block(EndpointGroup.BALANCES, 7.5)
    assert limiter.delay(EndpointGroup.BALANCES) == pytest.approx(7.5)
    assert limiter.delay(EndpointGroup.TICKER) == 0
    await limiter.acquire(EndpointGroup.TICKER)
    assert ft.now == 1000.0
    await limiter.acquire(EndpointGroup.BALANCES)
    assert ft.now == pytest.approx(1007.5)


def test_budget_block_never_shortens():
    budget = Budget((Window(1, 1.0),), margin=0.0)
    budget.block_until(10.0)
    budget.block_until(5.0)
    assert budget.blocked_until == 10.0
    assert budget.delay(4.0) == 6.0


@pytest.mark.parametrize("windows", [(), (Window(0, 1.0),), (Window(1, 0.0),)])
def test_budget_rejects_bad_windows(windows):
    with pytest.raises(ValueError, match="invalid windows"):
        Budget(windows)


def test_documented_limits_of_transactions_and_graph_api():
    assert DEFAULT_LIMITS[EndpointGroup.CRYPTO_TRANSACTIONS] == (Window(90, 60.0),)
    assert DEFAULT_LIMITS[EndpointGroup.FIAT_TRANSACTIONS] == (Window(90, 60.0),)
    assert DEFAULT_LIMITS[EndpointGroup.OHLC] == (Window(120, 60.0),)


async def test_graph_api_budget_is_shared_by_ohlc_and_klines():
    ft = FakeTime()
    limiter = RateLimiter(clock=ft.clock, sleep=ft.sleep, margin=0.0)
    sent = []
    for i in range(700):
        await limiter.acquire(EndpointGroup.KLINES if i % 3 else EndpointGroup.OHLC)
        sent.append(ft.now)
    # 600 per 10 minutes across both groups, although each alone would allow 600 klines.
    assert max_in_any_window(sent, 600.0) == 600
    # The 601st waits for the first request of the shared window to age out.
    assert sent[600] == pytest.approx(1600.0)


async def test_groups_outside_the_pool_keep_their_own_budget():
    ft = FakeTime()
    limiter = RateLimiter(clock=ft.clock, sleep=ft.sleep)
    for _ in range(600):
        await limiter.acquire(EndpointGroup.KLINES)
    assert limiter.delay(EndpointGroup.OHLC) > 0
    assert limiter.delay(EndpointGroup.TICKER) == 0
