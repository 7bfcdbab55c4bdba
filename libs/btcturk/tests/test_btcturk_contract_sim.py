"""Contract tests: the real client against the simulator (in-process aiohttp server on a free port)."""

import base64
from collections.abc import AsyncIterator
from decimal import Decimal

import httpx
import pytest
from aiohttp.test_utils import TestServer

from btcbot.btcturk import (
    AuthError,
    BtcTurkClient,
    NotFound,
    OrderMethod,
    OrderStatus,
    OutcomeUnknown,
    RateLimited,
    Rejected,
    RetryPolicy,
    Side,
)
from btcbot.sim.admin import ADMIN_HEADER
from btcbot.sim.app import create_app
from btcbot.sim.config import Account, SimConfig

ADMIN_TOKEN = "test-sim-admin-token"
ADMIN = {ADMIN_HEADER: ADMIN_TOKEN}  # /sim/* needs the simulator's admin token

KEY = "contract-key"
SECRET = base64.b64encode(b"contract-test-secret-0123456789").decode()


def config(**overrides) -> SimConfig:
    account = Account(KEY, SECRET, {"TRY": Decimal(1_000_000), "BTC": Decimal(2)})
    return SimConfig(admin_token=ADMIN_TOKEN, accounts=(account,), run_market=False, **overrides)


@pytest.fixture
async def server() -> AsyncIterator[TestServer]:
    srv = TestServer(create_app(config()))
    await srv.start_server()
    try:
        yield srv
    finally:
        await srv.close()


def base_url(srv: TestServer) -> str:
    return str(srv.make_url("")).rstrip("/")


@pytest.fixture
async def client(server) -> AsyncIterator[BtcTurkClient]:
    async with BtcTurkClient(base_url(server), KEY, SECRET, timeout=5.0) as c:
        yield c


async def set_faults(srv: TestServer, **faults) -> None:
    async with httpx.AsyncClient(headers=ADMIN) as http:
        response = await http.post(base_url(srv) + "/sim/faults", json=faults)
        response.raise_for_status()


async def test_public_endpoints(client):
    st = await client.server_time()
    assert st.server_time_ms > 1_700_000_000_000
    info = await client.exchange_info()
    btc = info.symbol("BTC_TRY")
    assert btc is not None
    assert btc.trading
    assert btc.tick_size == Decimal(1)
    assert btc.min_exchange_value == Decimal("99.91")
    (ticker,) = await client.ticker("BTCTRY")
    assert ticker.pair == "BTCTRY"
    assert ticker.bid <= ticker.ask
    book = await client.orderbook("BTCTRY", limit=5)
    assert 0 < len(book.bids) <= 5
    assert book.bids[0][0] < book.asks[0][0]
    assert list(book.bids) == sorted(book.bids, reverse=True)
    assert isinstance(await client.trades("BTCTRY", last=10), list)


async def test_balances_and_clock_sync(client):
    balances = {b.asset: b for b in await client.balances()}
    assert balances["TRY"].free == Decimal(1_000_000)
    assert balances["BTC"].balance == Decimal(2)
    assert client.clock_offset_ms is not None
    assert abs(client.clock_offset_ms) < 1000


async def test_limit_order_lifecycle(client):
    book = await client.orderbook("BTCTRY", limit=1)
    price = (book.bids[0][0] * Decimal("0.9")).quantize(Decimal(1))
    ack = await client.submit_order(
        "BTCTRY", Side.BUY, OrderMethod.LIMIT, Decimal("0.001"), price=price, client_order_id="contract-1"
    )
    assert (ack.side, ack.method, ack.client_order_id, ack.price) == (Side.BUY, OrderMethod.LIMIT, "contract-1", price)
    open_ids = {o.id: o for o in await client.open_orders("BTCTRY")}
    assert open_ids[ack.id].status is OrderStatus.UNTOUCHED
    assert open_ids[ack.id].left_amount == Decimal("0.001")
    found = await client.find_order_by_client_id("BTCTRY", "contract-1")
    assert found is not None
    assert found.id == ack.id
    balances = {b.asset: b for b in await client.balances()}
    assert balances["TRY"].locked > 0
    await client.cancel_order(ack.id)
    order = await client.get_order(ack.id)
    assert order.status is OrderStatus.CANCELED
    assert ack.id not in {o.id for o in await client.open_orders("BTCTRY")}
    assert ack.id in {o.id for o in await client.all_orders("BTCTRY")}
    with pytest.raises((NotFound, Rejected)):
        await client.cancel_order(ack.id)


async def test_market_buy_fills_and_shows_in_user_trades(client):
    ack = await client.submit_order("BTCTRY", "buy", "market", Decimal(1000), client_order_id="contract-mkt")
    trades = [t for t in await client.user_trades("BTCTRY") if t.order_id == ack.id]
    assert trades
    assert all(t.side is Side.BUY and t.client_order_id == "contract-mkt" for t in trades)
    assert all(t.fee <= 0 for t in trades)
    spent = sum(t.price * t.quantity for t in trades)
    assert Decimal(900) < spent <= Decimal(1000)
    by_order = await client.user_trades(order_id=ack.id)
    assert {t.id for t in by_order} == {t.id for t in trades}
    found = await client.find_order_by_client_id("BTCTRY", "contract-mkt")
    assert found is not None
    assert found.id == ack.id
    assert found.status is OrderStatus.CLOSED


async def test_business_rejections(client):
    with pytest.raises(Rejected) as info:
        await client.submit_order("BTCTRY", Side.SELL, OrderMethod.MARKET, Decimal(50))
    assert info.value.message_code.startswith("BALANCE_NOT_ENOUGH")
    with pytest.raises(NotFound):
        await client.get_order(1)
    with pytest.raises(NotFound):
        await client.cancel_order(1)
    assert await client.find_order_by_client_id("BTCTRY", "never-sent") is None


async def test_wrong_secret_is_auth_error(server):
    wrong = base64.b64encode(b"not-the-secret").decode()
    async with BtcTurkClient(base_url(server), KEY, wrong) as c:
        with pytest.raises(AuthError):
            await c.balances()


async def test_lost_submit_response_is_outcome_unknown_then_resolved(server, client):
    await set_faults(server, lose_response_next=1)
    book = await client.orderbook("BTCTRY", limit=1)
    price = (book.bids[0][0] * Decimal("0.9")).quantize(Decimal(1))
    with pytest.raises(OutcomeUnknown) as info:
        await client.submit_order(
            "BTCTRY", Side.BUY, OrderMethod.LIMIT, Decimal("0.001"), price=price, client_order_id="lost-1"
        )
    assert info.value.client_order_id == "lost-1"
    matching = [o for o in await client.open_orders("BTCTRY") if o.client_order_id == "lost-1"]
    assert len(matching) == 1  # placed exactly once: the client did not resend
    found = await client.find_order_by_client_id("BTCTRY", "lost-1")
    assert found is not None
    assert found.id == matching[0].id


async def test_429_storm_is_rate_limited(server):
    await set_faults(server, storm_429_retry_after=30)
    async with BtcTurkClient(base_url(server), KEY, SECRET, read_retry=RetryPolicy(max_attempts=1)) as c:
        with pytest.raises(RateLimited) as info:
            await c.balances()
    assert info.value.retry_after == 30


async def test_comma_decimal_balances():
    srv = TestServer(create_app(config(balance_decimal_comma=True)))
    await srv.start_server()
    try:
        async with BtcTurkClient(base_url(srv), KEY, SECRET) as c:
            balances = {b.asset: b for b in await c.balances()}
        assert balances["TRY"].balance == Decimal(1_000_000)
    finally:
        await srv.close()
