"""REST endpoints against a live in-process server: paths, envelopes, field names and types."""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

from btcbot.sim.engine import OrderRequest

D = Decimal
ORDER_KEYS = {
    "id", "price", "amount", "quantity", "stopPrice", "pairSymbol", "pairSymbolNormalized", "type", "method",
    "orderClientId", "time", "updateTime", "status", "leftAmount",
}  # fmt: skip


def assert_envelope(body: Any, message: str | None = None) -> Any:
    assert set(body) == {"success", "message", "code", "data"}
    assert body["success"] is True
    assert body["code"] == 0
    assert body["message"] == message
    return body["data"]


def is_decimal_text(value: Any) -> bool:
    return isinstance(value, str) and re.fullmatch(r"-?\d+(\.\d+)?", value) is not None


async def best_prices(sim: Any) -> tuple[int, int]:
    _, body = await sim.public("/api/v2/orderbook", pairSymbol="BTCTRY", limit=1)
    return int(body["data"]["bids"][0][0]), int(body["data"]["asks"][0][0])


async def submit(sim: Any, **params: Any) -> tuple[int, Any]:
    base = {"pairSymbol": "BTCTRY", "orderType": "buy", "orderMethod": "limit", "quantity": "0.001"}
    base.update(params)
    status, body = await sim.private("POST", "/api/v1/order", json=base)
    return int(status), body


async def test_server_time_is_bare(sim: Any) -> None:
    status, body = await sim.public("/api/v2/server/time")
    assert status == 200
    assert body["serverTime"] == sim.clock.now
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{7}\+00:00", body["serverTime2"])


async def test_exchange_info_symbols(sim: Any) -> None:
    status, body = await sim.public("/api/v2/server/exchangeinfo")
    assert status == 200
    data = assert_envelope(body)
    assert data["timeZone"] == "UTC"
    symbols = {s["name"]: s for s in data["symbols"]}
    assert {"BTCTRY", "ETHTRY", "BTCUSDT", "USDTTRY"} <= set(symbols)
    btc = symbols["BTCTRY"]
    assert (btc["id"], btc["nameNormalized"], btc["status"]) == (1, "BTC_TRY", "TRADING")
    assert (btc["numeratorScale"], btc["denominatorScale"], btc["hasFraction"]) == (8, 0, False)
    price_filter = btc["filters"][0]
    assert price_filter["filterType"] == "PRICE_FILTER"
    assert (price_filter["tickSize"], price_filter["minExchangeValue"]) == ("1", "99.91")
    assert price_filter["minAmount"] is None
    assert isinstance(btc["maximumLimitOrderPrice"], int | float)
    assert btc["maximumLimitOrderPrice"] > btc["minimumLimitOrderPrice"] > 0
    assert symbols["BTCUSDT"]["filters"][0]["minExchangeValue"] == "9.91"
    currencies = {c["symbol"]: c for c in data["currencies"]}
    assert currencies["BTC"]["precision"] == 8
    assert {b["currencySymbol"] for b in data["currencyOperationBlocks"]} >= {"TRY", "BTC"}


async def test_ticker_is_an_array_of_numbers(sim: Any) -> None:
    _, body = await sim.public("/api/v2/ticker", pairSymbol="BTC_TRY")
    (item,) = assert_envelope(body)
    assert item["pair"] == "BTCTRY"
    for key in ("last", "high", "low", "bid", "ask", "open", "volume", "average", "daily", "dailyPercent"):
        assert isinstance(item[key], int | float), key
    assert item["bid"] < item["ask"]
    _, body = await sim.public("/api/v2/ticker")
    assert len(assert_envelope(body)) == 4
    _, body = await sim.public("/api/v2/ticker/currency", symbol="USDT")
    assert {t["pair"] for t in assert_envelope(body)} == {"BTCUSDT", "USDTTRY"}
    status, body = await sim.public("/api/v2/ticker", pairSymbol="NOPE")
    assert status == 400
    assert body["success"] is False


async def test_orderbook_shape_and_limit(sim: Any) -> None:
    status, body = await sim.public("/api/v2/orderbook", pairSymbol="BTCTRY", limit=5)
    assert status == 200
    data = assert_envelope(body)
    assert isinstance(data["timestamp"], int)
    bids, asks = data["bids"], data["asks"]
    assert len(bids) == 5
    assert len(asks) == 5
    assert all(len(level) == 2 and all(is_decimal_text(x) for x in level) for level in bids + asks)
    bid_prices = [D(p) for p, _ in bids]
    ask_prices = [D(p) for p, _ in asks]
    assert bid_prices == sorted(bid_prices, reverse=True)
    assert ask_prices == sorted(ask_prices)
    assert bid_prices[0] < ask_prices[0]
    _, body = await sim.public("/api/v2/orderBook", pairSymbol="BTCTRY")
    assert len(body["data"]["bids"]) == 25  # the whole seeded side, under the default limit of 100


async def test_public_trades(sim: Any) -> None:
    _, ask = await best_prices(sim)
    status, _ = await submit(sim, orderMethod="market", quantity="5000")
    assert status == 200
    _, body = await sim.public("/api/v2/trades", pairSymbol="BTCTRY", last=2)
    trades = assert_envelope(body)
    assert 1 <= len(trades) <= 2
    trade = trades[0]
    assert set(trade) == {
        "pair", "pairNormalized", "numerator", "denominator", "date", "tid", "price", "amount", "side",
    }  # fmt: skip
    assert isinstance(trade["tid"], str)
    assert isinstance(trade["date"], int)
    assert trade["side"] == "buy"
    assert D(trade["price"]) >= ask


async def test_balances(sim: Any) -> None:
    status, body = await sim.private("GET", "/api/v1/users/balances")
    assert status == 200
    data = {b["asset"]: b for b in assert_envelope(body, "SUCCESS")}
    tl = data["TRY"]
    assert set(tl) == {
        "asset", "assetname", "balance", "locked", "free", "orderFund", "requestFund", "precision", "timestamp",
    }  # fmt: skip
    assert (tl["balance"], tl["locked"], tl["free"], tl["precision"]) == ("1000000", "0", "1000000", 2)
    bid, _ = await best_prices(sim)
    await submit(sim, price=str(bid - 10_000), quantity="0.1")
    _, body = await sim.private("GET", "/api/v1/users/balances")
    tl = {b["asset"]: b for b in body["data"]}["TRY"]
    held = D(bid - 10_000) * D("0.1") * (1 + D("0.0009") * D("1.18"))
    assert D(tl["locked"]) == held.quantize(D("0.00000001"))
    assert D(tl["free"]) == D(1_000_000) - D(tl["locked"])
    assert tl["orderFund"] == tl["locked"]


async def test_submit_query_and_cancel_lifecycle(sim: Any) -> None:
    bid, _ = await best_prices(sim)
    status, body = await submit(sim, price=str(bid - 5000), newOrderClientId="my-client-id")
    assert status == 200
    data = assert_envelope(body, "OK")
    assert set(data) == {
        "id", "datetime", "type", "method", "price", "stopPrice", "quantity", "pairSymbol",
        "pairSymbolNormalized", "newOrderClientId",
    }  # fmt: skip
    assert isinstance(data["id"], int)
    assert data["datetime"] == sim.clock.now
    assert (data["type"], data["method"], data["newOrderClientId"]) == ("buy", "limit", "my-client-id")
    assert (data["price"], data["quantity"], data["stopPrice"]) == (str(bid - 5000), "0.00100000", None)
    order_id = data["id"]

    status, body = await sim.private("GET", "/api/v1/openOrders", params={"pairSymbol": "BTCTRY"})
    open_ = assert_envelope(body, "SUCCESS")
    assert open_["asks"] == []
    (order,) = open_["bids"]
    assert set(order) == ORDER_KEYS
    assert (order["id"], order["status"], order["orderClientId"]) == (order_id, "Untouched", "my-client-id")
    assert order["leftAmount"] == "0.00100000"

    status, body = await sim.private("GET", f"/api/v1/order/{order_id}")
    assert status == 200
    assert assert_envelope(body, "SUCCESS")["id"] == order_id

    sim.clock.now += 1000
    status, body = await sim.private("DELETE", "/api/v1/order", params={"id": str(order_id)})
    assert status == 200
    assert body == {"success": True, "message": "SUCCESS", "code": 0}

    status, body = await sim.private("DELETE", "/api/v1/order", params={"id": str(order_id)})
    assert status == 400
    assert (body["success"], body["message"]) == (False, "ORDER_COULD_NOT_BE_CANCELED")
    status, body = await sim.private("DELETE", "/api/v1/order", params={"id": "12345"})
    assert (status, body["message"]) == (400, "NO_ORDER_MATCHES_YOUR_REQUEST")

    _, body = await sim.private("GET", f"/api/v1/order/{order_id}")
    assert (body["data"]["status"], body["data"]["updateTime"]) == ("Canceled", sim.clock.now)
    _, body = await sim.private("GET", "/api/v1/openOrders")
    assert body["data"] == {"asks": [], "bids": []}


async def test_order_not_found_and_other_accounts_order(sim: Any) -> None:
    status, body = await sim.private("GET", "/api/v1/order/424242")
    assert status == 400
    assert body == {"success": False, "message": "Order not found", "code": 1152}
    bid, _ = await best_prices(sim)
    _, body = await submit(sim, price=str(bid - 5000))
    status, body = await sim.private(
        "GET", f"/api/v1/order/{body['data']['id']}", key=sim.other_key, secret=sim.other_secret
    )
    assert (status, body["code"]) == (400, 1152)


async def test_submit_rejections(sim: Any) -> None:
    bid, _ = await best_prices(sim)
    cases = [
        ({"price": str(bid), "quantity": "0.00001"}, "FAILED_MIN_TOTAL_AMOUNT"),
        ({"price": f"{bid}.5"}, "INVALID_PRICE_SCALE"),
        ({"price": str(bid), "quantity": "1000"}, "BALANCE_NOT_ENOUGH"),
        ({"pairSymbol": "XXXTRY", "price": "1"}, "FAILED_ORDER_PARAMETER"),
        ({"orderType": "sell", "price": str(bid * 20), "quantity": "0.001"}, "PRICE_MUST_BE_LESS_THAN_MAXPRICE"),
        # ETHTRY trades near 130,000: 5,000,000 is under its maxPrice but over 10x the last price.
        (
            {"pairSymbol": "ETHTRY", "orderType": "sell", "price": "5000000", "quantity": "0.001"},
            "ORDER_MAX_PRICE_EXCEEDED",
        ),
    ]
    for params, message in cases:
        status, body = await submit(sim, **params)
        assert status == 400, params
        assert body["success"] is False
        assert body["message"] == message
        assert isinstance(body["code"], int)
    async with sim.session.post(
        sim.url("/api/v1/order"),
        data="{not json",
        headers={**_headers(sim), "Content-Type": "application/json"},
    ) as resp:
        assert resp.status == 400
        assert (await resp.json())["message"] == "FAILED_ORDER_PARAMETER"


def _headers(sim: Any) -> dict[str, str]:
    return dict(sim.headers())


async def test_query_string_parameters_win_over_body(sim: Any) -> None:
    bid, _ = await best_prices(sim)
    body = {"pairSymbol": "BTCTRY", "orderType": "buy", "orderMethod": "limit", "quantity": "0.001", "price": "1"}
    status, resp = await sim.private("POST", "/api/v1/order", json=body, params={"price": str(bid - 5000)})
    assert status == 200
    assert resp["data"]["price"] == str(bid - 5000)


async def test_duplicate_client_ids_accepted(sim: Any) -> None:
    bid, _ = await best_prices(sim)
    ids = []
    for _ in range(2):
        status, body = await submit(sim, price=str(bid - 5000), newOrderClientId="dup")
        assert status == 200
        ids.append(body["data"]["id"])
    assert ids[0] != ids[1]
    async with sim.session.get(sim.url("/sim/state"), params={"apiKey": "sim-test-key"}) as resp:
        record = await resp.json()
    assert [o["clientId"] for o in record["orders"]] == ["dup", "dup"]


async def test_fills_in_all_orders_and_user_trades(sim: Any) -> None:
    status, body = await submit(sim, orderMethod="market", quantity="20000", newOrderClientId="mkt")
    assert status == 200
    market_id = body["data"]["id"]
    status, body = await submit(sim, orderType="sell", orderMethod="market", quantity="0.002", newOrderClientId="s")
    assert status == 200
    sell_id = body["data"]["id"]

    _, body = await sim.private("GET", "/api/v1/allOrders", params={"pairSymbol": "BTCTRY"})
    orders = {o["id"]: o for o in assert_envelope(body, "SUCCESS")}
    assert set(orders) == {market_id, sell_id}
    assert all(set(o) == ORDER_KEYS for o in orders.values())
    assert orders[market_id]["status"] == "Closed"
    assert orders[market_id]["method"] == "market"

    status, body = await sim.private("GET", "/api/v1/users/transactions/trade")
    trades = assert_envelope(body, "SUCCESS")
    assert trades
    keys = {
        "id", "timestamp", "amount", "preciseAmount", "fee", "tax", "price", "numeratorSymbol",
        "denominatorSymbol", "orderType", "orderId", "orderClientId",
    }  # fmt: skip
    for trade in trades:
        assert set(trade) == keys
        assert isinstance(trade["id"], int)
        assert isinstance(trade["preciseAmount"], int | float)
        assert D(trade["fee"]) < 0
        assert D(trade["tax"]) == (D(trade["fee"]) * D("0.18")).quantize(D("0.00000001"), rounding="ROUND_DOWN")
    sells = [t for t in trades if t["orderType"] == "sell"]
    assert sells
    assert all(D(t["amount"]) < 0 and t["orderId"] == sell_id for t in sells)
    assert sum(D(t["amount"]) for t in sells) == D("-0.002")
    assert trades[0]["timestamp"] >= trades[-1]["timestamp"]

    _, body = await sim.private("GET", "/api/v1/users/transactions/trade", params={"orderId": str(sell_id)})
    assert {t["orderId"] for t in body["data"]} == {sell_id}
    _, body = await sim.private("GET", "/api/v1/users/transactions/trade", params=[("type", "sell")])
    assert {t["orderType"] for t in body["data"]} == {"sell"}
    _, body = await sim.private("GET", "/api/v1/users/transactions/trade", params={"symbol": "eth"})
    assert body["data"] == []


async def test_all_orders_paging(sim: Any) -> None:
    engine = sim.state.engine
    start = sim.clock.now
    for i in range(5):
        req = OrderRequest("sim-test-key", f"c{i}", "BTCTRY", "buy", "limit", D("0.001"), D(1_000_000))
        engine.place(req, start + i * 1000)
    ids = [o.order_id for o in engine.orders_of("sim-test-key")]
    _, body = await sim.private("GET", "/api/v1/allOrders", params={"limit": "2"})
    assert [o["id"] for o in body["data"]] == ids[3:]
    _, body = await sim.private("GET", "/api/v1/allOrders", params={"limit": "2", "page": "2"})
    assert [o["id"] for o in body["data"]] == ids[1:3]
    _, body = await sim.private("GET", "/api/v1/allOrders", params={"orderId": str(ids[1]), "limit": "2"})
    assert [o["id"] for o in body["data"]] == ids[1:3]
    _, body = await sim.private("GET", "/api/v1/allOrders", params={"startTime": str(start + 3000)})
    assert [o["id"] for o in body["data"]] == ids[3:]
    # ccxt sends seconds
    params = {"startTime": str(start // 1000 + 1), "endTime": str(start // 1000 + 2)}
    _, body = await sim.private("GET", "/api/v1/allOrders", params=params)
    assert [o["id"] for o in body["data"]] == ids[1:3]


async def test_private_calls_need_valid_auth(sim: Any) -> None:
    async with sim.session.get(sim.url("/api/v1/users/balances")) as resp:
        assert resp.status == 401
        assert await resp.json() == {"success": False, "message": "Headers are missing", "code": 401}
    stale = _headers(sim)
    sim.clock.now += 6000
    async with sim.session.get(sim.url("/api/v1/users/balances"), headers=stale) as resp:
        assert resp.status == 401
        assert (await resp.json())["message"] == "Invalid Nonce"
    bad = {**_headers(sim), "X-Signature": "AAAA"}
    async with sim.session.get(sim.url("/api/v1/openOrders"), headers=bad) as resp:
        assert resp.status == 401
        assert (await resp.json())["message"] == "Invalid Signature"


async def test_rate_limit_returns_documented_429(sim: Any) -> None:
    statuses = []
    for _ in range(121):
        async with sim.session.get(sim.url("/api/v1/users/balances"), headers=_headers(sim)) as resp:
            statuses.append(resp.status)
            if resp.status == 429:
                assert resp.headers["Retry-After"] == "60"
                body = await resp.json()
    assert statuses[:120] == [200] * 120
    assert statuses[120] == 429
    assert body["message"] == "TOO_MANY_REQUESTS"
    assert (body["limit"], body["period"], body["policy"]) == ("120", "1m", "ip")
    sim.clock.now += 61_000
    async with sim.session.get(sim.url("/api/v1/users/balances"), headers=_headers(sim)) as resp:
        assert resp.status == 200


async def test_unknown_path_is_404(sim: Any) -> None:
    async with sim.session.get(sim.url("/api/v2/nothing")) as resp:
        assert resp.status == 404
    async with sim.session.put(sim.url("/api/v1/order")) as resp:
        assert resp.status == 405


async def test_form_encoded_submit(sim: Any) -> None:
    bid, _ = await best_prices(sim)
    form = {"pairSymbol": "BTCTRY", "orderType": "buy", "orderMethod": "limit", "quantity": "0.001"}
    form["price"] = str(bid - 5000)
    async with sim.session.post(sim.url("/api/v1/order"), data=form, headers=sim.headers()) as resp:
        assert resp.status == 200
        assert (await resp.json())["data"]["price"] == str(bid - 5000)
