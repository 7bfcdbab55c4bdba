"""Fixed-window rate limits with blocking, per documented endpoint."""

from __future__ import annotations

from btcbot.sim.ratelimit import RateLimiter

T0 = 1_000_000


def test_balances_limit_blocks_for_a_minute_per_ip() -> None:
    limiter = RateLimiter()
    for i in range(120):
        assert limiter.check("GET", "balances", "1.1.1.1", "k", T0 + i) is None
    hit = limiter.check("GET", "balances", "1.1.1.1", "k", T0 + 500)
    assert hit is not None
    assert hit.retry_after == 60
    assert hit.body() == {
        "message": "TOO_MANY_REQUESTS",
        "success": False,
        "code": 429,
        "details": "Quota exceeded. Maximum allowed: 120 per 1m.",
        "limit": "120",
        "period": "1m",
        "policy": "ip",
    }
    # another ip is counted on its own
    assert limiter.check("GET", "balances", "2.2.2.2", "k", T0 + 500) is None
    # still blocked after the window ends, because the block runs from the violation
    blocked = limiter.check("GET", "balances", "1.1.1.1", "k", T0 + 60_100)
    assert blocked is not None
    assert blocked.retry_after == 1
    assert limiter.check("GET", "balances", "1.1.1.1", "k", T0 + 60_500) is None


def test_order_submit_has_a_per_second_ip_limit() -> None:
    limiter = RateLimiter()
    for i in range(10):
        assert limiter.check("POST", "order", "ip", f"key{i}", T0 + i) is None
    hit = limiter.check("POST", "order", "ip", "key", T0 + 20)
    assert hit is not None
    assert (hit.limit.limit, hit.limit.period_text, hit.retry_after) == (10, "1s", 1)
    assert limiter.check("POST", "order", "ip", "key", T0 + 1100) is None


def test_order_submit_account_limit_per_minute() -> None:
    limiter = RateLimiter()
    now = T0
    for i in range(300):
        now = T0 + i * 150  # under 10/s
        assert limiter.check("POST", "order", f"ip{i % 50}", "acct", now) is None
    hit = limiter.check("POST", "order", "ip-new", "acct", now + 150)
    assert hit is not None
    assert hit.limit.policy == "account"
    assert "Please try again in" in str(hit.body()["details"])
    assert limiter.check("POST", "order", "ip-new", "other-acct", now + 150) is None


def test_unlisted_endpoint_is_not_limited() -> None:
    limiter = RateLimiter()
    for i in range(5000):
        assert limiter.check("GET", "exchangeinfo", "ip", None, T0 + i) is None
