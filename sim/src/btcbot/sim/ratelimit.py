"""BTCTurk's documented per-endpoint rate limits as fixed windows that start at the first request."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

Policy = Literal["ip", "account"]


@dataclass(frozen=True)
class Limit:
    """At most `limit` calls per `period_s`; exceeding blocks the caller for `block_s`."""

    limit: int
    period_s: int
    block_s: int
    policy: Policy
    # Endpoints naming the same scope count against one window (graph-api's host-wide limit).
    scope: str | None = None

    @property
    def period_text(self) -> str:
        """How the 429 body spells the period ("1m", "1s")."""
        return f"{self.period_s // 60}m" if self.period_s % 60 == 0 else f"{self.period_s}s"


_ORDER = (Limit(300, 60, 60, "account"), Limit(10, 1, 1, "ip"))
# graph-api.btcturk.com/*: 600 per 10 minutes across all its paths, per IP.
_GRAPH = Limit(600, 600, 600, "ip", scope="graph")
# Keyed by (method, route name); route names are the aiohttp resource names used in rest.py.
LIMITS: dict[tuple[str, str], tuple[Limit, ...]] = {
    ("GET", "balances"): (Limit(120, 60, 60, "ip"),),
    ("POST", "order"): _ORDER,
    ("DELETE", "order"): _ORDER,
    ("GET", "order_by_id"): (Limit(900, 60, 60, "account"), Limit(30, 1, 1, "ip")),
    ("GET", "open_orders"): (Limit(300, 60, 60, "ip"),),
    ("GET", "all_orders"): (Limit(300, 60, 60, "ip"),),
    ("GET", "user_trades"): (Limit(120, 60, 60, "ip"),),
    ("GET", "crypto_transactions"): (Limit(90, 60, 60, "ip"),),
    ("GET", "fiat_transactions"): (Limit(90, 60, 60, "ip"),),
    ("GET", "ohlcs"): (Limit(120, 60, 60, "ip"), _GRAPH),
    ("GET", "klines"): (_GRAPH,),
    ("GET", "ticker"): (Limit(600, 60, 60, "ip"),),
    ("GET", "orderbook"): (Limit(180, 60, 60, "ip"),),
    # WebSocket: at most 15 connection attempts per minute, then new connections blocked for 60 s.
    ("WS", "connect"): (Limit(15, 60, 60, "ip"),),
}


@dataclass(frozen=True)
class Throttled:
    """A refused call: seconds to wait and the limit that was hit."""

    retry_after: int
    limit: Limit

    def body(self) -> dict[str, object]:
        """The documented 429 JSON body."""
        details = f"Quota exceeded. Maximum allowed: {self.limit.limit} per {self.limit.period_text}."
        if self.limit.policy == "account":
            details += f" Please try again in {self.retry_after} second(s)."
        return {
            "message": "TOO_MANY_REQUESTS",
            "success": False,
            "code": 429,
            "details": details,
            "limit": str(self.limit.limit),
            "period": self.limit.period_text,
            "policy": self.limit.policy,
        }


@dataclass
class _Window:
    start_ms: int
    count: int = 0
    blocked_until_ms: int = 0


class RateLimiter:
    """Counts calls per (endpoint, limit, caller) and refuses those over quota."""

    def __init__(self) -> None:
        self._windows: dict[tuple[str, str, int, str], _Window] = {}

    def check(self, method: str, route: str, ip: str, account: str | None, now_ms: int) -> Throttled | None:
        """Count one call; return Throttled if any limit of the endpoint is exceeded."""
        for index, limit in enumerate(LIMITS.get((method, route), ())):
            subject = ip if limit.policy == "ip" or account is None else account
            key = ("*", limit.scope, 0, subject) if limit.scope else (method, route, index, subject)
            window = self._windows.get(key)
            if window is None or now_ms >= window.start_ms + limit.period_s * 1000:
                if window is not None and now_ms < window.blocked_until_ms:
                    return self._throttled(window, limit, now_ms)
                window = _Window(now_ms)
                self._windows[key] = window
            if now_ms < window.blocked_until_ms:
                return self._throttled(window, limit, now_ms)
            window.count += 1
            if window.count > limit.limit:
                window.blocked_until_ms = now_ms + limit.block_s * 1000
                return self._throttled(window, limit, now_ms)
        return None

    @staticmethod
    def _throttled(window: _Window, limit: Limit, now_ms: int) -> Throttled:
        return Throttled(max(1, math.ceil((window.blocked_until_ms - now_ms) / 1000)), limit)
