"""Candle endpoints (graph-api ohlcs and klines, legacy ohlc) and the crypto/fiat transaction lists over HTTP."""

from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import pytest

from btcbot.sim.candles import DAY_S
from btcbot.sim.config import MarketSettings

D = Decimal
# The fixtures' fake clock starts here (conftest.START_MS).
START_MS = 1_764_000_000_000
Sim = Any


@pytest.fixture
async def sim(sim_factory: Any) -> AsyncIterator[Sim]:
    """Without the synthesized past day, so every candle comes from a trade these tests print."""
    async with sim_factory(market=MarketSettings(history_minutes=0)) as running:
        yield running


async def _market_buy(sim: Sim, quote: str) -> None:
    body = {"pairSymbol": "BTCTRY", "orderType": "buy", "orderMethod": "market", "quantity": quote}
    status, reply = await sim.private("POST", "/api/v1/order", json=body)
    assert status == 200, reply


async def _trades_since(sim: Sim, since_ms: int) -> list[dict]:
    _, body = await sim.public("/api/v2/trades", pairSymbol="BTCTRY", last=50)
    return sorted((t for t in body["data"] if t["date"] >= since_ms), key=lambda t: (t["date"], int(t["tid"])))


async def test_klines_are_built_from_the_trades_printed(sim: Sim):
    start_s = START_MS // 1000
    await _market_buy(sim, "2000")
    sim.clock.now += 61_000
    await _market_buy(sim, "3000")
    trades = await _trades_since(sim, START_MS)
    assert len({t["date"] for t in trades}) == 2
    status, body = await sim.public(
        "/v1/klines/history", symbol="BTCTRY", resolution="1", **{"from": start_s - 60, "to": start_s + 120}
    )
    assert status == 200
    assert body["s"] == "ok"
    assert len(body["t"]) == 2
    assert body["t"] == sorted({t["date"] // 60_000 * 60 for t in trades})
    for i, minute in enumerate(body["t"]):
        prices = [D(t["price"]) for t in trades if t["date"] // 60_000 * 60 == minute]
        amounts = [D(t["amount"]) for t in trades if t["date"] // 60_000 * 60 == minute]
        assert (D(str(body["o"][i])), D(str(body["c"][i]))) == (prices[0], prices[-1])
        assert (D(str(body["h"][i])), D(str(body["l"][i]))) == (max(prices), min(prices))
        assert D(str(body["v"][i])) == sum(amounts)
    _, hourly = await sim.public(
        "/v1/klines/history", symbol="BTC_TRY", resolution="60", **{"from": start_s - 3600, "to": start_s + 3600}
    )
    assert D(str(hourly["v"][0])) == sum(D(t["amount"]) for t in trades)
    _, empty = await sim.public(
        "/v1/klines/history", symbol="BTCTRY", resolution="1D", **{"from": start_s - 10 * DAY_S, "to": start_s - DAY_S}
    )
    assert empty == {"s": "no_data"}


async def test_klines_errors_are_udf_errors(sim: Sim):
    window = {"from": 0, "to": START_MS // 1000}
    for params in (
        {"symbol": "NOPE", "resolution": "1", **window},
        {"symbol": "BTCTRY", "resolution": "7", **window},
        {"symbol": "BTCTRY", "resolution": "1"},
    ):
        status, body = await sim.public("/v1/klines/history", **params)
        assert status == 200
        assert body["s"] == "error"
        assert body["errmsg"]


async def test_ohlcs_and_legacy_ohlc_report_the_day(sim: Sim):
    await _market_buy(sim, "2000")
    trades = await _trades_since(sim, START_MS)
    day_s = START_MS // 1000 // DAY_S * DAY_S
    status, days = await sim.public("/v1/ohlcs", pair="BTCTRY")
    assert status == 200
    (day,) = days
    assert (day["pair"], day["time"]) == ("BTCTRY", day_s)
    assert D(str(day["volume"])) == sum(D(t["amount"]) for t in trades)
    assert D(str(day["total"])) == sum(D(t["amount"]) * D(t["price"]) for t in trades)
    assert D(str(day["dailyChangeAmount"])) == D(str(day["close"])) - D(str(day["open"]))
    _, every_pair = await sim.public("/v1/ohlcs")
    assert {d["pair"] for d in every_pair} == {"BTCTRY"}
    _, outside = await sim.public("/v1/ohlcs", pair="BTCTRY", **{"from": day_s + DAY_S})
    assert outside == []
    _, unknown = await sim.public("/v1/ohlcs", pair="NOPE")
    assert unknown == []
    status, legacy = await sim.public("/api/v2/ohlc", pairSymbol="BTC_TRY", last=5)
    assert status == 200
    assert legacy["success"] is True
    (row,) = legacy["data"]
    assert (row["pairSymbol"], row["pairSymbolNormalized"], row["time"]) == ("BTCTRY", "BTC_TRY", day_s * 1000)
    assert D(row["volume"]) == D(str(day["volume"])).quantize(D("0.00000001"))
    status, missing = await sim.public("/api/v2/ohlc", pairSymbol="NOPE")
    assert (status, missing["message"]) == (400, "PAIR_NOT_FOUND")


async def test_initial_funding_shows_as_deposits(sim: Sim):
    status, crypto = await sim.private("GET", "/api/v1/users/transactions/crypto")
    assert status == 200
    assert crypto["message"] == "SUCCESS"
    assert {(t["currencySymbol"], t["amount"]) for t in crypto["data"]} == {("BTC", 1), ("ETH", 20)}
    assert all(t["balanceType"] == "Deposit" and t["timestamp"] == START_MS for t in crypto["data"])
    assert all(t["funds"] == t["amount"] and t["fee"] == 0 and t["tax"] == 0 for t in crypto["data"])
    _, fiat = await sim.private("GET", "/api/v1/users/transactions/fiat")
    assert [(t["currencySymbol"], t["amount"]) for t in fiat["data"]] == [("TRY", 1_000_000)]
    _, only_eth = await sim.private("GET", "/api/v1/users/transactions/crypto", params=[("symbol", "eth")])
    assert [t["currencySymbol"] for t in only_eth["data"]] == ["ETH"]
    _, withdrawals = await sim.private(
        "GET", "/api/v1/users/transactions/crypto", params=[("type", "withdrawal"), ("symbol", "btc")]
    )
    assert withdrawals["data"] == []
    _, later = await sim.private("GET", "/api/v1/users/transactions/fiat", params={"startDate": START_MS + 1})
    assert later["data"] == []
    _, other = await sim.private("GET", "/api/v1/users/transactions/crypto", key=sim.other_key, secret=sim.other_secret)
    assert [t["currencySymbol"] for t in other["data"]] == ["BTC"]
    status, bad = await sim.private("GET", "/api/v1/users/transactions/crypto", params={"type": "trade"})
    assert (status, bad["message"]) == (400, "FAILED_ORDER_PARAMETER")


async def test_transactions_need_auth(sim: Sim):
    status, body = await sim.public("/api/v1/users/transactions/fiat")
    assert status == 401
    assert body["success"] is False


async def test_documented_limits_of_the_new_endpoints(sim: Sim):
    for _ in range(90):
        status, _ = await sim.private("GET", "/api/v1/users/transactions/crypto")
        assert status == 200
    async with sim.session.get(sim.url("/api/v1/users/transactions/crypto"), headers=sim.headers()) as resp:
        assert resp.status == 429
        assert resp.headers["Retry-After"] == "60"
        assert (await resp.json())["details"] == "Quota exceeded. Maximum allowed: 90 per 1m."
    # The fiat list has a window of its own.
    status, _ = await sim.private("GET", "/api/v1/users/transactions/fiat")
    assert status == 200


async def test_graph_api_limit_is_shared_by_its_paths(sim: Sim):
    kline = ("/v1/klines/history", {"symbol": "BTCTRY", "resolution": "1", "from": 0, "to": START_MS // 1000})
    ohlc = ("/v1/ohlcs", {"pair": "BTCTRY"})
    for i in range(600):
        # A minute every 100 requests keeps /v1/ohlcs under its own 120 a minute; all of it stays in 10 min.
        sim.clock.now += 61_000 if i and i % 100 == 0 else 0
        path, params = ohlc if i % 2 else kline
        async with sim.session.get(sim.url(path), params=params) as resp:
            assert resp.status == 200, (i, await resp.text())
    async with sim.session.get(sim.url(kline[0]), params=kline[1]) as resp:
        assert resp.status == 429
        body = await resp.json()
    assert (body["limit"], body["period"], body["policy"]) == ("600", "10m", "ip")
