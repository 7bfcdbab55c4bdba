"""Contract tests, continued: ticker by currency, graph-api candles (ohlcs, klines), legacy ohlc and the
crypto/fiat transaction lists, the real client against the in-process simulator."""

import base64
import time
from collections.abc import AsyncIterator
from decimal import Decimal

import pytest
from aiohttp.test_utils import TestServer

from btcbot.btcturk import BtcTurkClient, OrderMethod, Rejected, Side, TransactionType
from btcbot.sim.app import create_app
from btcbot.sim.config import Account, SimConfig

KEY = "contract-more-key"
SECRET = base64.b64encode(b"contract-more-secret-0123456789").decode()
FUNDS = {"TRY": Decimal(1_000_000), "BTC": Decimal(2), "USDT": Decimal(500)}
DAY_S = 86_400


@pytest.fixture
async def server() -> AsyncIterator[TestServer]:
    config = SimConfig(accounts=(Account(KEY, SECRET, dict(FUNDS)),), run_market=False)
    srv = TestServer(create_app(config))
    await srv.start_server()
    try:
        yield srv
    finally:
        await srv.close()


@pytest.fixture
async def client(server) -> AsyncIterator[BtcTurkClient]:
    url = str(server.make_url("")).rstrip("/")
    # graph-api is served on the simulator's own port.
    async with BtcTurkClient(url, KEY, SECRET, graph_base_url=url, timeout=5.0) as c:
        yield c


async def test_ticker_by_currency(client):
    tickers = await client.ticker_currency("usdt")
    assert {t.pair for t in tickers} == {"BTCUSDT", "USDTTRY"}
    assert all("USDT" in (t.numerator, t.denominator) for t in tickers)
    assert await client.ticker_currency("XYZ") == []


async def test_candles_follow_our_own_trades(client):
    now_s = int(time.time())
    before = await client.klines("BTCTRY", 1, now_s - 3600, now_s + 60)
    before_volume = sum((k.volume for k in before), Decimal(0))
    ack = await client.submit_order("BTCTRY", Side.BUY, OrderMethod.MARKET, Decimal(5000))
    fills = await client.user_trades(order_id=ack.id)
    assert fills
    bought = sum(t.quantity for t in fills)

    minutes = await client.klines("BTCTRY", 1, now_s - 3600, now_s + 60)
    assert sum(k.volume for k in minutes) == before_volume + bought
    last = minutes[-1]
    assert last.low <= min(t.price for t in fills)
    assert last.high >= max(t.price for t in fills)
    assert [k.time_s for k in minutes] == sorted(k.time_s for k in minutes)
    assert all(k.time_s % 60 == 0 for k in minutes)

    (day,) = await client.klines("BTCTRY", "1D", now_s, now_s)
    assert day.time_s == now_s // DAY_S * DAY_S
    # The simulator synthesizes the last 24 h at start, so the day holds more minutes than the last hour's.
    today = await client.klines("BTCTRY", 1, day.time_s, now_s + 60)
    assert day.volume == sum(k.volume for k in today if k.time_s >= day.time_s)
    assert await client.klines("BTCTRY", 60, now_s - 10 * DAY_S, now_s - 9 * DAY_S) == []

    (candle,) = await client.ohlc("BTCTRY", now_s, now_s)
    assert (candle.pair, candle.time_s, candle.volume) == ("BTCTRY", day.time_s, day.volume)
    assert (candle.open, candle.high, candle.low, candle.close) == (day.open, day.high, day.low, day.close)
    assert candle.daily_change_amount == candle.close - candle.open
    assert candle.total is not None
    assert candle.average is not None
    assert candle.low <= candle.average <= candle.high
    # Every pair has today's bar: the simulator's synthesized last 24 h traded them all.
    assert {c.pair for c in await client.ohlc()} == {"BTCTRY", "ETHTRY", "BTCUSDT", "USDTTRY"}

    (legacy,) = await client.legacy_ohlc("BTCTRY", last=1)
    assert (legacy.pair, legacy.time_s, legacy.close) == ("BTCTRY", day.time_s, candle.close)


async def test_klines_unknown_symbol_is_rejected(client):
    with pytest.raises(Rejected):
        await client.klines("NOPENOPE", 1, 0, 10)


async def test_initial_funding_in_transaction_lists(client):
    crypto = await client.crypto_transactions()
    assert {(t.currency, t.amount) for t in crypto} == {("BTC", FUNDS["BTC"]), ("USDT", FUNDS["USDT"])}
    assert all(t.type is TransactionType.DEPOSIT and t.funds == t.amount for t in crypto)
    assert len({t.id for t in crypto}) == len(crypto)
    (fiat,) = await client.fiat_transactions()
    assert (fiat.currency, fiat.amount, fiat.fee, fiat.tax) == ("TRY", FUNDS["TRY"], 0, 0)
    only_btc = await client.crypto_transactions(types=(TransactionType.DEPOSIT,), currencies=("btc",))
    assert [t.currency for t in only_btc] == ["BTC"]
    assert await client.crypto_transactions(types=(TransactionType.WITHDRAWAL,)) == []
    assert await client.fiat_transactions(start_ms=fiat.timestamp_ms + 1) == []
