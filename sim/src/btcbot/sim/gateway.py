"""What stands in front of every /api/ handler: injected faults, rate limits and authentication."""

from __future__ import annotations

import asyncio

from aiohttp import web
from aiohttp.typedefs import Handler

from btcbot.sim.auth import AuthFailed, authenticate
from btcbot.sim.ratelimit import LIMITS, Limit, Throttled
from btcbot.sim.responses import ACCOUNT_KEY, STATE, fail, raw

PRIVATE_ROUTES = frozenset(
    {
        "balances",
        "order",
        "order_by_id",
        "open_orders",
        "all_orders",
        "user_trades",
        "crypto_transactions",
        "fiat_transactions",
    }
)
# BTCTurk's REST paths, and graph-api's (served on the same port here).
EXCHANGE_PREFIXES = ("/api/", "/v1/")


def _too_many(throttled: Throttled) -> web.Response:
    return raw(throttled.body(), 429, headers={"Retry-After": str(throttled.retry_after)})


@web.middleware
async def gateway(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Apply latency, 5xx, 429 storm, rate limits and HMAC auth in that order."""
    if not request.path.startswith(EXCHANGE_PREFIXES):
        return await handler(request)
    state = request.app[STATE]
    state.received(request.method, request.path)
    faults = state.faults
    name = request.match_info.route.name
    # Aliases (other spellings of one path) share the limits of the original route.
    route = name.removesuffix("_alias") if name else None
    if faults.latency_ms:
        await asyncio.sleep(faults.latency_ms / 1000)
    if faults.error_5xx_rate and state.fault_rng.random() < faults.error_5xx_rate:
        return fail(500, "INTERNAL_SERVER_ERROR", 500)
    private = route in PRIVATE_ROUTES
    if private and faults.storm_429_retry_after:
        limits = LIMITS.get((request.method, route or ""), (Limit(60, 60, 60, "ip"),))
        return _too_many(Throttled(faults.storm_429_retry_after, limits[0]))
    if state.config.rate_limits_enabled and route:
        ip = request.remote or "unknown"
        throttled = state.limiter.check(request.method, route, ip, request.headers.get("X-PCK"), state.now_ms())
        if throttled is not None:
            return _too_many(throttled)
    if private:
        result = authenticate(request.headers, state.accounts, state.now_ms(), state.config.stamp_window_ms)
        if isinstance(result, AuthFailed):
            return fail(401, result.message, 401)
        request[ACCOUNT_KEY] = result
    return await handler(request)
