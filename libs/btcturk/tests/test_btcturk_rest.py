"""REST client against httpx.MockTransport: requests on the wire, error classification, retries."""

import asyncio
import json
import random
from collections.abc import Callable
from decimal import Decimal

import httpx
import pytest

from btcbot.btcturk import (
    AuthError,
    BreakerOpen,
    BreakerState,
    BtcTurkClient,
    EndpointGroup,
    NotFound,
    OrderMethod,
    OrderStatus,
    OutcomeUnknown,
    ProtocolError,
    RateLimited,
    Rejected,
    RetryPolicy,
    Side,
    TransactionType,
    TransportError,
    Unavailable,
)
from btcbot.btcturk.auth import Secret, rest_headers

KEY = "pubkey"
SECRET = "YnRjdHVyay10ZXN0LXNlY3JldC1ieXRlcw=="
WALL_MS = 1_700_000_000_000

ORDER = {
    "id": 16060235,
    "price": "66800.00",
    "amount": "0.09733687",
    "quantity": "0.09733687",
    "stopPrice": "0.00",
    "pairSymbol": "BTCTRY",
    "pairSymbolNormalized": "BTC_TRY",
    "type": "sell",
    "method": "limit",
    "orderClientId": "cid-1",
    "time": 0,
    "updateTime": 1591286401373,
    "status": "Untouched",
    "leftAmount": "0.09733687",
}


class FakeTime:
    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)


def ok(data, status=200, **extra):
    return httpx.Response(status, json={"success": True, "message": "SUCCESS", "code": 0, "data": data, **extra})


def fail(status, message, code=0, headers=None):
    return httpx.Response(status, json={"success": False, "message": message, "code": code}, headers=headers or {})


class Recorder:
    def __init__(self, handler: Callable[[httpx.Request], httpx.Response]) -> None:
        self.handler = handler
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self.handler(request)


def make_client(handler, ft=None, **kw) -> tuple[BtcTurkClient, Recorder, FakeTime]:
    ft = ft or FakeTime()
    rec = Recorder(handler)
    kw.setdefault("auto_sync_clock", False)
    client = BtcTurkClient(
        "https://api.test",
        KEY,
        SECRET,
        transport=httpx.MockTransport(rec),
        clock=ft.clock,
        sleep=ft.sleep,
        wall_clock_ms=lambda: WALL_MS,
        **kw,
    )
    return client, rec, ft


async def test_public_ticker_request_and_parse():
    def handler(request):
        assert request.url.path == "/api/v2/ticker"
        assert request.url.params["pairSymbol"] == "BTCTRY"
        assert "X-PCK" not in request.headers
        return ok([{"pair": "BTCTRY", "timestamp": 1, "last": 2.5, "high": 3, "low": 1, "bid": 2, "ask": 3,
                    "open": 2, "volume": 10}])  # fmt: skip

    client, rec, _ = make_client(handler)
    async with client:
        (t,) = await client.ticker("BTC_TRY")
    assert t.last == Decimal("2.5")
    assert len(rec.requests) == 1


async def test_private_call_signs_with_clock_offset():
    def handler(request):
        if request.url.path == "/api/v2/server/time":
            return httpx.Response(200, json={"serverTime": WALL_MS + 2500, "serverTime2": "x"})
        assert request.url.path == "/api/v1/users/balances"
        return ok([{"asset": "TRY", "balance": "10", "locked": "1", "free": "9"}])

    client, rec, _ = make_client(handler, auto_sync_clock=True)
    async with client:
        (bal,) = await client.balances()
        await client.balances()
    assert bal.free == Decimal(9)
    assert client.clock_offset_ms == 2500
    assert [r.url.path for r in rec.requests].count("/api/v2/server/time") == 1
    signed = rec.requests[1].headers
    expected = rest_headers(KEY, Secret(SECRET), WALL_MS + 2500)
    assert signed["X-PCK"] == KEY
    assert signed["X-Stamp"] == expected["X-Stamp"] == str(WALL_MS + 2500)
    assert signed["X-Signature"] == expected["X-Signature"]


async def test_submit_order_body_and_ack():
    def handler(request):
        assert request.method == "POST"
        assert request.url.path == "/api/v1/order"
        body = json.loads(request.content)
        assert body == {
            "pairSymbol": "BTCTRY",
            "orderType": "buy",
            "orderMethod": "stoplimit",
            "quantity": "0.00100000",
            "price": "20000",
            "stopPrice": "19990.5",
            "newOrderClientId": "cid-9",
        }
        assert request.headers["Content-Type"] == "application/json"
        return ok({"id": 9932534, "datetime": 1543996112263, "type": "Buy", "method": "StopLimit",
                   "price": "20000.00", "stopPrice": "19990.5", "quantity": "0.001", "pairSymbol": "BTCTRY",
                   "newOrderClientId": "cid-9"}, message="OK")  # fmt: skip

    client, _, _ = make_client(handler)
    async with client:
        ack = await client.submit_order(
            "BTC_TRY",
            "buy",
            OrderMethod.STOP_LIMIT,
            Decimal("0.00100000"),
            price=Decimal("2E+4"),
            stop_price=Decimal("19990.5"),
            client_order_id="cid-9",
        )
    assert (ack.id, ack.side, ack.method, ack.client_order_id) == (9932534, Side.BUY, OrderMethod.STOP_LIMIT, "cid-9")


@pytest.mark.parametrize(
    "exc", [httpx.ReadTimeout("timed out"), httpx.RemoteProtocolError("server disconnected"), httpx.WriteError("x")]
)
async def test_submit_with_lost_response_is_outcome_unknown_and_not_resent(exc):
    def handler(request):
        raise exc

    client, rec, _ = make_client(handler, write_retry=RetryPolicy(max_attempts=5))
    async with client:
        with pytest.raises(OutcomeUnknown) as info:
            await client.submit_order("BTCTRY", Side.BUY, "limit", Decimal(1), price=Decimal(10), client_order_id="c1")
    assert len(rec.requests) == 1
    assert info.value.client_order_id == "c1"
    assert not info.value.retryable


@pytest.mark.parametrize("status", [500, 502, 503, 504])
async def test_submit_server_error_is_outcome_unknown(status):
    client, rec, _ = make_client(lambda r: httpx.Response(status, text="bad gateway"))
    async with client:
        with pytest.raises(OutcomeUnknown) as info:
            await client.submit_order("BTCTRY", Side.SELL, OrderMethod.MARKET, Decimal("0.1"))
    assert len(rec.requests) == 1
    assert info.value.client_order_id  # generated, so the caller can look the order up


async def test_submit_unreadable_success_is_outcome_unknown():
    client, _, _ = make_client(lambda r: httpx.Response(200, text="<html>"))
    async with client:
        with pytest.raises(OutcomeUnknown):
            await client.submit_order("BTCTRY", Side.SELL, OrderMethod.MARKET, Decimal("0.1"))
    client, _, _ = make_client(lambda r: ok({"id": "x"}))
    async with client:
        with pytest.raises(OutcomeUnknown, match="ack unreadable"):
            await client.submit_order("BTCTRY", Side.SELL, OrderMethod.MARKET, Decimal("0.1"))


async def test_submit_not_sent_is_retried_once():
    def handler(request):
        raise httpx.ConnectError("refused")

    client, rec, _ = make_client(handler)
    async with client:
        with pytest.raises(TransportError):
            await client.submit_order("BTCTRY", Side.BUY, OrderMethod.MARKET, Decimal(100))
    assert len(rec.requests) == 2  # default write policy: 2 attempts for never-sent requests
    assert rec.requests[0].content == rec.requests[1].content


async def test_submit_rejected_business_error():
    client, rec, _ = make_client(lambda r: fail(400, "BALANCE_NOT_ENOUGH", code=0))
    async with client:
        with pytest.raises(Rejected) as info:
            await client.submit_order("BTCTRY", Side.BUY, OrderMethod.LIMIT, Decimal(1), price=Decimal(5))
    assert info.value.message_code == "BALANCE_NOT_ENOUGH"
    assert info.value.status == 400
    assert not info.value.retryable
    assert len(rec.requests) == 1


async def test_success_false_with_http_200_is_rejected():
    client, _, _ = make_client(lambda r: fail(200, "FAILED_MIN_TOTAL_AMOUNT", code=1))
    async with client:
        with pytest.raises(Rejected, match="FAILED_MIN_TOTAL_AMOUNT"):
            await client.open_orders()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"quantity": 1.5}, "positive finite Decimal"),
        ({"quantity": Decimal(0)}, "positive finite Decimal"),
        ({"quantity": Decimal("NaN")}, "positive finite Decimal"),
        ({"quantity": Decimal(1), "method": "limit"}, "needs a price"),
        ({"quantity": Decimal(1), "method": "stopmarket"}, "needs a stop_price"),
        ({"quantity": Decimal(1), "client_order_id": "x" * 51}, "client_order_id"),
    ],
)
async def test_submit_validation(kwargs, match):
    client, rec, _ = make_client(lambda r: ok({}))
    kwargs.setdefault("method", "market")
    async with client:
        with pytest.raises(ValueError, match=match):
            await client.submit_order("BTCTRY", "buy", **kwargs)
    assert rec.requests == []


async def test_cancel_without_data_and_not_found():
    responses = iter(
        [
            httpx.Response(200, json={"success": True, "message": "SUCCESS", "code": 0}),
            fail(400, "NO_ORDER_MATCHES_YOUR_REQUEST"),
            fail(400, "ORDER_COULD_NOT_BE_CANCELED"),
        ]
    )
    client, rec, _ = make_client(lambda r: next(responses))
    async with client:
        assert await client.cancel_order(42) is None
        with pytest.raises(NotFound):
            await client.cancel_order(43)
        with pytest.raises(Rejected) as info:
            await client.cancel_order(44)
    assert type(info.value) is Rejected
    assert [(r.method, r.url.params["id"]) for r in rec.requests] == [
        ("DELETE", "42"),
        ("DELETE", "43"),
        ("DELETE", "44"),
    ]


async def test_cancel_timeout_is_outcome_unknown():
    def handler(request):
        raise httpx.ReadTimeout("slow")

    client, rec, _ = make_client(handler)
    async with client:
        with pytest.raises(OutcomeUnknown):
            await client.cancel_order(1)
    assert len(rec.requests) == 1


async def test_get_order_not_found_code_1152():
    client, _, _ = make_client(lambda r: fail(400, "Order not found", code=1152))
    async with client:
        with pytest.raises(NotFound) as info:
            await client.get_order(5)
    assert info.value.code == 1152


async def test_get_order_parses():
    client, rec, _ = make_client(lambda r: ok(ORDER))
    async with client:
        order = await client.get_order(16060235)
    assert rec.requests[0].url.path == "/api/v1/order/16060235"
    assert order.status is OrderStatus.UNTOUCHED


async def test_auth_error_is_final():
    client, rec, _ = make_client(lambda r: fail(401, "Invalid Signature"))
    async with client:
        with pytest.raises(AuthError, match="Invalid Signature"):
            await client.balances()
    assert len(rec.requests) == 1


async def test_invalid_nonce_resyncs_clock_once_and_retries():
    calls = {"balances": 0, "time": 0}

    def handler(request):
        if request.url.path == "/api/v2/server/time":
            calls["time"] += 1
            # The server clock jumps 9 s after our first sync: the learned offset goes stale.
            return httpx.Response(200, json={"serverTime": WALL_MS + (0 if calls["time"] == 1 else 9000)})
        calls["balances"] += 1
        if request.headers["X-Stamp"] != str(WALL_MS + 9000):
            return fail(401, "Invalid Nonce")
        return ok([])

    client, _, _ = make_client(handler, auto_sync_clock=True)
    async with client:
        assert await client.balances() == []
        assert client.clock_offset_ms == 9000
    assert calls == {"balances": 2, "time": 2}


async def test_invalid_nonce_twice_raises():
    def handler(request):
        if request.url.path == "/api/v2/server/time":
            return httpx.Response(200, json={"serverTime": WALL_MS})
        return fail(401, "Invalid Nonce")

    client, rec, _ = make_client(handler, auto_sync_clock=True)
    async with client:
        with pytest.raises(AuthError, match="Nonce"):
            await client.balances()
    assert [r.url.path for r in rec.requests].count("/api/v1/users/balances") == 2


async def test_concurrent_first_private_calls_sync_once():
    client, rec, _ = make_client(
        lambda r: httpx.Response(200, json={"serverTime": WALL_MS}) if r.url.path.endswith("time") else ok([]),
        auto_sync_clock=True,
    )
    async with client:
        await asyncio.gather(*(client.balances() for _ in range(5)))
    assert [r.url.path for r in rec.requests].count("/api/v2/server/time") == 1


async def test_private_call_without_credentials():
    ft = FakeTime()
    client = BtcTurkClient("https://api.test", transport=httpx.MockTransport(lambda r: ok([])), clock=ft.clock,
                           sleep=ft.sleep, auto_sync_clock=False)  # fmt: skip
    async with client:
        with pytest.raises(AuthError, match="required"):
            await client.balances()


async def test_read_retries_on_503_then_succeeds():
    responses = iter([fail(503, "maintenance"), httpx.Response(502), ok({"timestamp": 1, "bids": [], "asks": []})])
    client, rec, ft = make_client(lambda r: next(responses))
    async with client:
        book = await client.orderbook("BTCTRY", limit=5)
    assert book.bids == ()
    assert len(rec.requests) == 3
    assert rec.requests[0].url.params["limit"] == "5"
    assert len(ft.slept) == 2


async def test_read_gives_up_after_max_attempts():
    client, rec, _ = make_client(lambda r: httpx.Response(503), read_retry=RetryPolicy(max_attempts=3))
    async with client:
        with pytest.raises(Unavailable):
            await client.trades("BTCTRY")
    assert len(rec.requests) == 3


async def test_read_timeout_is_retryable_transport_error():
    def handler(request):
        raise httpx.ReadTimeout("slow")

    client, rec, _ = make_client(handler, read_retry=RetryPolicy(max_attempts=2))
    async with client:
        with pytest.raises(TransportError):
            await client.exchange_info()
    assert len(rec.requests) == 2


async def test_429_blocks_the_group_for_retry_after():
    responses = iter(
        [
            httpx.Response(
                429,
                headers={"Retry-After": "3"},
                json={"message": "TOO_MANY_REQUESTS", "success": False, "code": 429, "period": "1m"},
            ),
            ok([]),
        ]
    )
    client, rec, ft = make_client(lambda r: next(responses))
    start = ft.now
    async with client:
        assert await client.user_trades("BTCTRY") == []
    assert len(rec.requests) == 2
    assert ft.now - start >= 3.0


async def test_429_raised_when_wait_too_long():
    client, rec, _ = make_client(
        lambda r: httpx.Response(429, headers={"Retry-After": "120"}, json={"message": "TOO_MANY_REQUESTS"})
    )
    async with client:
        with pytest.raises(RateLimited) as info:
            await client.balances()
        assert info.value.retry_after == 120
        assert client.rate_limiter.delay(EndpointGroup.BALANCES) == pytest.approx(120)
    assert len(rec.requests) == 1


async def test_malformed_json_on_read_is_protocol_error():
    client, _, _ = make_client(lambda r: httpx.Response(200, text="{oops"))
    async with client:
        with pytest.raises(ProtocolError):
            await client.balances()


async def test_unexpected_status_is_protocol_error():
    client, _, _ = make_client(lambda r: httpx.Response(404, text="Not Found"))
    async with client:
        with pytest.raises(ProtocolError, match="404"):
            await client.balances()


async def test_breaker_opens_and_stops_sending():
    changes = []
    client, rec, ft = make_client(
        lambda r: httpx.Response(503),
        read_retry=RetryPolicy(max_attempts=1),
        breaker_threshold=2,
        breaker_open_timeout=30.0,
        on_breaker_state_change=lambda name, old, new: changes.append((name, new)),
    )
    async with client:
        for _ in range(2):
            with pytest.raises(Unavailable):
                await client.ticker()
        with pytest.raises(BreakerOpen):
            await client.ticker()
        assert len(rec.requests) == 2
        assert client.breaker(EndpointGroup.TICKER).state is BreakerState.OPEN
        assert client.breaker(EndpointGroup.ORDERBOOK).state is BreakerState.CLOSED
        rec.handler = lambda r: ok([])
        ft.now += 31
        assert await client.ticker() == []
        assert client.breaker(EndpointGroup.TICKER).state is BreakerState.CLOSED
    assert changes == [
        ("ticker", BreakerState.OPEN),
        ("ticker", BreakerState.HALF_OPEN),
        ("ticker", BreakerState.CLOSED),
    ]


async def test_business_errors_do_not_trip_the_breaker():
    client, _, _ = make_client(lambda r: fail(400, "BALANCE_NOT_ENOUGH"), breaker_threshold=1)
    async with client:
        for _ in range(3):
            with pytest.raises(Rejected):
                await client.submit_order("BTCTRY", Side.BUY, OrderMethod.MARKET, Decimal(10))
        assert client.breaker(EndpointGroup.SUBMIT).state is BreakerState.CLOSED


async def test_user_trades_order_id_is_sent_alone():
    client, rec, _ = make_client(lambda r: ok([]))
    async with client:
        await client.user_trades("BTCTRY", start_ms=1, order_id=77)
        await client.user_trades("BTCTRY", start_ms=1, end_ms=2)
    assert dict(rec.requests[0].url.params) == {"orderId": "77"}
    assert dict(rec.requests[1].url.params) == {"pairSymbol": "BTCTRY", "startDate": "1", "endDate": "2"}


async def test_all_orders_params():
    client, rec, _ = make_client(lambda r: ok([ORDER]))
    async with client:
        (order,) = await client.all_orders("btc_try", order_id=5, limit=10)
    assert dict(rec.requests[0].url.params) == {"pairSymbol": "BTCTRY", "orderId": "5", "limit": "10"}
    assert order.id == ORDER["id"]


def _router(open_orders, all_orders, trades, single=None):
    def handler(request):
        path = request.url.path
        if path == "/api/v1/openOrders":
            return ok({"asks": open_orders, "bids": []})
        if path == "/api/v1/allOrders":
            return ok(all_orders)
        if path == "/api/v1/users/transactions/trade":
            return ok(trades)
        if path.startswith("/api/v1/order/") and single is not None:
            return ok(single)
        return fail(400, "Order not found", code=1152)

    return handler


async def test_find_order_by_client_id_in_open_orders():
    client, rec, _ = make_client(_router([ORDER], [], []))
    async with client:
        order = await client.find_order_by_client_id("BTCTRY", "cid-1")
    assert order is not None
    assert order.id == ORDER["id"]
    assert len(rec.requests) == 1


async def test_find_order_by_client_id_in_all_orders():
    closed = {**ORDER, "status": "Closed", "orderClientId": "cid-2", "leftAmount": "0"}
    client, _, _ = make_client(_router([ORDER], [ORDER, closed], []))
    async with client:
        order = await client.find_order_by_client_id("BTCTRY", "cid-2")
    assert order is not None
    assert order.status is OrderStatus.CLOSED


async def test_find_order_by_client_id_via_trades():
    trade = {"id": 1, "timestamp": 1, "amount": "1", "fee": "0", "tax": "0", "price": "1", "numeratorSymbol": "BTC",
             "denominatorSymbol": "TRY", "orderType": "buy", "orderId": 999, "orderClientId": "cid-3"}  # fmt: skip
    single = {**ORDER, "id": 999, "orderClientId": "cid-3", "status": "Closed"}
    client, rec, _ = make_client(_router([], [], [trade], single))
    async with client:
        order = await client.find_order_by_client_id("BTCTRY", "cid-3")
        missing = await client.find_order_by_client_id("BTCTRY", "nope")
    assert order is not None
    assert order.id == 999
    assert missing is None
    assert rec.requests[3].url.path == "/api/v1/order/999"


def test_client_repr_hides_secret():
    client = BtcTurkClient("https://api.test", KEY, SECRET)
    assert SECRET not in repr(client)
    assert SECRET not in repr(vars(client))


async def test_ohlc_goes_to_graph_api():
    def handler(request):
        assert request.url.host == "graph.test"
        assert request.url.path == "/v1/ohlcs"
        assert dict(request.url.params) == {"pair": "BTCTRY", "from": "1582070400", "to": "1582156800"}
        return httpx.Response(200, json=[{"pair": "BTCTRY", "time": 1582070400, "open": 61940, "high": 62698,
                                          "low": 58500, "close": 58801, "volume": 549.1858885452384}])  # fmt: skip

    client, _, _ = make_client(handler, graph_base_url="https://graph.test/")
    async with client:
        (candle,) = await client.ohlc("BTC_TRY", 1582070400, 1582156800)
    assert candle.volume == Decimal("549.1858885452384")


async def test_all_tickers_without_pair():
    client, rec, _ = make_client(lambda r: ok([]))
    async with client:
        assert await client.ticker() == []
    assert dict(rec.requests[0].url.params) == {}


async def test_injected_rng_drives_retry_jitter():
    delays = []
    for _ in range(2):
        client, _, ft = make_client(lambda r: httpx.Response(503), rng=random.Random(42))
        async with client:
            with pytest.raises(Unavailable):
                await client.ticker()
        delays.append(ft.slept)
    assert len(delays[0]) == 3
    assert delays[0] == delays[1]
    assert all(0 <= d <= 0.8 for d in delays[0])


async def test_transactions_send_repeated_type_and_symbol_signed():
    def handler(request):
        assert request.url.path == "/api/v1/users/transactions/crypto"
        assert request.url.params.multi_items() == [
            ("type", "deposit"), ("type", "withdrawal"), ("symbol", "btc"), ("symbol", "usdt"),
            ("startDate", "1000"), ("endDate", "2000"),
        ]  # fmt: skip
        assert request.headers["X-PCK"] == KEY
        return ok([{"balanceType": "Deposit", "currencySymbol": "BTC", "id": 7, "timestamp": 1500,
                    "funds": 1.5, "amount": 0.5, "fee": 0, "tax": 0}])  # fmt: skip

    client, rec, _ = make_client(handler)
    async with client:
        (tx,) = await client.crypto_transactions(
            types=(TransactionType.DEPOSIT, TransactionType.WITHDRAWAL),
            currencies=("BTC", "usdt"),
            start_ms=1000,
            end_ms=2000,
        )
    assert (tx.id, tx.amount, tx.funds) == (7, Decimal("0.5"), Decimal("1.5"))
    assert len(rec.requests) == 1


async def test_fiat_transactions_without_filters_send_no_query():
    def handler(request):
        assert request.url.path == "/api/v1/users/transactions/fiat"
        assert request.url.query == b""
        return ok([])

    client, _, _ = make_client(handler)
    async with client:
        assert await client.fiat_transactions() == []


async def test_ticker_currency_and_legacy_ohlc_paths():
    def handler(request):
        if request.url.path == "/api/v2/ticker/currency":
            assert dict(request.url.params) == {"symbol": "USDT"}
            return ok([{"pair": "USDTTRY", "timestamp": 1, "last": 32.5, "high": 33, "low": 32, "bid": 32.4,
                        "ask": 32.6, "open": 32, "volume": 10}])  # fmt: skip
        assert request.url.path == "/api/v2/ohlc"
        assert dict(request.url.params) == {"pairSymbol": "BTCTRY", "last": "2"}
        return ok([{"pairSymbol": "BTCTRY", "time": 1582070400000, "open": "1", "high": "2", "low": "1",
                    "close": "2", "volume": "3"}])  # fmt: skip

    client, _, _ = make_client(handler)
    async with client:
        (ticker,) = await client.ticker_currency("usdt")
        (candle,) = await client.legacy_ohlc("BTC_TRY", last=2)
    assert ticker.pair == "USDTTRY"
    assert candle.time_s == 1582070400


async def test_klines_go_to_graph_api_and_validate_resolution():
    def handler(request):
        assert request.url.host == "graph.test"
        assert request.url.path == "/v1/klines/history"
        assert dict(request.url.params) == {"symbol": "BTCTRY", "resolution": "1D", "from": "10", "to": "20"}
        return httpx.Response(200, json={"s": "no_data"})

    client, rec, _ = make_client(handler, graph_base_url="https://graph.test")
    async with client:
        assert await client.klines("btc_try", "1d", 10, 20) == []
        with pytest.raises(ValueError, match="resolution"):
            await client.klines("BTCTRY", 7, 10, 20)
    assert len(rec.requests) == 1
