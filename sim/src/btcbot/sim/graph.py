"""Candle endpoints: graph-api /v1/ohlcs and /v1/klines/history (bare JSON, times in seconds), and the
legacy enveloped /api/v2/ohlc. Candles come from the simulator's own trades (see candles.py)."""

from __future__ import annotations

from aiohttp import web

from btcbot.sim import views
from btcbot.sim.candles import DAY_S, MINUTE_S, WEEK_S
from btcbot.sim.responses import STATE, fail, ok, raw
from btcbot.sim.state import SimState

PAIR_NOT_FOUND = "PAIR_NOT_FOUND"
_NAMED_RESOLUTIONS = {"D": DAY_S, "1D": DAY_S, "1DAY": DAY_S, "W": WEEK_S, "1W": WEEK_S, "1WEEK": WEEK_S}


def _state(request: web.Request) -> SimState:
    return request.app[STATE]


def resolution_seconds(text: str) -> int | None:
    """Seconds of a klines resolution: minutes dividing a day ("1", "60", "240"), "1D" or "1W" (ccxt's "1 day"
    and "1 week" too); None if unsupported."""
    key = text.strip().upper().replace(" ", "")
    if key in _NAMED_RESOLUTIONS:
        return _NAMED_RESOLUTIONS[key]
    if key.isdigit():
        minutes = int(key)
        if 0 < minutes <= 1440 and 1440 % minutes == 0:
            return minutes * MINUTE_S
    return None


def _opt_int(request: web.Request, name: str) -> int | None:
    value = request.query.get(name)
    return None if value is None or value == "" else int(value)


def _udf_error(message: str) -> web.Response:
    # TradingView UDF servers report errors in the body with HTTP 200.
    return raw({"s": "error", "errmsg": message})


async def ohlcs(request: web.Request) -> web.Response:
    """GET /v1/ohlcs?pair=&from=&to=: daily bars (bare array), every pair when `pair` is absent."""
    state = _state(request)
    name = request.query.get("pair")
    if name:
        rules = state.symbol(name)
        # graph-api answers with data, not an envelope: an unknown pair simply has no candles.
        pairs = [rules] if rules is not None else []
    else:
        pairs = list(state.config.symbols)
    try:
        from_s, to_s = _opt_int(request, "from"), _opt_int(request, "to")
    except ValueError:
        return raw([])
    return raw([views.ohlc_day(p, bar) for p in pairs for bar in state.engine.candles(p.name).days(from_s, to_s)])


async def klines(request: web.Request) -> web.Response:
    """GET /v1/klines/history?symbol=&resolution=&from=&to=: TradingView UDF bars, or `"s":"no_data"`."""
    state = _state(request)
    rules = state.symbol(request.query.get("symbol", ""))
    if rules is None:
        return _udf_error("unknown symbol")
    resolution = resolution_seconds(request.query.get("resolution", ""))
    if resolution is None:
        return _udf_error("unsupported resolution")
    try:
        from_s, to_s = _opt_int(request, "from"), _opt_int(request, "to")
    except ValueError:
        return _udf_error("from and to must be unix seconds")
    if from_s is None or to_s is None:
        return _udf_error("from and to are required")
    bars = state.engine.candles(rules.name).bars(resolution, from_s, to_s)
    return raw(views.klines(rules, bars))


async def legacy_ohlc(request: web.Request) -> web.Response:
    """GET /api/v2/ohlc?pairSymbol=&last=: daily bars, oldest first, the newest `last` if given."""
    state = _state(request)
    rules = state.symbol(request.query.get("pairSymbol", ""))
    if rules is None:
        return fail(400, PAIR_NOT_FOUND)
    try:
        last = _opt_int(request, "last")
    except ValueError:
        return fail(400, "FAILED_ORDER_PARAMETER")
    days = state.engine.candles(rules.name).days()
    if last is not None:
        days = days[-last:] if last > 0 else []
    return ok([views.legacy_ohlc(rules, bar) for bar in days])


def add_routes(app: web.Application) -> None:
    """Register the candle paths; graph-api's live on the same port as the REST API here."""
    r = app.router
    r.add_get("/v1/ohlcs", ohlcs, name="ohlcs")
    r.add_get("/v1/klines/history", klines, name="klines")
    r.add_get("/api/v2/ohlc", legacy_ohlc, name="legacy_ohlc")
