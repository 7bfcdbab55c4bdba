"""Simulator-only endpoints under /sim/: health, an account's full record, and fault switches.

Every one but /sim/health moves money or reads an account, so each needs the admin token (`--admin-token`,
SIM_ADMIN_TOKEN) in `X-Sim-Admin-Token` or `Authorization: Bearer`; without one configured they answer 401 to
everyone (fail closed).
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler

from btcbot.sim import snapshot
from btcbot.sim.config import Account
from btcbot.sim.responses import HUB, STATE, raw
from btcbot.sim.views import plain

ADMIN_HEADER = "X-Sim-Admin-Token"
OPEN_PATHS = frozenset({"/sim/health"})
# Where the exchange saves its state (`--state-file`); absent: nothing to save to.
STATE_FILE: web.AppKey[Path] = web.AppKey("sim_state_file", Path)


def presented_token(headers: Any) -> str:
    """The admin token a request carries (X-Sim-Admin-Token, or Authorization: Bearer), or ""."""
    token = headers.get(ADMIN_HEADER, "")
    if not token:
        scheme, _, value = headers.get("Authorization", "").partition(" ")
        if scheme.lower() == "bearer":
            token = value.strip()
    return str(token)


def admin_allowed(configured: str | None, presented: str) -> bool:
    """True only when a token is configured and the request presents exactly it (constant-time compare)."""
    if not configured or not presented:
        return False
    return hmac.compare_digest(configured.encode(), presented.encode())


@web.middleware
async def require_admin(request: web.Request, handler: Handler) -> web.StreamResponse:
    """401 for /sim/* (except health) without the admin token."""
    # Judge both the path as sent and the route it resolved to, so no spelling of a path slips past.
    resource = request.match_info.route.resource
    paths = {request.path, resource.canonical if resource is not None else ""}
    guarded = any(p.startswith("/sim/") for p in paths) and not paths & OPEN_PATHS
    if guarded and not admin_allowed(request.app[STATE].config.admin_token, presented_token(request.headers)):
        return raw(
            {"error": f"admin token required ({ADMIN_HEADER} or Authorization: Bearer)"},
            401,
            headers={"WWW-Authenticate": 'Bearer realm="sim-admin"'},
        )
    return await handler(request)


async def health(request: web.Request) -> web.Response:
    """GET /sim/health."""
    state = request.app[STATE]
    return raw({"status": "ok", "serverTime": state.now_ms(), "symbols": [s.name for s in state.config.symbols]})


async def account_state(request: web.Request) -> web.Response:
    """GET /sim/state?apiKey=K: every order, trade and balance of the account (the exchange's record)."""
    state = request.app[STATE]
    key = request.query.get("apiKey", "")
    if key not in state.accounts:
        return raw({"error": f"unknown apiKey {key!r}"}, 404)
    engine = state.engine
    wallet = engine.wallet(key)
    orders: list[dict[str, Any]] = [
        {
            "id": o.order_id,
            "clientId": o.client_id,
            "pair": o.pair,
            "side": o.side,
            "method": o.method,
            "price": plain(o.price),
            "quantity": plain(o.quantity),
            "status": o.status,
            "filled": plain(o.filled_base),
            "filledQuote": plain(o.filled_quote),
            "left": plain(o.left),
            "createdMs": o.created_ms,
            "updatedMs": o.updated_ms,
        }
        for o in engine.orders_of(key)
    ]
    trades: list[dict[str, Any]] = [
        {
            "tradeId": t.trade_id,
            "orderId": t.order_id,
            "clientId": t.client_id,
            "pair": t.pair,
            "side": t.side,
            "price": plain(t.price),
            "amount": plain(t.amount),
            "fee": plain(t.fee),
            "tax": plain(t.tax),
            "maker": t.is_maker,
            "ts": t.ts_ms,
        }
        for t in engine.trades_of(key)
    ]
    balances = {
        asset: {
            "total": plain(wallet.balance(asset).total),
            "locked": plain(wallet.balance(asset).locked),
            "free": plain(wallet.balance(asset).free),
        }
        for asset in wallet.assets()
    }
    return raw({"apiKey": key, "orders": orders, "trades": trades, "balances": balances})


def save(app: web.Application) -> Path | None:
    """Write the exchange's state to the state file, if the app has one; returns where it wrote."""
    path = app.get(STATE_FILE)
    if path is None:
        return None
    snapshot.write_atomically(path, app[STATE].saved())
    return path


async def save_state(request: web.Request) -> web.Response:
    """POST /sim/save: write the state file now (what a shutdown does too); 409 without --state-file."""
    path = save(request.app)
    if path is None:
        return raw({"error": "no --state-file configured"}, 409)
    return raw({"saved": str(path)})


async def get_faults(request: web.Request) -> web.Response:
    """GET /sim/faults."""
    return raw(request.app[STATE].faults.to_dict())


async def set_faults(request: web.Request) -> web.Response:
    """POST /sim/faults with a partial JSON object; answers with all faults after the change."""
    faults = request.app[STATE].faults
    try:
        changes = json.loads(await request.text())
        if not isinstance(changes, dict):
            raise ValueError("body must be a JSON object")
        faults.update(changes)
    except ValueError as exc:
        return raw({"error": str(exc)}, 400)
    return raw(faults.to_dict())


async def add_account(request: web.Request) -> web.Response:
    """POST /sim/accounts `{"apiKey", "apiSecret" (base64), "balances": {"TRY": "1000"}}`."""
    state = request.app[STATE]
    try:
        body = json.loads(await request.text())
        if not isinstance(body, dict):
            raise ValueError("body must be a JSON object")
        key, secret, balances = body.get("apiKey"), body.get("apiSecret"), body.get("balances", {})
        if not isinstance(key, str) or not key or not isinstance(secret, str) or not isinstance(balances, dict):
            raise ValueError("apiKey and apiSecret strings and a balances object are required")
        base64.b64decode(secret, validate=True)
        funds = {str(asset).upper(): Decimal(str(amount)) for asset, amount in balances.items()}
        if any(not v.is_finite() or v < 0 for v in funds.values()):
            raise ValueError("balances must be non-negative numbers")
        if key in state.accounts:
            return raw({"error": f"apiKey {key!r} exists"}, 409)
        state.add_account(Account(key, secret, funds))
    except (ValueError, InvalidOperation, binascii.Error) as exc:
        return raw({"error": str(exc) or "invalid account"}, 400)
    return raw({"apiKey": key}, 201)


async def move_market(request: web.Request) -> web.Response:
    """POST /sim/market `{"pair": "BTCTRY", "mid": "3500000", "ticks": 10}`: set the mid and/or run ticks."""
    state = request.app[STATE]
    try:
        body = json.loads(await request.text())
        if not isinstance(body, dict):
            raise ValueError("body must be a JSON object")
        ticks = body.get("ticks", 0)
        if isinstance(ticks, bool) or not isinstance(ticks, int) or not 0 <= ticks <= 10_000:
            raise ValueError("ticks must be an integer from 0 to 10000")
        if "mid" in body:
            rules = state.symbol(str(body.get("pair", "")))
            if rules is None:
                raise ValueError("unknown pair")
            state.crowd.set_mid(rules.name, Decimal(str(body["mid"])))
    except (ValueError, InvalidOperation) as exc:
        return raw({"error": str(exc) or "invalid request"}, 400)
    for _ in range(ticks):
        state.tick()
    mids = {s.name: plain(state.crowd.mid(s.name)) for s in state.config.symbols}
    return raw({"mid": mids, "ticks": ticks})


async def requests_received(request: web.Request) -> web.Response:
    """GET /sim/requests[?since=N]: count of /api/ and /v1/ requests, and the logged ones after the first N."""
    state = request.app[STATE]
    try:
        since = int(request.query.get("since", "0"))
    except ValueError:
        return raw({"error": "since must be an integer"}, 400)
    # The log holds the newest requests only; `first` is the count of the oldest one it still holds.
    first = state.requests_received - len(state.request_log)
    skip = max(0, since - first)
    recent = [{"ts": r.ts_ms, "method": r.method, "path": r.path} for i, r in enumerate(state.request_log) if i >= skip]
    return raw({"count": state.requests_received, "first": first + skip, "requests": recent})


async def obdiff_book(request: web.Request) -> web.Response:
    """GET /sim/obdiff?pair=BTCTRY[&cs=N]: the book an obdiff subscriber holds at change-set N.

    Without `cs`: the latest CS of each live obdiff subscription to the pair.
    """
    hub = request.app[HUB]
    pair = request.query.get("pair", "")
    if "cs" not in request.query:
        return raw({"pair": pair, "subscriptions": hub.book_subscriptions(pair)})
    try:
        cs = int(request.query["cs"])
    except ValueError:
        return raw({"error": "cs must be an integer"}, 400)
    levels = hub.book_at(pair, cs)
    if levels is None:
        return raw({"error": f"no live obdiff subscription of {pair!r} remembers CS {cs}"}, 404)
    bids, asks = levels
    return raw(
        {
            "pair": pair,
            "cs": cs,
            "bids": [[plain(p), plain(bids[p])] for p in sorted(bids, reverse=True)],
            "asks": [[plain(p), plain(asks[p])] for p in sorted(asks)],
        }
    )


def add_routes(app: web.Application) -> None:
    """Register /sim/* routes."""
    app.router.add_get("/sim/health", health)
    app.router.add_get("/sim/state", account_state)
    app.router.add_get("/sim/faults", get_faults)
    app.router.add_post("/sim/save", save_state)
    app.router.add_post("/sim/faults", set_faults)
    app.router.add_post("/sim/accounts", add_account)
    app.router.add_post("/sim/market", move_market)
    app.router.add_get("/sim/requests", requests_received)
    app.router.add_get("/sim/obdiff", obdiff_book)
