"""A USDT-quoted pair over HTTP: its recorded rules in exchangeinfo, its minimum in USDT, funds held in USDT."""

from __future__ import annotations

import base64
from decimal import Decimal
from typing import Any

from btcbot.sim.config import Account, currencies_for, default_symbols

D = Decimal
KEY = "usdt-trader"
SECRET = base64.b64encode(b"usdt-trader-secret-usdt-trader!!").decode()


async def test_orders_on_a_usdt_pair_follow_its_rules(sim_factory: Any) -> None:
    symbols = default_symbols(["BTCTRY", "XRPUSDT", "ETHUSDT"])
    account = Account(KEY, SECRET, {"USDT": D(1000), "XRP": D(100)})
    async with sim_factory(symbols=symbols, currencies=currencies_for(symbols), accounts=(account,)) as sim:
        _, info = await sim.public("/api/v2/server/exchangeinfo")
        xrp = next(s for s in info["data"]["symbols"] if s["name"] == "XRPUSDT")
        assert (xrp["numeratorScale"], xrp["denominatorScale"], xrp["hasFraction"]) == (4, 4, True)
        assert (xrp["filters"][0]["tickSize"], xrp["filters"][0]["minExchangeValue"]) == ("0.0001", "9.91")
        _, book = await sim.public("/api/v2/orderbook", pairSymbol="XRP_USDT", limit=1)
        bid = D(book["data"]["bids"][0][0])
        assert bid == bid.quantize(D("0.0001"))

        async def submit(**params: Any) -> tuple[int, Any]:
            body = {"pairSymbol": "XRPUSDT", "orderType": "buy", "orderMethod": "limit", "price": str(bid), **params}
            status, reply = await sim.private("POST", "/api/v1/order", json=body, key=KEY, secret=SECRET)
            return int(status), reply

        too_small = (D("9.9") / bid).quantize(D("0.0001"))
        status, reply = await submit(quantity=str(too_small))
        assert (status, reply["message"]) == (400, "FAILED_MIN_TOTAL_AMOUNT")
        status, reply = await submit(quantity="5.00001")
        assert (status, reply["message"]) == (400, "INVALID_QUANTITY_SCALE")
        status, reply = await submit(quantity="5", price=str(bid + D("0.00001")))
        assert (status, reply["message"]) == (400, "INVALID_PRICE_SCALE")
        status, reply = await submit(quantity="10")
        assert status == 200, reply
        _, balances = await sim.private("GET", "/api/v1/users/balances", key=KEY, secret=SECRET)
        usdt = next(b for b in balances["data"] if b["asset"] == "USDT")
        # The buy holds its notional (plus the fee headroom) in USDT, the pair's quote asset.
        assert D(usdt["locked"]) >= bid * 10
        assert D(usdt["free"]) + D(usdt["locked"]) == D(1000)
        status, reply = await submit(orderType="sell", quantity="5", price=str(bid * 2))
        assert status == 200, reply
        _, balances = await sim.private("GET", "/api/v1/users/balances", key=KEY, secret=SECRET)
        assert D(next(b for b in balances["data"] if b["asset"] == "XRP")["locked"]) == D(5)
