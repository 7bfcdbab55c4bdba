"""Submit-order parsing and exchange rules."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from btcbot.sim.config import KNOWN_CURRENCIES, KNOWN_SYMBOLS, SimConfig
from btcbot.sim.engine import OrderRequest, Rejected
from btcbot.sim.rules import check_order, parse_decimal, parse_order

D = Decimal
BTCTRY = KNOWN_SYMBOLS["BTCTRY"]
USDTTRY = KNOWN_SYMBOLS["USDTTRY"]
LOOKUP = SimConfig().symbol


def parse(**params: Any) -> OrderRequest | Rejected:
    base: dict[str, Any] = {
        "pairSymbol": "BTCTRY",
        "orderType": "buy",
        "orderMethod": "limit",
        "price": "3600000",
        "quantity": "0.001",
    }
    base.update(params)
    return parse_order({k: v for k, v in base.items() if v is not None}, "acct", LOOKUP, lambda: "generated")


def check(req: OrderRequest | Rejected, rules: Any = BTCTRY, ref: str | None = "3600000") -> str | None:
    assert isinstance(req, OrderRequest), req
    result = check_order(
        req, rules, quote_precision=2, reference_price=D(ref) if ref else None, best_bid=D(ref) if ref else None
    )
    return result.code if result else None


def test_parse_accepts_documented_forms() -> None:
    req = parse(pairSymbol="BTC_TRY", orderType="Buy", orderMethod="Limit", newOrderClientId="abc")
    assert req == OrderRequest("acct", "abc", "BTCTRY", "buy", "limit", D("0.001"), D(3600000))
    # numbers as JSON numbers (parsed to Decimal), ccxt's alias for the client id, GUID when absent
    numeric = parse(price=3600000, quantity=D("0.001"), newClientOrderId="ccxt-id")
    assert isinstance(numeric, OrderRequest)
    assert (numeric.price, numeric.quantity, numeric.client_id) == (D(3600000), D("0.001"), "ccxt-id")
    generated = parse()
    assert isinstance(generated, OrderRequest)
    assert generated.client_id == "generated"
    market = parse(orderMethod="market", price=None, quantity="1000")
    assert isinstance(market, OrderRequest)
    assert market.price is None


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"pairSymbol": "DOGETRY"}, "FAILED_ORDER_PARAMETER"),
        ({"pairSymbol": None}, "FAILED_ORDER_PARAMETER"),
        ({"orderType": "hold"}, "FAILED_ORDER_PARAMETER"),
        ({"orderMethod": "iceberg"}, "FAILED_ORDER_PARAMETER"),
        ({"orderMethod": "stopLimit"}, "ORDER_METHOD_NOT_SUPPORTED"),
        ({"quantity": "-1"}, "FAILED_ORDER_PARAMETER"),
        ({"quantity": "0"}, "FAILED_ORDER_PARAMETER"),
        ({"quantity": "1e3"}, "FAILED_ORDER_PARAMETER"),
        ({"quantity": "1,5"}, "FAILED_ORDER_PARAMETER"),
        ({"quantity": True}, "FAILED_ORDER_PARAMETER"),
        ({"price": None}, "FAILED_ORDER_PARAMETER"),
        ({"newOrderClientId": "x" * 51}, "FAILED_ORDER_PARAMETER"),
        ({"newOrderClientId": 12}, "FAILED_ORDER_PARAMETER"),
    ],
)
def test_parse_rejects_malformed(params: dict[str, Any], code: str) -> None:
    assert parse(**params) == Rejected(code)


def test_parse_decimal() -> None:
    assert parse_decimal("0.00000001") == D("0.00000001")
    assert parse_decimal(5) == D(5)
    assert parse_decimal("1" * 13) is None
    assert parse_decimal("0." + "1" * 17) is None
    assert parse_decimal(None) is None


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({}, None),
        ({"quantity": "0.000000001"}, "INVALID_QUANTITY_SCALE"),
        ({"price": "3600000.5"}, "INVALID_PRICE_SCALE"),
        ({"quantity": "0.00002"}, "FAILED_MIN_TOTAL_AMOUNT"),  # 72 TRY < 99.91
        ({"price": "359999", "quantity": "0.001"}, "ORDER_MIN_PRICE_EXCEEDED"),
        # BTCTRY's recorded maxPrice (10,000,000) is below 10x the last price, so it refuses first.
        ({"price": "10000001", "quantity": "0.00001"}, "PRICE_MUST_BE_LESS_THAN_MAXPRICE"),
        ({"orderMethod": "market", "price": None, "quantity": "99.90"}, "FAILED_MIN_TOTAL_AMOUNT"),
        ({"orderMethod": "market", "price": None, "quantity": "99.91"}, None),
        ({"orderMethod": "market", "price": None, "quantity": "100.001"}, "INVALID_QUANTITY_SCALE"),
        (
            {"orderMethod": "market", "orderType": "sell", "price": None, "quantity": "0.00002"},
            "FAILED_MIN_TOTAL_AMOUNT",
        ),
        ({"orderMethod": "market", "orderType": "sell", "price": None, "quantity": "0.0001"}, None),
    ],
)
def test_rules_btctry(params: dict[str, Any], code: str | None) -> None:
    assert check(parse(**params)) == code


def test_price_band_above_the_last_price() -> None:
    assert check(parse(price="9000001", quantity="0.00002"), ref="900000") == "ORDER_MAX_PRICE_EXCEEDED"


def test_tick_size_on_fractional_pair() -> None:
    ok = parse(pairSymbol="USDTTRY", price="42.515", quantity="10")
    assert check(ok, USDTTRY, "42.5") is None
    assert check(parse(pairSymbol="USDTTRY", price="42.5055", quantity="10"), USDTTRY, "42.5") == (
        "INVALID_PRICE_SCALE"
    )
    assert check(parse(pairSymbol="USDTTRY", price="42.5", quantity="10.001"), USDTTRY, "42.5") == (
        "INVALID_QUANTITY_SCALE"
    )


def test_without_reference_price_no_band_applies() -> None:
    assert check(parse(price="9900000", quantity="0.00002"), ref=None) is None


XRPUSDT = KNOWN_SYMBOLS["XRPUSDT"]
USDT_PRECISION = KNOWN_CURRENCIES["USDT"].precision
EVERY_PAIR = SimConfig(symbols=tuple(KNOWN_SYMBOLS.values())).symbol


def check_usdt(**params: Any) -> str | None:
    """XRPUSDT (recorded scales: quantity 4, price 4; minimum 9.91 USDT) at a last price of 2.2 USDT."""
    base: dict[str, Any] = {"pairSymbol": "XRP_USDT", "orderType": "buy", "orderMethod": "limit", "price": "2.2"}
    base.update({"quantity": "5", **params})
    req = parse_order({k: v for k, v in base.items() if v is not None}, "acct", EVERY_PAIR, lambda: "generated")
    assert isinstance(req, OrderRequest), req
    result = check_order(req, XRPUSDT, quote_precision=USDT_PRECISION, reference_price=D("2.2"), best_bid=D("2.2"))
    return result.code if result else None


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({}, None),  # 11 USDT
        ({"price": "2.2001"}, None),
        ({"quantity": "4.505"}, None),  # 9.911 USDT
        ({"quantity": "4.4"}, "FAILED_MIN_TOTAL_AMOUNT"),  # 9.68 USDT < 9.91
        ({"price": "2.20005"}, "INVALID_PRICE_SCALE"),
        ({"quantity": "5.00001"}, "INVALID_QUANTITY_SCALE"),
        ({"price": "22.0001"}, "ORDER_MAX_PRICE_EXCEEDED"),
        ({"orderMethod": "market", "price": None, "quantity": "9.91"}, None),  # market buys count in USDT
        ({"orderMethod": "market", "price": None, "quantity": "9.90"}, "FAILED_MIN_TOTAL_AMOUNT"),
        ({"orderMethod": "market", "price": None, "quantity": "10.0000001"}, "INVALID_QUANTITY_SCALE"),
        ({"orderMethod": "market", "orderType": "sell", "price": None, "quantity": "4.4"}, "FAILED_MIN_TOTAL_AMOUNT"),
        ({"orderMethod": "market", "orderType": "sell", "price": None, "quantity": "4.505"}, None),
    ],
)
def test_rules_of_a_usdt_pair(params: dict[str, Any], code: str | None) -> None:
    assert check_usdt(**params) == code
