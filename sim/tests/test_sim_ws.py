"""WebSocket feed: greeting, subscriptions, book snapshot + diffs, trades, tickers, login and user events."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import aiohttp
import pytest

D = Decimal
FAST = {"ws_book_interval": 0.02, "ws_snapshot_interval": 0.05}


async def receive(ws: aiohttp.ClientWebSocketResponse, want: Callable[[Any], bool], timeout: float = 3) -> Any:
    """The next frame matching `want`, skipping others."""

    async def loop() -> Any:
        while True:
            msg = await ws.receive()
            assert msg.type == aiohttp.WSMsgType.TEXT, msg
            frame = msg.json()
            assert isinstance(frame, list)
            assert len(frame) == 2
            assert frame[0] == frame[1]["type"]
            if want(frame):
                return frame

    return await asyncio.wait_for(loop(), timeout)


def of_type(*kinds: int) -> Callable[[Any], bool]:
    return lambda frame: frame[0] in kinds


async def subscribe(ws: aiohttp.ClientWebSocketResponse, channel: str, event: str, join: bool = True) -> None:
    await ws.send_json([151, {"type": 151, "channel": channel, "event": event, "join": join}])
    ack = await receive(ws, of_type(100))
    assert ack[1] == {"type": 100, "ok": True, "message": f"{'join' if join else 'leave'}|{channel}:{event}"}


async def connect(sim: Any, path: str = "/") -> aiohttp.ClientWebSocketResponse:
    ws: aiohttp.ClientWebSocketResponse = await sim.session.ws_connect(sim.url(path))
    hello = await receive(ws, lambda f: True)
    assert hello == [991, {"type": 991, "current": "5.1.0", "min": "2.3.0"}]
    return ws


async def login(sim: Any, ws: aiohttp.ClientWebSocketResponse, secret: str | None = None) -> Any:
    from_secret = secret or base64.b64encode(b"0123456789abcdef0123456789abcdef").decode()
    nonce = 3000
    text = f"{sim.api_key}{nonce}".encode()
    signature = base64.b64encode(hmac.new(base64.b64decode(from_secret), text, hashlib.sha256).digest()).decode()
    await ws.send_json(
        [
            114,
            {"type": 114, "publicKey": sim.api_key, "timestamp": sim.clock.now, "nonce": nonce, "signature": signature},
        ]
    )
    return await receive(ws, of_type(114))


async def submit(sim: Any, **params: Any) -> Any:
    body = {"pairSymbol": "BTCTRY", "orderType": "buy", "orderMethod": "limit", "quantity": "0.001"}
    body.update(params)
    status, resp = await sim.private("POST", "/api/v1/order", json=body)
    assert status == 200, resp
    return resp["data"]


def apply(book: dict[str, dict[D, D]], frame: Any) -> None:
    for key, side in (("BO", "bids"), ("AO", "asks")):
        for level in frame[1][key]:
            price = D(level["P"])
            if level.get("CP") == 3:
                del book[side][price]
            else:
                book[side][price] = D(level["A"])


async def test_greeting_on_both_paths_and_plain_get(sim: Any) -> None:
    for path in ("/", "/ws"):
        ws = await connect(sim, path)
        await ws.close()
    async with sim.session.get(sim.url("/")) as resp:
        assert resp.status == 200


async def test_trade_channel_list_then_singles(sim: Any) -> None:
    await submit(sim, orderMethod="market", quantity="5000")
    ws = await connect(sim)
    await subscribe(ws, "trade", "BTCTRY")
    listing = await receive(ws, of_type(421))
    body = listing[1]
    assert (body["symbol"], body["channel"], body["event"]) == ("BTCTRY", "trade", "BTCTRY")
    assert body["items"]
    item = body["items"][0]
    assert set(item) == {"D", "I", "A", "P", "S"}
    assert isinstance(item["D"], str)
    assert isinstance(item["I"], str)
    assert len(item["P"].split(".")[1]) == 10
    await submit(sim, orderType="sell", orderMethod="market", quantity="0.001")
    single = await receive(ws, of_type(422))
    assert (single[1]["PS"], single[1]["S"], single[1]["channel"]) == ("BTCTRY", 1, "trade")
    assert D(single[1]["A"]) > 0
    await ws.close()


async def test_obdiff_snapshot_and_diffs_rebuild_the_book(sim_factory: Any) -> None:
    async with sim_factory(**FAST) as sim:
        ws = await connect(sim)
        await subscribe(ws, "obdiff", "BTCTRY")
        snapshot = await receive(ws, of_type(431))
        assert snapshot[1]["channel"] == "obdiff"
        cs = snapshot[1]["CS"]
        book: dict[str, dict[D, D]] = {"bids": {}, "asks": {}}
        apply(book, snapshot)
        bid = max(book["bids"])
        order = await submit(sim, price=str(bid - 7), quantity="0.0123")
        diff = await receive(ws, of_type(432))
        assert diff[1]["CS"] == cs + 1
        assert {"CP": 1, "P": str(bid - 7), "A": "0.01230000"} in diff[1]["BO"]
        apply(book, diff)
        await submit(sim, orderMethod="market", quantity="20000")
        status, _ = await sim.private("DELETE", "/api/v1/order", params={"id": str(order["id"])})
        assert status == 200
        for expected in (cs + 2, cs + 3):
            diff = await receive(ws, of_type(432), timeout=1)
            assert diff[1]["CS"] == expected
            apply(book, diff)
            if D(bid - 7) not in book["bids"]:
                break
        assert D(bid - 7) not in book["bids"]
        _, rest = await sim.public("/api/v2/orderbook", pairSymbol="BTCTRY", limit=100)
        assert book["bids"] == {D(p): D(a) for p, a in rest["data"]["bids"]}
        assert book["asks"] == {D(p): D(a) for p, a in rest["data"]["asks"]}
        await ws.close()


async def test_sequence_gap_fault(sim_factory: Any) -> None:
    async with sim_factory(**FAST) as sim:
        ws = await connect(sim)
        await subscribe(ws, "obdiff", "BTCTRY")
        cs = (await receive(ws, of_type(431)))[1]["CS"]
        sim.state.faults.ws_sequence_gap_next = 1
        bid = int((await sim.public("/api/v2/orderbook", pairSymbol="BTCTRY"))[1]["data"]["bids"][0][0])
        await submit(sim, price=str(bid - 3))
        diff = await receive(ws, of_type(432))
        assert diff[1]["CS"] == cs + 2
        await ws.close()


async def test_orderbook_and_ticker_channels_repeat(sim_factory: Any) -> None:
    async with sim_factory(**FAST) as sim:
        ws = await connect(sim)
        await subscribe(ws, "orderbook", "ETHTRY")
        first = await receive(ws, of_type(431))
        second = await receive(ws, of_type(431))
        assert first[1]["channel"] == "orderbook"
        assert second[1]["CS"] > first[1]["CS"]
        asks = [D(level["P"]) for level in second[1]["AO"]]
        bids = [D(level["P"]) for level in second[1]["BO"]]
        assert asks == sorted(asks)
        assert bids == sorted(bids, reverse=True)
        await subscribe(ws, "orderbook", "ETHTRY", join=False)
        await subscribe(ws, "ticker", "BTCTRY")
        pair = await receive(ws, of_type(402))
        assert (pair[1]["PS"], pair[1]["PId"], pair[1]["channel"], pair[1]["event"]) == (
            "BTCTRY",
            1,
            "ticker",
            "BTCTRY",
        )
        assert D(pair[1]["B"]) < D(pair[1]["A"])
        await subscribe(ws, "ticker", "all")
        everything = await receive(ws, of_type(401))
        assert {i["PS"] for i in everything[1]["items"]} == {"BTCTRY", "ETHTRY", "BTCUSDT", "USDTTRY"}
        await ws.close()


async def test_unknown_pair_is_acknowledged_and_silent(sim: Any) -> None:
    ws = await connect(sim)
    await subscribe(ws, "trade", "btctry")
    with pytest.raises(asyncio.TimeoutError):
        await receive(ws, of_type(421), timeout=0.2)
    await ws.close()


async def test_login_and_user_events(sim: Any) -> None:
    ws = await connect(sim)
    bad = await login(sim, ws, secret=base64.b64encode(b"wrong-wrong-wrong-wrong").decode())
    assert bad[1]["ok"] is False
    good = await login(sim, ws)
    assert good[1]["ok"] is True

    bid = int((await sim.public("/api/v2/orderbook", pairSymbol="BTCTRY"))[1]["data"]["bids"][0][0])
    resting = await submit(sim, price=str(bid - 50), quantity="0.002", newOrderClientId="rest-1")
    insert = await receive(ws, of_type(451))
    assert insert[1]["id"] == resting["id"]
    assert (insert[1]["newOrderClientId"], insert[1]["method"], insert[1]["orderType"]) == ("rest-1", 0, 0)
    assert (insert[1]["pairId"], insert[1]["symbol"], insert[1]["numLeft"]) == (1, "BTCTRY", "0.002")
    assert isinstance(insert[1]["userId"], int)

    await sim.private("DELETE", "/api/v1/order", params={"id": str(resting["id"])})
    deleted = await receive(ws, of_type(452))
    assert deleted[1]["id"] == resting["id"]

    taker = await submit(sim, orderType="sell", orderMethod="market", quantity="0.001", newOrderClientId="mkt-1")
    match = await receive(ws, of_type(441))
    assert (match[1]["id"], match[1]["clientId"], match[1]["isBid"], match[1]["pair"]) == (
        taker["id"],
        "mkt-1",
        False,
        1,
    )
    trade = await receive(ws, of_type(423))
    assert (trade[1]["orderId"], trade[1]["orderType"], trade[1]["orderClientId"]) == (taker["id"], "sell", "mkt-1")
    assert D(trade[1]["fee"]) < 0
    assert D(trade[1]["amount"]) < 0
    closed = await receive(ws, of_type(452))
    assert closed[1]["id"] == taker["id"]
    await ws.close()


async def test_ws_drop_fault_closes_the_socket(sim_factory: Any) -> None:
    async with sim_factory(**FAST) as sim:
        ws = await connect(sim)
        sim.state.faults.ws_drop_next = 1
        msg = await asyncio.wait_for(ws.receive(), 3)
        assert msg.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.ERROR)
        assert sim.state.faults.ws_drop_next == 0
        await ws.close()


async def test_obdiff_book_at_each_cs_equals_what_a_subscriber_rebuilt(sim_factory: Any) -> None:
    async with sim_factory(**FAST) as sim:
        ws = await connect(sim)
        await subscribe(ws, "obdiff", "BTCTRY")
        snapshot = await receive(ws, of_type(431))
        book: dict[str, dict[D, D]] = {"bids": {}, "asks": {}}
        apply(book, snapshot)
        seen = [(snapshot[1]["CS"], {k: dict(v) for k, v in book.items()})]
        bid = max(book["bids"])
        for offset in (3, 5):
            await submit(sim, price=str(bid - offset), quantity="0.01")
            diff = await receive(ws, of_type(432))
            apply(book, diff)
            seen.append((diff[1]["CS"], {k: dict(v) for k, v in book.items()}))
        for cs, expected in seen:
            status, body = await sim.public("/sim/obdiff", pair="BTCTRY", cs=str(cs))
            assert status == 200
            assert {D(p): D(a) for p, a in body["bids"]} == expected["bids"]
            assert {D(p): D(a) for p, a in body["asks"]} == expected["asks"]
        status, body = await sim.public("/sim/obdiff", pair="BTCTRY")
        assert body["subscriptions"] == [seen[-1][0]]
        status, body = await sim.public("/sim/obdiff", pair="BTCTRY", cs=str(seen[-1][0] + 1))
        assert status == 404
        async with sim.session.get(sim.url("/sim/obdiff"), params={"pair": "BTCTRY", "cs": "x"}) as resp:
            assert resp.status == 400
        await ws.close()


async def test_cs_counters_of_subscriptions_never_overlap(sim_factory: Any) -> None:
    async with sim_factory(**FAST) as sim:
        first, second = await connect(sim), await connect(sim)
        await subscribe(first, "obdiff", "BTCTRY")
        await subscribe(second, "obdiff", "BTCTRY")
        a = (await receive(first, of_type(431)))[1]["CS"]
        b = (await receive(second, of_type(431)))[1]["CS"]
        assert abs(a - b) >= 1_000_000
        await first.close()
        await second.close()


async def test_request_log_counts_every_api_request_even_refused_ones(sim: Any) -> None:
    status, before = await sim.public("/sim/requests")
    assert status == 200
    await sim.public("/api/v2/ticker", pairSymbol="BTCTRY")
    async with sim.session.get(sim.url("/api/v1/users/balances")) as resp:  # no auth headers: 401
        assert resp.status == 401
    await sim.public("/sim/health")  # admin calls are not exchange traffic
    status, after = await sim.public("/sim/requests", since=str(before["count"]))
    assert after["count"] == before["count"] + 2
    assert [(r["method"], r["path"]) for r in after["requests"]] == [
        ("GET", "/api/v2/ticker"),
        ("GET", "/api/v1/users/balances"),
    ]
    async with sim.session.get(sim.url("/sim/requests"), params={"since": "x"}) as resp:
        assert resp.status == 400
