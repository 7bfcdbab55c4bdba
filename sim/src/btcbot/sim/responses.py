"""JSON responses in BTCTurk's envelope, and the app keys shared by the HTTP modules."""

from __future__ import annotations

from typing import Any

import msgspec
from aiohttp import web

from btcbot.sim.config import Account
from btcbot.sim.rules import ERROR_CODES
from btcbot.sim.state import SimState
from btcbot.sim.ws import WsHub

STATE: web.AppKey[SimState] = web.AppKey("sim_state", SimState)
HUB: web.AppKey[WsHub] = web.AppKey("sim_ws_hub", WsHub)
# Set by the gateway on authenticated private calls.
ACCOUNT_KEY: web.RequestKey[Account] = web.RequestKey("sim_account", Account)

_encoder = msgspec.json.Encoder(decimal_format="number")


def raw(payload: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    """A JSON response without envelope."""
    return web.Response(body=_encoder.encode(payload), status=status, headers=headers, content_type="application/json")


def ok(data: Any, message: str | None = None, *, with_data: bool = True) -> web.Response:
    """`{"success":true,"message":...,"code":0,"data":...}`."""
    body: dict[str, Any] = {"success": True, "message": message, "code": 0}
    if with_data:
        body["data"] = data
    return raw(body)


def fail(status: int, message: str, code: int | None = None) -> web.Response:
    """`{"success":false,"message":...,"code":...}` with the given HTTP status."""
    return raw(
        {"success": False, "message": message, "code": code if code is not None else ERROR_CODES.get(message, status)},
        status,
    )


def account_of(request: web.Request) -> Account:
    """The account the gateway authenticated for this request."""
    return request[ACCOUNT_KEY]
