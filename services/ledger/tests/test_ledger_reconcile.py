"""Reconciliation logic: in-flight fills defer the round, differences count only when they persist."""

from __future__ import annotations

from decimal import Decimal

from btcbot.ledger.reconcile import Difference, TradeView, balance_lines, compare, confirm

D = Decimal
S = 1_000_000_000
NOW = 1_750_000_000 * S


def trade(
    trade_id: str, age_s: int, *, quantity: str = "1", fee: str = "0.1", side: str = "buy", order: str = "x1"
) -> TradeView:
    return TradeView("BTCTRY", trade_id, side, D("100"), D(quantity), D(fee), D("0.018"), NOW - age_s * S, order)


def run(ledger_trades, exchange_trades, ledger_bal=None, exchange_bal=None):  # type: ignore[no-untyped-def]
    return compare(
        ledger_balances=ledger_bal or {"TRY": D(1000)},
        exchange_balances=exchange_bal or {"TRY": D(1000)},
        ledger_trades=ledger_trades,
        exchange_trades=exchange_trades,
        now_ns=NOW,
        window_start_ns=NOW - 3600 * S,
        grace_ns=30 * S,
    )


def test_agreeing_sides_match() -> None:
    both = [trade("1", 100), trade("2", 5)]
    result = run(both, both)
    assert (result.status, result.differences, result.assets, result.trades) == ("match", (), 1, 2)


def test_a_young_trade_the_ledger_lacks_defers_and_skips_balances() -> None:
    result = run([trade("1", 100)], [trade("1", 100), trade("2", 3)], {"TRY": D(1000)}, {"TRY": D(900)})
    assert result.status == "deferred"
    assert result.in_flight == (("BTCTRY", "2", "x1"),)
    assert result.differences == ()  # the balance differs by exactly that fill: not compared


def test_an_old_trade_the_ledger_lacks_is_missing() -> None:
    result = run([], [trade("1", 100)])
    assert [(d.kind, d.trade_id) for d in result.differences] == [("missing_fill", "1")]
    assert result.status == "mismatch"


def test_a_ledger_fill_the_exchange_does_not_list_is_unknown_only_inside_the_window() -> None:
    ours = [trade("1", 100), trade("2", 7200), trade("3", 2)]
    result = run(ours, [])
    assert [(d.kind, d.trade_id) for d in result.differences] == [("unknown_fill", "1")]


def test_a_fill_with_other_values_differs() -> None:
    result = run([trade("1", 100, fee="0.1")], [trade("1", 100, fee="0.2")])
    (difference,) = result.differences
    assert difference.kind == "fill_differs"
    assert dict(difference.detail) == {"charge": "ledger=0.118 exchange=0.218"}


def test_balances_differ_per_asset_with_missing_assets_as_zero() -> None:
    result = run([], [], {"TRY": D(1000), "BTC": D("0.5")}, {"TRY": D(1000), "ETH": D(2)})
    assert sorted((d.asset, d.ledger, d.exchange) for d in result.differences) == [
        ("BTC", D("0.5"), D(0)),
        ("ETH", D(0), D(2)),
    ]
    lines = balance_lines({"TRY": D(1)}, {"TRY": D("1.0")})
    assert lines[0].matches()
    assert not balance_lines({"TRY": D(1)}, {"TRY": D("1.01")})[0].matches()
    assert balance_lines({"TRY": D(1)}, {"TRY": D("1.01")})[0].matches(D("0.01"))


def test_only_differences_seen_twice_with_the_same_values_are_confirmed() -> None:
    first = [Difference("balance", asset="TRY", ledger=D(1), exchange=D(2))]
    same = [Difference("balance", asset="TRY", ledger=D(1), exchange=D(2))]
    moved = [Difference("balance", asset="TRY", ledger=D(1), exchange=D(3))]
    assert confirm([], first) == []
    assert confirm(first, same) == same
    assert confirm(first, moved) == []  # a fill landed in between: still moving, not a mismatch yet


def test_both_sides_of_a_self_match_are_compared_each_on_its_own() -> None:
    # One trade id, two of our orders: the exchange lists it twice and so must the ledger.
    buy = trade("7", 100, side="buy", order="x10", fee="0.2")
    sell = trade("7", 100, side="sell", order="x11")
    assert run([buy, sell], [sell, buy]).status == "match"
    missing = run([buy], [buy, sell])
    assert [(d.kind, d.trade_id, d.exchange_order_id) for d in missing.differences] == [("missing_fill", "7", "x11")]
    swapped = run([buy, trade("7", 100, side="sell", order="x11", quantity="2")], [buy, sell])
    assert [(d.kind, d.exchange_order_id) for d in swapped.differences] == [("fill_differs", "x11")]
