"""Symbol rules: rounding to tick/scale and pre-checks that mirror BTCTurk's message codes."""

from decimal import Decimal

import pytest

from btcbot.btcturk.models import OrderMethod, Side, SymbolInfo
from btcbot.btcturk.rules import check_order, price_step, round_price, round_quantity

D = Decimal


def symbol(**overrides) -> SymbolInfo:
    base = {
        "id": 1,
        "name": "BTCTRY",
        "name_normalized": "BTC_TRY",
        "status": "TRADING",
        "numerator": "BTC",
        "denominator": "TRY",
        "numerator_scale": 8,
        "denominator_scale": 0,
        "has_fraction": False,
        "tick_size": D(10),
        "min_price": D("0.0000000000001"),
        "max_price": D(10_000_000),
        "min_exchange_value": D("99.91"),
        "order_methods": tuple(OrderMethod),
        "minimum_limit_order_price": D(375_413),
        "maximum_limit_order_price": D(37_541_350),
    }
    base.update(overrides)
    return SymbolInfo(**base)


def test_price_step_uses_coarser_of_tick_and_scale():
    assert price_step(symbol()) == D(10)
    assert price_step(symbol(tick_size=D("0.001"), denominator_scale=2)) == D("0.01")
    assert price_step(symbol(tick_size=None, denominator_scale=2)) == D("0.01")


@pytest.mark.parametrize(
    ("price", "up", "expected"),
    [("3754136", False, "3754130"), ("3754136", True, "3754140"), ("3754130", True, "3754130")],
)
def test_round_price(price, up, expected):
    result = round_price(symbol(), D(price), up=up)
    assert result == D(expected)
    assert str(result) == expected


def test_round_quantity_floors_to_scale():
    assert round_quantity(symbol(), D("0.123456789")) == D("0.12345678")
    assert str(round_quantity(symbol(), D("0.00100000"))) == "0.001"


@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [
        ({"side": Side.BUY, "method": OrderMethod.LIMIT, "quantity": D("0.001"), "price": D(3_000_000)}, None),
        ({"side": Side.BUY, "method": OrderMethod.LIMIT, "quantity": D("0.001"), "price": D(3_000_005)},
         "invalidPriceScale"),
        ({"side": Side.BUY, "method": OrderMethod.LIMIT, "quantity": D("0.000000001"), "price": D(3_000_000)},
         "invalidQuantityScale"),
        ({"side": Side.BUY, "method": OrderMethod.LIMIT, "quantity": D("0.00001"), "price": D(3_000_000)},
         "FAILED_MIN_TOTAL_AMOUNT"),
        ({"side": Side.SELL, "method": OrderMethod.LIMIT, "quantity": D(1), "price": D(100_000)},
         "ORDER_MIN_PRICE_EXCEEDED"),
        ({"side": Side.SELL, "method": OrderMethod.LIMIT, "quantity": D(1), "price": D(40_000_000)},
         "PRICE_MUST_BE_LESS_THAN_MAXPRICE"),
        ({"side": Side.BUY, "method": OrderMethod.LIMIT, "quantity": D(1)}, "FAILED_ORDER_PARAMETER"),
        ({"side": Side.BUY, "method": OrderMethod.MARKET, "quantity": D("99.9")}, "FAILED_MIN_TOTAL_AMOUNT"),
        ({"side": Side.BUY, "method": OrderMethod.MARKET, "quantity": D("100.123")}, None),
        ({"side": Side.SELL, "method": OrderMethod.MARKET, "quantity": D("0.00001"),
          "reference_price": D(3_000_000)}, "FAILED_MIN_TOTAL_AMOUNT"),
        ({"side": Side.SELL, "method": OrderMethod.MARKET, "quantity": D("0.00001")}, None),
        ({"side": Side.SELL, "method": OrderMethod.STOP_MARKET, "quantity": D("0.001")}, "FAILED_ORDER_PARAMETER"),
        ({"side": Side.SELL, "method": OrderMethod.STOP_MARKET, "quantity": D("0.001"), "stop_price": D(3_000_001)},
         "invalidStopPriceScale"),
        ({"side": Side.SELL, "method": OrderMethod.LIMIT, "quantity": D(0), "price": D(3_000_000)},
         "FAILED_ORDER_PARAMETER"),
    ],
)  # fmt: skip
def test_check_order(kwargs, reason):
    assert check_order(symbol(), **kwargs) == reason


def test_pair_status_and_methods():
    assert check_order(symbol(status="HALT"), Side.BUY, OrderMethod.MARKET, D(500)) == "PAIR_NOT_TRADING"
    limited = symbol(order_methods=(OrderMethod.LIMIT,))
    assert check_order(limited, Side.BUY, OrderMethod.MARKET, D(500)) == "orderMethodNotSupported"
