import random

import pytest

from btcbot.marketdata.freshness import Freshness
from btcbot.runtime.backoff import Backoff


def test_fresh_only_when_every_symbol_polled_recently():
    f = Freshness(("BTCTRY", "ETHTRY"), max_age_ns=100)
    assert not f.fresh(0)
    f.record("BTCTRY", 10)
    assert f.stale_symbols(20) == ("ETHTRY",)
    f.record("ETHTRY", 20)
    assert f.fresh(110)
    assert not f.fresh(111)
    assert f.stale_symbols(111) == ("BTCTRY",)
    assert f.last_ok("ETHTRY") == 20


def test_backoff_grows_to_cap_and_resets():
    b = Backoff(0.1, 1.0, random.Random(1))
    delays = [b.failure() for _ in range(8)]
    ceilings = [min(1.0, 0.1 * 2**i) for i in range(8)]
    assert all(0.05 <= d <= c for d, c in zip(delays, ceilings, strict=True))
    assert b.failures == 8
    b.success()
    assert b.failures == 0
    assert b.failure() <= 0.1


def test_backoff_rejects_bad_bounds():
    with pytest.raises(ValueError, match="base"):
        Backoff(0, 1, random.Random())
