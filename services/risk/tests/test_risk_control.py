from decimal import Decimal

from btcbot.contracts.messages import KillSwitch, ModeChanged, PortfolioSnapshot, Position
from btcbot.risk.control import RiskState
from btcbot.risk.rules import SymbolRules

D = Decimal


def snap(account, ts, qty):
    return PortfolioSnapshot(
        id=f"p{ts}",
        ts_ns=ts,
        account=account,
        quote_asset="TRY",
        balances=(),
        positions=(Position(symbol="BTCTRY", quantity=D(qty), avg_cost=D(1), realized_pnl=D(0), unrealized_pnl=D(0)),),
        exposure=D(0),
        realized_pnl=D(0),
        unrealized_pnl=D(0),
        fees=D(0),
        equity=D(0),
        peak_equity=D(0),
        drawdown=D(0),
        fills=0,
    )


def test_control_follows_stream_order_not_the_senders_clock():
    s = RiskState("main")
    assert s.view().mode == "NORMAL"
    assert s.apply_control(
        "control.mode", 2, ModeChanged(id="m2", ts_ns=10, mode="REDUCE_ONLY", reason="r", operator="o")
    )
    # Dated later, stored earlier: a redelivered old message never overrides the one in force.
    assert not s.apply_control(
        "control.mode", 1, ModeChanged(id="m1", ts_ns=99, mode="NORMAL", reason="r", operator="o")
    )
    assert s.view().mode == "REDUCE_ONLY"
    assert s.apply_control("control.kill", 5, KillSwitch(id="k1", ts_ns=50, engaged=True, reason="r", operator="o"))
    # Dated earlier, stored later: it is the newer message.
    assert s.apply_control("control.kill", 6, KillSwitch(id="k2", ts_ns=1, engaged=False, reason="r", operator="o"))
    assert not s.apply_control("control.kill", 6, KillSwitch(id="k0", ts_ns=9, engaged=True, reason="r", operator="o"))
    assert s.view().kill_engaged is False


def test_an_unreadable_subject_fails_closed_until_a_later_readable_message():
    s = RiskState("main")
    s.apply_control("control.kill", 3, KillSwitch(id="k", ts_ns=1, engaged=False, reason="r", operator="o"))
    assert s.apply_unreadable("control.kill", 4, "undecodable")
    assert s.view().unreadable == ("control.kill",)
    assert not s.apply_control("control.kill", 4, KillSwitch(id="k", ts_ns=1, engaged=False, reason="r", operator="o"))
    assert s.view().unreadable == ("control.kill",)
    assert s.apply_control("control.kill", 5, KillSwitch(id="k", ts_ns=1, engaged=False, reason="r", operator="o"))
    assert s.view().unreadable == ()


def test_a_message_of_the_wrong_type_for_its_subject_is_unreadable():
    s = RiskState("main")
    s.apply_control("control.kill", 1, ModeChanged(id="m", ts_ns=1, mode="NORMAL", reason="r", operator="o"))
    assert s.view().unreadable == ("control.kill",)


def test_portfolio_of_own_account_newest_only():
    s = RiskState("main")
    assert s.on_portfolio(snap("main", 10, "1"))
    assert not s.on_portfolio(snap("main", 5, "2"))
    assert not s.on_portfolio(snap("other", 50, "3"))
    assert s.view().positions == {"BTCTRY": D(1)}


def test_rules_start_unloaded():
    s = RiskState("main")
    assert s.view().rules is None
    s.set_rules({"BTCTRY": SymbolRules("BTCTRY", True, 2, 8)}, now_ns=7)
    view = s.view()
    assert view.rules is not None
    assert set(view.rules) == {"BTCTRY"}
    assert s.rules_loaded_ns == 7


def test_halted_symbols_come_from_the_newest_snapshot():
    import msgspec

    s = RiskState("main")
    s.on_portfolio(msgspec.structs.replace(snap("main", 10, "1"), halted=("BTCTRY",)))
    assert s.view().halted == frozenset({"BTCTRY"})
    s.on_portfolio(snap("main", 11, "1"))
    assert s.view().halted == frozenset()
