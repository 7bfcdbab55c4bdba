"""Property tests: number parsing round-trips and the budget never over-sends."""

from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from btcbot.btcturk.limits import Budget, Window
from btcbot.btcturk.parse import to_decimal

decimals = st.decimals(allow_nan=False, allow_infinity=False, min_value=-(10**12), max_value=10**12, places=16)


@given(decimals)
def test_to_decimal_round_trips_dot_and_comma(value: Decimal) -> None:
    text = format(value, "f")
    assert to_decimal(text) == value
    assert to_decimal(text.replace(".", ",")) == value


@settings(max_examples=60)
@given(
    gaps=st.lists(st.floats(min_value=0.0, max_value=0.7), min_size=1, max_size=80),
    limit=st.integers(min_value=1, max_value=12),
    period=st.sampled_from([1.0, 2.5, 10.0]),
)
def test_budget_never_exceeds_window(gaps: list[float], limit: int, period: float) -> None:
    budget = Budget((Window(limit, period), Window(limit * 3, period * 4)), margin=0.0)
    now = 0.0
    sent: list[float] = []
    for gap in gaps:
        now += gap
        while (wait := budget.delay(now)) > 0:  # as RateLimiter.acquire does
            now += wait
        budget.record(now)
        sent.append(now)
    for start in sent:
        assert sum(1 for t in sent if start <= t < start + period) <= limit
        assert sum(1 for t in sent if start <= t < start + period * 4) <= limit * 3
