"""The kit's sanity checks: future-dated messages and money fields that are not money."""

from __future__ import annotations

from decimal import Decimal

import msgspec
from hypothesis import given
from hypothesis import strategies as st

from btcbot.contracts.messages import (
    Balance,
    BookSnapshot,
    Level,
    OrderAccepted,
    OrderCanceled,
    OrderFilled,
    OrderIntent,
    PortfolioSnapshot,
    Position,
    SubmitOrder,
    TradeTick,
)
from btcbot.runtime.sanity import claimed_ns, is_future_dated, money_problem

D = Decimal
SECOND = 10**9


def test_future_dated_means_beyond_the_skew_after_storage() -> None:
    stored = 1_700_000_000 * SECOND
    assert not is_future_dated(stored, stored, 5 * SECOND)
    assert not is_future_dated(stored + 5 * SECOND, stored, 5 * SECOND)
    assert is_future_dated(stored + 5 * SECOND + 1, stored, 5 * SECOND)
    assert is_future_dated(stored + 3600 * SECOND, stored, 5 * SECOND)
    assert not is_future_dated(stored - 3600 * SECOND, stored, 5 * SECOND)  # old messages are fine


def fill(**kw: object) -> OrderFilled:
    base = OrderFilled(id="f", ts_ns=1, client_order_id="c", exchange_order_id="e", strategy="s", symbol="BTCTRY",
                       side="buy", trade_id="t", price=D("100"), quantity=D("1"), fee=D("0.1"),
                       fee_asset="TRY")  # fmt: skip
    return msgspec.structs.replace(base, **kw)


def book(bids: tuple[Level, ...], asks: tuple[Level, ...] = ()) -> BookSnapshot:
    return BookSnapshot(id="b", ts_ns=1, symbol="BTCTRY", sequence=1, bids=bids, asks=asks, exchange_ts_ns=1,
                        received_ts_ns=1)  # fmt: skip


def portfolio(**kw: object) -> PortfolioSnapshot:
    base = PortfolioSnapshot(id="p", ts_ns=1, account="a", quote_asset="TRY",
                             balances=(Balance(asset="TRY", total=D("1000")),), positions=(), exposure=D(0),
                             realized_pnl=D(0), unrealized_pnl=D(0), fees=D(0), equity=D("1000"),
                             peak_equity=D("1000"), drawdown=D(0), fills=0)  # fmt: skip
    return msgspec.structs.replace(base, **kw)


def test_sane_messages_pass() -> None:
    assert money_problem(fill()) is None
    assert money_problem(fill(fee=D("-0.5"))) is None  # a fee's sign is the wire's business, only finite
    assert money_problem(book((Level(D("99"), D("0.5")),), (Level(D("101"), D("2")),))) is None
    assert money_problem(portfolio()) is None
    assert money_problem(OrderCanceled(id="x", ts_ns=1, client_order_id="c", exchange_order_id="e",
                                       symbol="BTCTRY", filled_quantity=D(0))) is None  # fmt: skip


def test_fills_need_positive_finite_price_and_quantity_and_finite_fees() -> None:
    assert money_problem(fill(price=D("NaN"))) == "price=NaN"
    assert money_problem(fill(price=D(0))) == "price=0"
    assert money_problem(fill(quantity=D("-1"))) == "quantity=-1"
    assert money_problem(fill(quantity=D("Infinity"))) == "quantity=Infinity"
    assert money_problem(fill(quantity=D("1E+400"))) == "quantity=1E+400"
    assert money_problem(fill(fee=D("sNaN"))) == "fee=sNaN"
    assert money_problem(fill(tax=D("-Infinity"))) == "tax=-Infinity"


def test_books_trades_accepted_and_portfolios_are_checked() -> None:
    assert money_problem(book((Level(D("99"), D("1")), Level(D("-98"), D("1"))))) == "bids[1].price=-98"
    assert money_problem(book((), (Level(D("101"), D(0)),))) == "asks[0].quantity=0"
    tick = TradeTick(id="t", ts_ns=1, symbol="BTCTRY", trade_id="1", price=D("NaN"), quantity=D(1),
                     taker_side="buy", exchange_ts_ns=1)  # fmt: skip
    assert money_problem(tick) == "price=NaN"
    accepted = OrderAccepted(id="a", ts_ns=1, client_order_id="c", exchange_order_id="e", intent_id="i",
                             strategy="s", symbol="BTCTRY", side="buy", order_type="limit", price=D("-1"),
                             quantity=D(1))  # fmt: skip
    assert money_problem(accepted) == "price=-1"
    assert money_problem(portfolio(equity=D("NaN"))) == "equity=NaN"
    flat_nan = (Position(symbol="BTCTRY", quantity=D("NaN"), avg_cost=D(1), realized_pnl=D(0),
                         unrealized_pnl=D(0)),)  # fmt: skip
    assert money_problem(portfolio(positions=flat_nan)) == "positions[BTCTRY].quantity=NaN"


def test_commands_are_left_to_their_domain() -> None:
    # Risk denies a bad intent and execution rejects a bad command: the sender waits for that answer.
    intent = OrderIntent(id="i", ts_ns=1, strategy="s", symbol="BTCTRY", side="buy", order_type="limit",
                         price=D("NaN"), quantity=D("-1"), reason="r", book_id="b")  # fmt: skip
    submit = SubmitOrder(id="s", ts_ns=1, client_order_id="c", intent_id="i", strategy="s", symbol="BTCTRY",
                         side="buy", order_type="limit", price=D("-1"), quantity=D("NaN"))  # fmt: skip
    assert money_problem(intent) is None
    assert money_problem(submit) is None


@given(st.decimals(allow_nan=True, allow_infinity=True))
def test_a_fill_passes_exactly_when_its_quantity_is_sane(quantity: Decimal) -> None:
    sane = quantity.is_finite() and quantity > 0 and quantity < D("1E+18")
    assert (money_problem(fill(quantity=quantity)) is None) == sane


def test_a_book_claims_its_exchange_and_receive_times_a_fill_only_its_own() -> None:
    b = msgspec.structs.replace(book(()), ts_ns=10, exchange_ts_ns=3600, received_ts_ns=20)
    assert claimed_ns(b) == 3600
    assert claimed_ns(fill(ts_ns=10, exchange_ts_ns=3600)) == 10
