"""decide_mode and the cooldown state machine: examples for every rule, and properties (Hypothesis)."""

from decimal import Decimal

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from btcbot.contracts.messages import PortfolioSnapshot, Position
from btcbot.risk.modes import (
    RANK,
    REASON_MODE,
    STICKY,
    AutoState,
    BudgetLimits,
    ModeInputs,
    decide_mode,
    step,
    stricter,
)

D = Decimal
S = 1_000_000_000
NOW = 1_700_000_000 * S
LIMITS = BudgetLimits()


def snapshot(**changes) -> PortfolioSnapshot:
    base = PortfolioSnapshot(
        id="p1",
        ts_ns=NOW,
        account="main",
        quote_asset="TRY",
        balances=(),
        positions=(),
        exposure=D(0),
        realized_pnl=D(0),
        unrealized_pnl=D(0),
        fees=D(0),
        equity=D(100000),
        peak_equity=D(100000),
        drawdown=D(0),
        fills=0,
    )
    return msgspec.structs.replace(base, **changes)


def position(symbol="BTCTRY", qty="0.001", mark="3000000", opening="0") -> Position:
    return Position(
        symbol=symbol,
        quantity=D(qty),
        avg_cost=D(1),
        realized_pnl=D(0),
        unrealized_pnl=D(0),
        mark=None if mark is None else D(mark),
        opening_quantity=D(opening),
    )


def decide(snap=None, now=NOW, alarms=(), limits=LIMITS):
    return decide_mode(ModeInputs(snap, now, alarms), limits)


def test_a_healthy_account_trades_normally():
    assert decide(snapshot(positions=(position(),))) == ("NORMAL", ())


def test_each_rule_with_its_default_threshold():
    assert decide(snapshot(bot_drawdown=D(3000))) == ("OBSERVE_ONLY", ("DRAWDOWN",))
    assert decide(snapshot(bot_drawdown=D("2999.99")))[0] == "NORMAL"
    assert decide(snapshot(day_pnl=D(-1000))) == ("OBSERVE_ONLY", ("DAILY_LOSS",))
    assert decide(snapshot(day_pnl=D("-999.99")))[0] == "NORMAL"
    # 0.004 BTC at 3,000,000 = 12,000 TRY of the bot's own exposure > 10,000.
    assert decide(snapshot(positions=(position(qty="0.004"),))) == ("REDUCE_ONLY", ("EXPOSURE",))
    # Exactly 10,000 is allowed (the rule is "greater than").
    assert decide(snapshot(positions=(position(qty="0.001", mark="10000000"),)))[0] == "NORMAL"
    # 9,000 of 20,000 equity = 45 % > 30 %.
    small = snapshot(equity=D(20000), positions=(position(qty="0.003"),))
    assert decide(small) == ("REDUCE_ONLY", ("CONCENTRATION",))
    assert decide(snapshot(halted=("ETHTRY",))) == ("OBSERVE_ONLY", ("INTEGRITY_HALT",))
    assert decide(snapshot(missing_marks=("ETHTRY",))) == ("OBSERVE_ONLY", ("MISSING_MARK",))
    assert decide(snapshot(positions=(position(mark=None),))) == ("OBSERVE_ONLY", ("MISSING_MARK",))
    assert decide(None) == ("OBSERVE_ONLY", ("NO_PORTFOLIO",))
    assert decide(snapshot(), now=NOW + 61 * S) == ("OBSERVE_ONLY", ("STALE_PORTFOLIO",))
    assert decide(snapshot(), now=NOW + 60 * S)[0] == "NORMAL"
    assert decide(snapshot(), alarms=("control.alarm.risk.repeated_failures",)) == ("OBSERVE_ONLY", ("ALARM",))


def test_day_fees_cap_is_off_by_default_and_works_when_set():
    fees = snapshot(day_fees=D(500))
    assert decide(fees)[0] == "NORMAL"
    assert decide(fees, limits=BudgetLimits(max_day_fees=D(400))) == ("REDUCE_ONLY", ("DAY_FEES",))


def test_opening_holdings_are_not_the_bots_exposure():
    # The account held 100 BTC before the run; the bot bought 0.001 of the 100.001.
    held = snapshot(equity=D(300_000_000), positions=(position(qty="100.001", opening="100"),))
    assert decide(held) == ("NORMAL", ())


def test_every_reason_is_reported_and_the_strictest_mode_wins():
    snap = snapshot(bot_drawdown=D(5000), day_pnl=D(-2000), positions=(position(qty="0.01"),), equity=D(10000))
    mode, reasons = decide(snap)
    assert mode == "OBSERVE_ONLY"
    assert reasons == ("CONCENTRATION", "DAILY_LOSS", "DRAWDOWN", "EXPOSURE")


def test_rules_can_be_switched_off():
    off = BudgetLimits(
        max_drawdown=None, max_daily_loss=None, max_exposure=None, max_position_share=None, max_snapshot_age_ns=None
    )
    snap = snapshot(bot_drawdown=D(10**6), day_pnl=D(-(10**6)), positions=(position(qty="5"),), ts_ns=0)
    assert decide(snap, limits=off) == ("NORMAL", ())


# ---- properties -------------------------------------------------------------------------------------------------

money = st.decimals(min_value=-100000, max_value=100000, places=2, allow_nan=False, allow_infinity=False)
positive = st.decimals(min_value=0, max_value=100000, places=2, allow_nan=False, allow_infinity=False)


@st.composite
def snapshots(draw):
    positions = draw(
        st.lists(
            st.builds(
                position,
                symbol=st.sampled_from(["BTCTRY", "ETHTRY", "USDTTRY"]),
                qty=st.decimals(min_value=0, max_value=10, places=4).map(str),
                mark=st.one_of(st.none(), st.decimals(min_value=1, max_value=10**7, places=0).map(str)),
            ),
            max_size=3,
            unique_by=lambda p: p.symbol,
        )
    )
    return snapshot(
        ts_ns=NOW - draw(st.integers(0, 120)) * S,
        bot_drawdown=draw(positive),
        day_pnl=draw(money),
        day_fees=draw(positive),
        equity=draw(money),
        positions=tuple(positions),
        halted=tuple(draw(st.lists(st.sampled_from(["BTCTRY", "ETHTRY"]), max_size=1))),
    )


@given(snapshots(), positive, positive)
def test_more_drawdown_or_loss_never_relaxes_the_mode(snap, more_drawdown, more_loss):
    mode, _ = decide(snap)
    worse = msgspec.structs.replace(
        snap, bot_drawdown=snap.bot_drawdown + more_drawdown, day_pnl=snap.day_pnl - more_loss
    )
    assert RANK[decide(worse)[0]] >= RANK[mode]


@given(snapshots(), st.integers(0, 10**12))
def test_an_older_snapshot_or_an_alarm_never_relaxes_the_mode(snap, later):
    mode, _ = decide(snap)
    assert RANK[decide(snap, now=NOW + later)[0]] >= RANK[mode]
    assert decide(snap, alarms=("a",))[0] == "OBSERVE_ONLY"


@given(snapshots())
def test_the_mode_is_exactly_the_strictest_of_the_reasons(snap):
    mode, reasons = decide(snap)
    assert list(reasons) == sorted(set(reasons))
    expected = "NORMAL"
    for reason in reasons:
        expected = stricter(expected, REASON_MODE[reason])
    assert mode == expected
    assert (mode == "NORMAL") == (reasons == ())


modes = st.sampled_from(["NORMAL", "REDUCE_ONLY", "OBSERVE_ONLY"])
reason_sets = st.lists(st.sampled_from(sorted(REASON_MODE)), max_size=3, unique=True).map(lambda r: tuple(sorted(r)))


def decision_from(reasons):
    mode = "NORMAL"
    for reason in reasons:
        mode = stricter(mode, REASON_MODE[reason])
    return mode, reasons


COOLDOWN = 900 * S


@settings(max_examples=300)
@given(st.lists(st.tuples(reason_sets, st.integers(0, 400 * S)), min_size=1, max_size=25))
def test_the_cooldown_machine_never_relaxes_a_money_rule_early_and_never_lags_a_stricter_one(decisions):
    state = AutoState()
    now = NOW
    for drawn, gap in decisions:
        now += gap
        mode, reasons = decision_from(drawn)
        before = state
        state = step(state, mode, reasons, now, COOLDOWN)
        # Never looser than what the account calls for now.
        assert RANK[state.mode] >= RANK[mode]
        # A stricter decision applies at once.
        if RANK[mode] > RANK[before.mode]:
            assert state.mode == mode
            assert state.since_ns == now
        # Relaxing below a money rule's mode only after that mode held for the whole cooldown.
        if RANK[state.mode] < RANK[before.mode]:
            sticky = [r for r in before.reasons if r in STICKY and RANK[REASON_MODE[r]] > RANK[state.mode]]
            assert not sticky or now - before.since_ns >= COOLDOWN, (before, state)
        assert state.since_ns <= now


@given(reason_sets, reason_sets)
def test_after_the_cooldown_the_machine_follows_the_decision(first, second):
    mode1, reasons1 = decision_from(first)
    state = step(AutoState(), mode1, reasons1, NOW, COOLDOWN)
    mode2, reasons2 = decision_from(second)
    state = step(state, mode2, reasons2, NOW + COOLDOWN, COOLDOWN)
    assert state.mode == mode2


def test_cooldown_examples():
    state = step(AutoState(), "OBSERVE_ONLY", ("DRAWDOWN",), NOW, COOLDOWN)
    assert state == AutoState("OBSERVE_ONLY", ("DRAWDOWN",), NOW)
    # The drawdown clears: the mode holds for the cooldown, reasons still name the money rule.
    held = step(state, "NORMAL", (), NOW + 899 * S, COOLDOWN)
    assert held.mode == "OBSERVE_ONLY"
    assert step(held, "NORMAL", (), NOW + 900 * S, COOLDOWN) == AutoState("NORMAL", (), NOW + 900 * S)
    # Halts and missing data hold exactly as long as they last.
    halted = step(AutoState(), "OBSERVE_ONLY", ("INTEGRITY_HALT",), NOW, COOLDOWN)
    assert step(halted, "NORMAL", (), NOW + 1, COOLDOWN).mode == "NORMAL"
    # A money rule under a data gap keeps its own mode after the gap closes.
    mixed = step(AutoState(), "OBSERVE_ONLY", ("EXPOSURE", "STALE_PORTFOLIO"), NOW, COOLDOWN)
    relaxed = step(mixed, "NORMAL", (), NOW + S, COOLDOWN)
    assert relaxed.mode == "REDUCE_ONLY"
    assert relaxed.reasons == ("EXPOSURE",)
    # A drawdown replaced by a data gap at the same mode still holds its cooldown.
    gap = step(state, "OBSERVE_ONLY", ("STALE_PORTFOLIO",), NOW + S, COOLDOWN)
    assert step(gap, "NORMAL", (), NOW + 2 * S, COOLDOWN).mode == "OBSERVE_ONLY"
