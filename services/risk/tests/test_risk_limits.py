from dataclasses import dataclass
from decimal import Decimal

import pytest
from hypothesis import find, given, settings
from hypothesis import strategies as st

from btcbot.contracts.messages import OrderIntent
from btcbot.risk.limits import (
    Approved,
    BookSeen,
    Denied,
    RiskLimits,
    RiskView,
    check,
    decimals,
    increases_exposure,
    on_tick,
)
from btcbot.risk.rules import SymbolRules, rules_from_exchange

D = Decimal
NOW = 1_700_000_000 * 10**9
RULES = {
    "BTCTRY": SymbolRules(
        "BTCTRY",
        True,
        price_scale=2,
        quantity_scale=8,
        tick_size=D("10"),
        min_notional=D("99.91"),
        min_price=D("1"),
        max_price=D("10000000"),
    ),
    "HALTTRY": SymbolRules("HALTTRY", False, price_scale=2, quantity_scale=8),
}
ALL_CHECKS = (
    "KILL_SWITCH",
    "CONTROL_UNREADABLE",
    "MODE",
    "AUTO_MODE",
    "SYMBOL_HALTED",
    "STALE_INTENT",
    "UNKNOWN_SYMBOL",
    "SYMBOL_NOT_TRADING",
    "ORDER_TYPE",
    "BAD_QUANTITY",
    "MISSING_PRICE",
    "BAD_PRICE",
    "REDUCE_ONLY",
    "PRICE_RANGE",
    "PRICE_TICK",
    "PRICE_SCALE",
    "QUANTITY_SCALE",
    "MIN_NOTIONAL",
    "MAX_ORDER_NOTIONAL",
)


def intent(
    price="3000000", qty="0.0003", *, side="buy", symbol="BTCTRY", order_type="limit", ts=NOW, reduce_only=False
):
    return OrderIntent(
        id="intent:x",
        ts_ns=ts,
        strategy="s",
        symbol=symbol,
        side=side,
        order_type=order_type,
        price=None if price is None else D(price),
        quantity=D(qty),
        reason="r",
        book_id="b",
        reduce_only=reduce_only,
    )


def run(i, **view):
    view.setdefault("rules", RULES)
    return check(i, RiskView(**view), RiskLimits(), NOW)


def reason(verdict):
    assert isinstance(verdict, Denied), verdict
    return verdict.reason


def test_approved_lists_every_check_in_order():
    assert run(intent()) == Approved(ALL_CHECKS)


def test_checks_without_a_rule_are_not_claimed():
    rules = {"BTCTRY": SymbolRules("BTCTRY", True, price_scale=2, quantity_scale=8)}
    verdict = run(intent(), rules=rules)
    assert isinstance(verdict, Approved)
    assert "PRICE_TICK" not in verdict.checks
    assert "MIN_NOTIONAL" not in verdict.checks


@pytest.mark.parametrize(
    ("i", "view", "code"),
    [
        (intent(), {"kill_engaged": True, "mode": "OBSERVE_ONLY"}, "KILL_SWITCH"),
        (intent(), {"mode": "OBSERVE_ONLY"}, "MODE"),
        (intent(side="sell"), {"mode": "OBSERVE_ONLY", "positions": {"BTCTRY": D(1)}}, "MODE"),
        (intent(), {"mode": "REDUCE_ONLY"}, "MODE"),
        (intent(side="sell", qty="2"), {"mode": "REDUCE_ONLY", "positions": {"BTCTRY": D(1)}}, "MODE"),
        (intent(), {"halted": frozenset({"BTCTRY"})}, "SYMBOL_HALTED"),
        (intent(ts=NOW - 31 * 10**9), {}, "STALE_INTENT"),
        (intent(), {"rules": None}, "RULES_NOT_LOADED"),
        (intent(symbol="XRPTRY"), {}, "UNKNOWN_SYMBOL"),
        (intent(symbol="HALTTRY"), {}, "SYMBOL_NOT_TRADING"),
        (intent(order_type="market"), {}, "ORDER_TYPE"),
        (intent(qty="0"), {}, "BAD_QUANTITY"),
        (intent(qty="-1"), {}, "BAD_QUANTITY"),
        (intent(qty="NaN"), {}, "BAD_QUANTITY"),
        (intent(price=None), {}, "MISSING_PRICE"),
        (intent(price="0"), {}, "BAD_PRICE"),
        (intent(price="Infinity"), {}, "BAD_PRICE"),
        (intent(side="sell", reduce_only=True), {}, "REDUCE_ONLY"),
        (intent(price="20000000", qty="0.00001"), {}, "PRICE_RANGE"),
        (intent(price="3000005"), {}, "PRICE_TICK"),
        (intent(price="3000000.001"), {"rules": {"BTCTRY": SymbolRules("BTCTRY", True, 2, 8)}}, "PRICE_SCALE"),
        (intent(qty="0.000300001"), {}, "QUANTITY_SCALE"),
        (intent(qty="0.00003"), {}, "MIN_NOTIONAL"),
        (intent(qty="0.002"), {}, "MAX_ORDER_NOTIONAL"),
    ],
)
def test_each_denial_has_its_reason(i, view, code):
    verdict = run(i, **view)
    assert reason(verdict) == code
    assert isinstance(verdict, Denied)
    assert verdict.detail


def test_reduce_only_mode_allows_selling_down_a_position():
    assert isinstance(run(intent(side="sell"), mode="REDUCE_ONLY", positions={"BTCTRY": D(1)}), Approved)
    assert isinstance(run(intent(side="sell", reduce_only=True), positions={"BTCTRY": D(1)}), Approved)


def test_decimals_ignores_trailing_zeros():
    assert decimals(D("1.2300")) == 2
    assert decimals(D("100")) == 0
    assert decimals(D("1E+3")) == 0
    assert decimals(D("0.00000001")) == 8
    assert decimals(D("10.0")) == 0
    with pytest.raises(ValueError, match="finite"):
        decimals(D("NaN"))


def test_on_tick_survives_huge_quotients():
    assert on_tick(D("30"), D("10"))
    assert not on_tick(D("35"), D("10"))
    assert not on_tick(D("1E+40"), D("1E-10"))


def test_increases_exposure():
    assert increases_exposure("buy", D(1), D(0))
    assert not increases_exposure("buy", D(1), D(-2))
    assert increases_exposure("buy", D(3), D(-2))
    assert not increases_exposure("sell", D(1), D(1))
    assert increases_exposure("sell", D("1.1"), D(1))


@dataclass(frozen=True)
class Info:
    name: str
    status: str
    numerator_scale: int
    denominator_scale: int
    tick_size: Decimal | None
    min_exchange_value: Decimal | None
    min_price: Decimal | None = None
    max_price: Decimal | None = None


def test_rules_from_exchange():
    rules = rules_from_exchange(
        [
            Info("BTC_TRY", "TRADING", 8, 0, D("1"), D("99.91"), D("0"), D("1E+7")),
            Info("ETHTRY", "HALT", 8, 2, D("0"), None),
        ]
    )
    assert rules["BTCTRY"] == SymbolRules("BTCTRY", True, 0, 8, D("1"), D("99.91"), None, D("1E+7"))
    assert rules["ETHTRY"] == SymbolRules("ETHTRY", False, 2, 8, None, None)


# -- properties -------------------------------------------------------------------------------------------

ticks = st.sampled_from([D("0.01"), D("0.1"), D("1"), D("5"), D("10"), D("0.25")])
scales = st.integers(min_value=0, max_value=8)
amounts = st.decimals(
    min_value=D("0.00000001"), max_value=D("10000000"), places=10, allow_nan=False, allow_infinity=False
)


@st.composite
def rule_sets(draw):
    return SymbolRules(
        "BTCTRY",
        True,
        price_scale=draw(scales),
        quantity_scale=draw(scales),
        tick_size=draw(st.none() | ticks),
        min_notional=draw(st.none() | st.sampled_from([D("10"), D("99.91")])),
    )


def scaled(draw, max_places):
    """A decimal built from an integer and a number of places, so on-grid values are common."""
    return D(draw(st.integers(min_value=1, max_value=10**9))).scaleb(-draw(st.integers(0, max_places)))


@st.composite
def orders(draw):
    rules = draw(rule_sets())
    if rules.tick_size is not None and draw(st.booleans()):
        price = rules.tick_size * draw(st.integers(min_value=1, max_value=10**7))
    else:
        price = scaled(draw, 10)
    return rules, price, scaled(draw, 10)


@settings(max_examples=250, deadline=None)
@given(order=orders(), max_notional=st.sampled_from([D(1000), D(5000)]))
def test_any_approved_order_satisfies_every_rule(order, max_notional):
    rules, price, qty = order
    i = intent(str(price), str(qty))
    verdict = check(i, RiskView(rules={"BTCTRY": rules}), RiskLimits(max_order_notional=max_notional), NOW)
    if isinstance(verdict, Approved):
        assert price == price.quantize(D(1).scaleb(-rules.price_scale))
        assert qty == qty.quantize(D(1).scaleb(-rules.quantity_scale))
        if rules.tick_size is not None:
            assert (price / rules.tick_size) == (price / rules.tick_size).to_integral_value()
        if rules.min_notional is not None:
            assert price * qty >= rules.min_notional
        assert price * qty <= max_notional
    else:
        assert verdict.reason in ALL_CHECKS


def test_the_generator_reaches_approvals():
    # Guards against a generator that only ever produces denials, which would make the property vacuous.
    def approved(order):
        rules, price, qty = order
        return isinstance(
            check(intent(str(price), str(qty)), RiskView(rules={"BTCTRY": rules}), RiskLimits(), NOW), Approved
        )

    _rules, price, qty = find(orders(), approved, settings=settings(max_examples=2000, database=None))
    assert price * qty <= RiskLimits().max_order_notional


@settings(max_examples=200, deadline=None)
@given(rules=rule_sets(), price=amounts, qty=amounts)
def test_an_order_snapped_to_the_rules_passes_the_exchange_checks(rules, price, qty):
    snapped_price = price.quantize(D(1).scaleb(-rules.price_scale))
    if rules.tick_size is not None:
        snapped_price = (snapped_price / rules.tick_size).to_integral_value() * rules.tick_size
    snapped_qty = qty.quantize(D(1).scaleb(-rules.quantity_scale))
    if snapped_price <= 0 or snapped_qty <= 0 or decimals(snapped_price) > rules.price_scale:
        return  # a tick finer than the scale has no representable price; nothing to claim
    verdict = check(
        intent(str(snapped_price), str(snapped_qty)),
        RiskView(rules={"BTCTRY": rules}),
        RiskLimits(max_order_notional=D("1E+20")),
        NOW,
    )
    notional = snapped_price * snapped_qty
    if rules.min_notional is not None and notional < rules.min_notional:
        assert reason(verdict) == "MIN_NOTIONAL"
    else:
        assert isinstance(verdict, Approved)


@pytest.mark.parametrize(
    ("books", "code"),
    [
        ({}, "STALE_BOOK"),
        ({"BTCTRY": BookSeen(NOW - 11 * 10**9, stale=False)}, "STALE_BOOK"),
        ({"BTCTRY": BookSeen(NOW, stale=True)}, "STALE_BOOK"),
        ({"BTCTRY": BookSeen(NOW - 9 * 10**9, stale=False)}, None),
    ],
)
def test_a_required_fresh_book(books, code):
    limits = RiskLimits(max_book_age_ns=10 * 10**9)
    verdict = check(intent(), RiskView(rules=RULES, books=books), limits, NOW)
    if code is None:
        assert isinstance(verdict, Approved), verdict
        assert "STALE_BOOK" in verdict.checks
    else:
        assert reason(verdict) == code
