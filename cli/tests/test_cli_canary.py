"""`btcbot canary`'s step logic: the hard cap, arming, the order it plans, and what its events add up to."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from btcbot.btcturk.models import OrderMethod, SymbolInfo
from btcbot.cli.canary import (
    DEFAULT_MAX_NOTIONAL,
    LIVE_ACK_PHRASE,
    OrderPlan,
    Outcome,
    Report,
    Step,
    arming_step,
    cap_step,
    ledger_step,
    mode_step,
    parse_cap,
    plan_order,
)
from btcbot.cli.canary_run import env_from_run_file
from btcbot.contracts.messages import (
    BookSnapshot,
    Level,
    OrderAccepted,
    OrderCanceled,
    OrderDenied,
    OrderFilled,
    OrderRejected,
    SubmitOrder,
)

D = Decimal
NOW = 1_700_000_000 * 10**9


def info(**overrides: object) -> SymbolInfo:
    base: dict[str, object] = {
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
    }
    base.update(overrides)
    return SymbolInfo(**base)  # type: ignore[arg-type]


def book(bid: str = "2000000", ask: str = "2000010") -> BookSnapshot:
    return BookSnapshot(
        id="book:BTCTRY:1:1",
        ts_ns=NOW,
        symbol="BTCTRY",
        sequence=1,
        bids=(Level(D(bid), D(1)),),
        asks=(Level(D(ask), D(1)),),
        exchange_ts_ns=NOW,
        received_ts_ns=NOW,
    )


def test_cap_refuses_above_the_hard_cap_and_nonpositive():
    assert cap_step(D(100), D(1000)).ok
    assert cap_step(D(1000), D(1000)).ok
    over = cap_step(D("1000.01"), D(1000))
    assert not over.ok
    assert "nothing sent" in over.detail
    assert not cap_step(D(0), D(1000)).ok
    assert not cap_step(D(-5), D(1000)).ok
    assert not cap_step(D("NaN"), D(1000)).ok


def test_parse_cap_default_and_bad_values():
    assert parse_cap({}) == DEFAULT_MAX_NOTIONAL
    assert parse_cap({"CANARY_MAX_NOTIONAL": "250"}) == D(250)
    for bad in ("x", "0", "-1", "Infinity"):
        with pytest.raises(ValueError, match="CANARY_MAX_NOTIONAL"):
            parse_cap({"CANARY_MAX_NOTIONAL": bad})


def test_arming_simulator_by_default_live_only_when_armed():
    assert arming_step("http://127.0.0.1:8800", {}).ok
    real = "https://api.btcturk.com"
    assert not arming_step(real, {}).ok
    assert not arming_step(real, {"EXECUTION_LIVE": "true"}).ok  # no acknowledgement
    armed = {"EXECUTION_LIVE": "true", "EXECUTION_LIVE_ACK": LIVE_ACK_PHRASE}
    step = arming_step(real, armed)
    assert step.ok
    assert "LIVE" in step.detail
    assert not arming_step("http://api.btcturk.com", armed).ok  # not https
    assert not arming_step("http://127.0.0.1:8800", armed).ok  # armed at a simulator: a mistake, refused
    assert not arming_step("https://api\u3002btcturk\u3002com", {}).ok  # homoglyph host refused
    assert not arming_step("https://API.BTCTURK.COM.", {}).ok  # the real host however spelled


def test_plan_buys_at_the_ask_within_the_notional():
    plan = plan_order(book(), info(), D(500), "buy")
    assert isinstance(plan, OrderPlan)
    assert plan.price == D(2000010)
    assert plan.notional <= D(500)
    assert plan.quantity == D("0.00024999")


def test_plan_sells_at_the_bid_and_refuses_what_cannot_be_placed():
    plan = plan_order(book(), info(), D(500), "sell")
    assert isinstance(plan, OrderPlan)
    assert plan.price == D(2000000)
    assert isinstance(plan_order(book(), info(), D(50), "buy"), str)  # below the exchange minimum
    assert isinstance(plan_order(book(), info(status="HALTED"), D(500), "buy"), str)
    empty = BookSnapshot(
        id="b", ts_ns=NOW, symbol="BTCTRY", sequence=1, bids=(), asks=(), exchange_ts_ns=NOW, received_ts_ns=NOW
    )
    assert "no asks" in str(plan_order(empty, info(), D(500), "buy"))


@given(
    ask=st.integers(min_value=1, max_value=10**7),
    notional=st.decimals(min_value=D(1), max_value=D(10_000), places=2),
    scale=st.integers(min_value=0, max_value=8),
)
def test_planned_orders_never_exceed_the_notional(ask: int, notional: Decimal, scale: int) -> None:
    rules = info(numerator_scale=scale, tick_size=None, min_exchange_value=None)
    plan = plan_order(book(bid=str(max(ask - 1, 1)), ask=str(ask)), rules, notional, "buy")
    if isinstance(plan, OrderPlan):
        assert plan.notional <= notional
        assert plan.quantity > 0
        assert plan.price >= ask  # still crosses the spread


def _events(coid: str = "bbabc") -> dict[str, object]:
    return {
        "submit": SubmitOrder(
            id="submit:bbabc",
            ts_ns=NOW,
            client_order_id=coid,
            intent_id="intent:canary:BTCTRY:1",
            strategy="canary",
            symbol="BTCTRY",
            side="buy",
            order_type="limit",
            price=D(100),
            quantity=D(2),
            checks=("notional",),
        ),
        "accepted": OrderAccepted(
            id="acc",
            ts_ns=NOW,
            client_order_id=coid,
            exchange_order_id="77",
            intent_id="intent:canary:BTCTRY:1",
            strategy="canary",
            symbol="BTCTRY",
            side="buy",
            order_type="limit",
            price=D(100),
            quantity=D(2),
        ),
    }


def fill(trade: str, quantity: str, coid: str = "bbabc") -> OrderFilled:
    return OrderFilled(
        id=f"fill:{trade}",
        ts_ns=NOW,
        client_order_id=coid,
        exchange_order_id="77",
        strategy="canary",
        symbol="BTCTRY",
        side="buy",
        trade_id=trade,
        price=D(100),
        quantity=D(quantity),
        fee=D("0.1"),
        fee_asset="TRY",
    )


def test_outcome_folds_the_path_of_a_filled_order_ignoring_others_and_repeats():
    outcome = Outcome("intent:canary:BTCTRY:1", "bbabc")
    assert outcome.verdict() is None
    assert outcome.exchange() is None
    events = _events()
    outcome.add_all([events["submit"], fill("9", "1", coid="bbother"), events["accepted"]])  # type: ignore[list-item]
    assert outcome.verdict() == Step("verdict", True, "risk approved bbabc (checks notional)")
    exchange = outcome.exchange()
    assert exchange is not None
    assert exchange.ok
    assert not outcome.done(D(2))
    outcome.add_all([fill("1", "1.5"), fill("1", "1.5"), fill("2", "0.5")])
    assert outcome.filled_quantity == D(2)
    assert outcome.done(D(2))
    assert outcome.fill_step(D(2), 30).ok
    assert ledger_step(2, D(2), outcome).ok
    assert not ledger_step(1, D("1.5"), outcome).ok


def test_outcome_denied_rejected_and_unfilled_fail():
    denied = Outcome("intent:canary:BTCTRY:1", "bbabc")
    denied.add(OrderDenied(id="d", ts_ns=NOW, intent_id="intent:canary:BTCTRY:1", strategy="canary",
                           symbol="BTCTRY", reason="KILL_SWITCH"))  # fmt: skip
    verdict = denied.verdict()
    assert verdict is not None
    assert not verdict.ok
    assert "KILL_SWITCH" in verdict.detail
    rejected = Outcome("intent:canary:BTCTRY:1", "bbabc")
    rejected.add(OrderRejected(id="r", ts_ns=NOW, client_order_id="bbabc", intent_id="i", strategy="canary",
                               symbol="BTCTRY", reason="EXCHANGE"))  # fmt: skip
    answer = rejected.exchange()
    assert answer is not None
    assert not answer.ok
    unfilled = Outcome("intent:canary:BTCTRY:1", "bbabc")
    assert not unfilled.fill_step(D(2), 5).ok
    unfilled.add(OrderCanceled(id="c", ts_ns=NOW, client_order_id="bbabc", exchange_order_id="77", symbol="BTCTRY",
                               filled_quantity=D(0), reason="canary-ttl"))  # fmt: skip
    assert unfilled.done(D(2))
    step = unfilled.fill_step(D(2), 5)
    assert not step.ok
    assert "canceled" in step.detail
    unfilled.add(fill("3", "0.5"))
    assert unfilled.fill_step(D(2), 5).ok  # a partial fill before the cancel still proves the path


def test_report_exit_codes_and_summary():
    report = Report("BTCTRY", D(100))
    assert report.exit_code() == 1  # no step: never a pass
    report.add(Step("cap", True, "ok"))
    assert report.exit_code() == 0
    report.add(Step("arming", False, "not armed"))
    report.refused = True
    assert report.exit_code() == 2
    summary = json.loads(report.json())
    assert summary["failed_step"] == "arming"
    assert summary["ok"] is False
    assert [s["name"] for s in summary["steps"]] == ["cap", "arming"]


def test_env_from_run_file_overrides_the_environment_with_the_run(tmp_path: Path):
    run = tmp_path / "run.json"
    run.write_text(json.dumps({"nats_url": "nats://h:1", "sim_url": "http://sim", "database_url": "postgresql://x/y"}))
    env = env_from_run_file({"DATABASE_URL": "postgresql://given/z"}, run)
    assert env["NATS_URL"] == "nats://h:1"
    assert env["BTCTURK_BASE_URL"] == "http://sim"
    assert env["DATABASE_URL"] == "postgresql://x/y"
    assert "REDIS_URL" not in env  # absent from the run file: left alone
    assert env["BTCBOT_RUN_FILE"] == str(run)
    assert env_from_run_file({"A": "1"}, None) == {"A": "1"}


def test_mode_step_refuses_when_risk_would_deny():
    normal = {"mode": "NORMAL", "auto_mode": "NORMAL", "kill_engaged": False, "active_alarms": {}, "unreadable": {}}
    assert mode_step(normal, "buy").ok
    assert not mode_step({**normal, "kill_engaged": True}, "buy").ok
    assert not mode_step({**normal, "auto_mode": "OBSERVE_ONLY", "auto_reasons": ["MISSING_MARK"]}, "sell").ok
    assert not mode_step({**normal, "mode": "REDUCE_ONLY"}, "buy").ok
    assert mode_step({**normal, "mode": "REDUCE_ONLY"}, "sell").ok  # risk still decides whether it reduces
    assert not mode_step({**normal, "active_alarms": {"control.alarm.x.y": "d"}}, "buy").ok
    assert not mode_step({**normal, "unreadable": {"control.kill": "bad"}}, "buy").ok


def test_run_file_records_the_canary_identity_and_tolerates_an_older_identities_file():
    from btcbot.cli.up import run_file_nats
    from btcbot.devstack.natsusers import generate_users

    users = generate_users()
    table = run_file_nats(users)["nats_auth"]
    assert set(table) == {"operator", "reader", "canary"}
    assert table["canary"]["user"] == "canary"
    older = {name: user for name, user in users.items() if name != "canary"}
    assert set(run_file_nats(older)["nats_auth"]) == {"operator", "reader"}
