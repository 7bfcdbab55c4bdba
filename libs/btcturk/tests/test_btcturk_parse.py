"""Parsers against the payloads recorded in btcturk-api.md, including their quirks."""

from decimal import Decimal

import pytest

from btcbot.btcturk import parse
from btcbot.btcturk.errors import ProtocolError, Rejected
from btcbot.btcturk.models import OrderMethod, OrderStatus, Side, TransactionType


def d(text: str) -> Decimal:
    return Decimal(text)


def j(text: str):
    return parse.decode_json(text.encode())


def test_server_time_bare_object():
    st = parse.parse_server_time(j('{"serverTime": 1613313462021, "serverTime2": "2021-02-14T14:37:42.0214779+00:00"}'))
    assert st.server_time_ms == 1613313462021
    assert st.iso == "2021-02-14T14:37:42.0214779+00:00"


def test_exchange_info_symbol_with_price_filter():
    data = j(
        """{"timeZone":"UTC","serverTime":1700000000000,"symbols":[{"id":1,"name":"BTCTRY",
        "nameNormalized":"BTC_TRY","status":"TRADING","numerator":"BTC","denominator":"TRY",
        "numeratorScale":8,"denominatorScale":0,"hasFraction":false,"filters":[{"filterType":"PRICE_FILTER",
        "minPrice":"0.0000000000001","maxPrice":"10000000","tickSize":"10","minExchangeValue":"99.91",
        "minAmount":null,"maxAmount":null}],"orderMethods":["MARKET","LIMIT","STOP_MARKET","STOP_LIMIT"],
        "displayFormat":"#,###","commissionFromNumerator":false,"order":1000,"priceRounding":false,
        "isNew":false,"marketPriceWarningThresholdPercentage":0.25,"maximumOrderAmount":null,
        "maximumLimitOrderPrice":37541350,"minimumLimitOrderPrice":375413.5}],
        "currencies":[{"id":1,"symbol":"BTC","minWithdrawal":0.001,"minDeposit":0.0001,"precision":8}],
        "currencyOperationBlocks":[{"currencySymbol":"BTC","depositDisabled":false,"withdrawalDisabled":false}]}"""
    )
    info = parse.parse_exchange_info(data)
    assert info.server_time_ms == 1700000000000
    sym = info.symbol("btc_try")
    assert sym is not None
    assert sym.trading
    assert (sym.numerator, sym.denominator, sym.numerator_scale, sym.denominator_scale) == ("BTC", "TRY", 8, 0)
    assert sym.has_fraction is False
    assert sym.tick_size == d("10")
    assert sym.min_price == d("0.0000000000001")
    assert sym.max_price == d("10000000")
    assert sym.min_exchange_value == d("99.91")
    assert sym.min_amount is None
    assert sym.order_methods == (
        OrderMethod.MARKET,
        OrderMethod.LIMIT,
        OrderMethod.STOP_MARKET,
        OrderMethod.STOP_LIMIT,
    )
    assert sym.minimum_limit_order_price == d("375413.5")
    assert sym.maximum_limit_order_price == d("37541350")
    assert info.currencies[0].min_deposit == d("0.0001")
    assert info.symbol("ETHTRY") is None


def test_ticker_numbers_are_exact_decimals():
    data = j(
        """[{"pair":"BTCTRY","pairNormalized":"BTC_TRY","timestamp":1618826361234,"last":462485,
        "high":473976,"low":444201,"bid":461928,"ask":462485,"open":456915,"volume":917.41368645,
        "average":462868.29574589,"daily":5570,"dailyPercent":1.22,"denominatorSymbol":"TRY",
        "numeratorSymbol":"BTC","order":1000}]"""
    )
    (t,) = parse.parse_tickers(data)
    assert t.pair == "BTCTRY"
    assert t.last == d("462485")
    assert t.volume == d("917.41368645")
    assert t.average == d("462868.29574589")
    assert t.daily_percent == d("1.22")
    assert t.timestamp_ms == 1618826361234


def test_orderbook_float_timestamp_and_string_levels():
    data = j(
        """{"timestamp":1613315997466.0,"bids":[["33245.00","2.10695265"],["33240.00","1"]],
        "asks":[["33490.00","0.03681877"]]}"""
    )
    book = parse.parse_orderbook(data)
    assert book.timestamp_ms == 1613315997466
    assert book.bids == ((d("33245.00"), d("2.10695265")), (d("33240.00"), d("1")))
    assert book.asks == ((d("33490.00"), d("0.03681877")),)


def test_public_trades_with_and_without_side():
    data = j(
        """[{"pair":"BTCTRY","pairNormalized":"BTC_TRY","numerator":"BTC","denominator":"TRY",
        "date":1618828421497,"tid":"637544252214980918","price":"462585.00","amount":"0.01618411",
        "side":"sell"},{"pair":"BTCTRY","date":1618828421000,"tid":"1","price":"1","amount":"2"}]"""
    )
    first, second = parse.parse_public_trades(data)
    assert first.trade_id == "637544252214980918"
    assert first.side is Side.SELL
    assert first.price == d("462585.00")
    assert second.side is None


def test_ohlc_graph_api():
    data = j(
        """[{"pair":"BTCTRY","time":1582070400,"open":61940,"high":62698,"low":58500,"close":58801,
        "volume":549.1858885452384,"total":33566080.63598728,"average":61119.71,
        "dailyChangeAmount":-3139,"dailyChangePercentage":-5.07}]"""
    )
    (c,) = parse.parse_ohlc(data)
    assert c.time_s == 1582070400
    assert c.close == d("58801")
    assert c.volume == d("549.1858885452384")


def test_balances_dot_and_comma_decimals():
    data = j(
        """[{"asset":"TRY","assetname":"Türk Lirası","balance":"27223,7283250757643288",
        "locked":"4874,36","free":"22349,3683250757643288","orderFund":"4874,36","requestFund":"0",
        "precision":2,"timestamp":1735866257711},
        {"asset":"BTC","assetname":"Bitcoin","balance":"0.5","locked":"0.1","free":"0.4",
        "orderFund":"0.1","requestFund":"0","precision":8}]"""
    )
    try_, btc = parse.parse_balances(data)
    assert try_.balance == d("27223.7283250757643288")
    assert try_.locked == d("4874.36")
    assert try_.free + try_.locked == try_.balance
    assert try_.asset_name == "Türk Lirası"
    assert try_.timestamp_ms == 1735866257711
    assert btc.free == d("0.4")
    assert btc.timestamp_ms is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("27223.72", "27223.72"),
        ("27223,72", "27223.72"),
        ("1,234.5", "1234.5"),
        ("1.234,5", "1234.5"),
        (" 7 ", "7"),
        ("-0.06297817", "-0.06297817"),
    ],
)
def test_to_decimal_separators(text, expected):
    assert parse.to_decimal(text) == Decimal(expected)


@pytest.mark.parametrize("bad", ["", "abc", "1,2,3", "NaN", "Infinity", True, None, [1]])
def test_to_decimal_rejects_garbage(bad):
    with pytest.raises(ProtocolError):
        parse.to_decimal(bad)


def test_order_ack_lowercase_live_capture():
    data = j(
        """{"id":9932534,"datetime":1543996112263,"type":"buy","method":"limit","price":"20000.00",
        "stopPrice":null,"quantity":"0.001","pairSymbol":"BTCTRY","pairSymbolNormalized":"BTC_TRY",
        "newOrderClientId":"test"}"""
    )
    ack = parse.parse_order_ack(data)
    assert ack.id == 9932534
    assert ack.side is Side.BUY
    assert ack.method is OrderMethod.LIMIT
    assert ack.price == d("20000.00")
    assert ack.stop_price is None
    assert ack.quantity == d("0.001")
    assert ack.client_order_id == "test"
    assert ack.timestamp_ms == 1543996112263


def test_order_ack_capitalised_docs_sample():
    data = j(
        """{"id":9932534,"datetime":1543996112263,"type":"Buy","method":"Limit","price":"20000.00",
        "stopPrice":"20000.00","quantity":"0.001","pairSymbol":"BTCTRY","pairSymbolNormalized":"BTC_TRY",
        "newOrderClientId":"test"}"""
    )
    ack = parse.parse_order_ack(data)
    assert (ack.side, ack.method) == (Side.BUY, OrderMethod.LIMIT)
    assert ack.stop_price == d("20000.00")


ORDER = """{"id":16060235,"price":"66800.00","amount":"0.09733687","quantity":"0.09733687",
"stopPrice":"0.00","pairSymbol":"BTCTRY","pairSymbolNormalized":"BTC_TRY","type":"sell",
"method":"limit","orderClientId":"da593000-1","time":0,"updateTime":1591286401373,
"status":"Untouched","leftAmount":"0.0973368700000000"}"""


def test_order_object_quirks():
    order = parse.parse_order(j(ORDER))
    assert order.id == 16060235
    assert order.side is Side.SELL
    assert order.status is OrderStatus.UNTOUCHED
    assert order.status.is_open
    assert order.stop_price is None  # "0.00" means no stop
    assert order.time_ms is None  # time:0 quirk
    assert order.update_time_ms == 1591286401373
    assert order.left_amount == d("0.09733687")
    assert order.filled_amount == 0
    assert order.client_order_id == "da593000-1"


def test_order_legacy_lowercase_keys_and_enums():
    order = parse.parse_order(
        j(
            """{"id":1,"price":"10","amount":"2","quantity":"2","pairsymbol":"ETHTRY",
            "pairsymbolnormalized":"ETH_TRY","type":"Buy","method":"StopLimit","stopPrice":"9",
            "status":"partial","leftAmount":"0.5","time":1591286401000}"""
        )
    )
    assert order.pair == "ETHTRY"
    assert order.method is OrderMethod.STOP_LIMIT
    assert order.status is OrderStatus.PARTIAL
    assert order.filled_amount == d("1.5")
    assert order.client_order_id is None
    assert order.time_ms == 1591286401000


@pytest.mark.parametrize(
    ("raw", "status"),
    [("Canceled", OrderStatus.CANCELED), ("CLOSED", OrderStatus.CLOSED), ("cancelled", OrderStatus.CANCELED)],
)
def test_status_normalised(raw, status):
    assert parse.parse_status(raw) is status
    assert not status.is_open


def test_open_orders_asks_and_bids():
    buy = ORDER.replace('"sell"', '"buy"').replace("16060235", "16060236")
    orders = parse.parse_open_orders(j(f'{{"asks":[{ORDER}],"bids":[{buy}]}}'))
    assert {(o.id, o.side) for o in orders} == {(16060235, Side.SELL), (16060236, Side.BUY)}
    assert parse.parse_open_orders(j('{"asks":[],"bids":[]}')) == []


def test_user_trades_signs_and_int64_ids():
    data = j(
        """[{"id":1181163798924649598,"timestamp":1663848223334,"amount":"-0.3384",
        "preciseAmount":-0.33840811,"fee":"-0.06297817","tax":"-0.01133607","price":"122.00",
        "numeratorSymbol":"ETHW","denominatorSymbol":"TRY","orderType":"sell","orderId":10938696222,
        "orderClientId":"abc"}]"""
    )
    (t,) = parse.parse_user_trades(data)
    assert t.id == 1181163798924649598
    assert t.order_id == 10938696222
    assert t.amount == d("-0.3384")
    assert t.quantity == d("0.3384")
    assert t.precise_amount == d("-0.33840811")
    assert t.fee == d("-0.06297817")
    assert t.tax == d("-0.01133607")
    assert t.side is Side.SELL
    assert t.pair == "ETHWTRY"
    assert t.client_order_id == "abc"


def test_user_trade_older_numeric_fields():
    (t,) = parse.parse_user_trades(
        j(
            """[{"id":5,"timestamp":1663848223334,"amount":0.5,"fee":-0.1,"tax":-0.018,"price":100,
            "numeratorSymbol":"btc","denominatorSymbol":"try","orderType":"Buy","orderId":"77"}]"""
        )
    )
    assert (t.amount, t.fee, t.price, t.order_id) == (d("0.5"), d("-0.1"), d("100"), 77)
    assert t.side is Side.BUY


@pytest.mark.parametrize(
    ("raw", "side"), [("buy", Side.BUY), ("Buy", Side.BUY), ("SELL", Side.SELL), (0, Side.BUY), (1, Side.SELL)]
)
def test_side(raw, side):
    assert parse.parse_side(raw) is side


@pytest.mark.parametrize("raw", ["hold", 2, True, None])
def test_side_rejects(raw):
    with pytest.raises(ProtocolError):
        parse.parse_side(raw)


@pytest.mark.parametrize(
    ("raw", "method"),
    [
        ("stopLimit", OrderMethod.STOP_LIMIT),
        ("STOP_MARKET", OrderMethod.STOP_MARKET),
        ("Market", OrderMethod.MARKET),
        (2, OrderMethod.STOP_LIMIT),
    ],
)
def test_method(raw, method):
    assert parse.parse_method(raw) is method


def test_missing_required_field_is_protocol_error():
    with pytest.raises(ProtocolError, match="missing field 'id'"):
        parse.parse_order({"price": "1", "quantity": "1", "pairSymbol": "X", "type": "buy"})
    with pytest.raises(ProtocolError):
        parse.parse_orders({"not": "a list"})
    with pytest.raises(ProtocolError):
        parse.decode_json(b"{nope")


def test_ohlc_keeps_daily_change():
    data = j(
        """[{"pair":"BTCTRY","time":1582070400,"open":61940,"high":62698,"low":58500,"close":58801,
        "volume":549.1858885452384,"total":33566080.63598728,"average":61119.71,
        "dailyChangeAmount":-3139,"dailyChangePercentage":-5.07}]"""
    )
    (c,) = parse.parse_ohlc(data)
    assert (c.total, c.average) == (d("33566080.63598728"), d("61119.71"))
    assert (c.daily_change_amount, c.daily_change_percentage) == (d("-3139"), d("-5.07"))


def test_legacy_ohlc_strings_and_millisecond_time():
    data = j(
        """[{"pairSymbol":"BTCTRY","pairSymbolNormalized":"BTC_TRY","time":1582070400000,"open":"61940",
        "high":"62698","low":"58500","close":"58801","volume":"549.18588854","average":"61119.71"}]"""
    )
    (c,) = parse.parse_ohlc(data)
    assert (c.pair, c.time_s, c.close, c.volume) == ("BTCTRY", 1582070400, d("58801"), d("549.18588854"))
    assert c.daily_change_amount is None


def test_klines_tradingview_udf():
    data = j(
        """{"s":"ok","t":[1661990400,1661994000],"o":[20000.5,20100],"h":[20200,20150.25],
        "l":[19900,20050],"c":[20100,20120],"v":[12.5,3.25]}"""
    )
    first, second = parse.parse_klines(data)
    assert (first.time_s, first.open, first.high, first.low, first.close, first.volume) == (
        1661990400, d("20000.5"), d("20200"), d("19900"), d("20100"), d("12.5"),
    )  # fmt: skip
    assert second.high == d("20150.25")


def test_klines_no_data_error_and_ragged_arrays():
    assert parse.parse_klines(j('{"s":"no_data"}')) == []
    assert parse.parse_klines(j('{"s":"no_data","nextTime":1661990400}')) == []
    with pytest.raises(Rejected) as info:
        parse.parse_klines(j('{"s":"error","errmsg":"unknown symbol"}'))
    assert info.value.message_code == "unknown symbol"
    with pytest.raises(ProtocolError, match="lengths"):
        parse.parse_klines(j('{"s":"ok","t":[1,2],"o":[1],"h":[1],"l":[1],"c":[1],"v":[1]}'))
    with pytest.raises(ProtocolError, match="status"):
        parse.parse_klines(j('{"s":"maybe"}'))


def test_crypto_transactions_sample():
    data = j(
        """[{"balanceType":"Deposit","currencySymbol":"XRP","id":676961,"timestamp":1544079921450,
        "funds":10.8,"amount":0.9,"fee":0,"tax":0},
        {"balanceType":"Withdrawal","currencySymbol":"XRP","id":516136,"timestamp":1544079921450,
        "funds":8.9,"amount":-1,"fee":0,"tax":0}]"""
    )
    deposit, withdrawal = parse.parse_transactions(data)
    assert (deposit.type, deposit.currency, deposit.id) == (TransactionType.DEPOSIT, "XRP", 676961)
    assert (deposit.amount, deposit.funds, deposit.fee, deposit.tax) == (d("0.9"), d("10.8"), 0, 0)
    assert (withdrawal.type, withdrawal.amount) == (TransactionType.WITHDRAWAL, d("-1"))
    assert withdrawal.timestamp_ms == 1544079921450


def test_fiat_transactions_sample_with_string_and_comma_quirks():
    data = j(
        """[{"balanceType":"Deposit","currencySymbol":"TRY","id":93214,"timestamp":1544079972687,
        "funds":100000,"amount":1000,"fee":0,"tax":0},
        {"balanceType":"deposit","currencySymbol":"try","id":"919664","timestamp":1544079972687,
        "funds":"100000,04","amount":"100000","fee":null}]"""
    )
    first, second = parse.parse_transactions(data)
    assert (first.amount, first.funds) == (d("1000"), d("100000"))
    assert (second.id, second.currency, second.funds, second.fee) == (919664, "TRY", d("100000.04"), 0)
    with pytest.raises(ProtocolError, match="transaction type"):
        parse.parse_transactions(j('[{"balanceType":"Trade","currencySymbol":"TRY","id":1,"timestamp":1,"amount":1}]'))
