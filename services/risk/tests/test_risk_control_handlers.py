"""Control handling on the in-memory bus: stream order, redelivery, unreadable control, the automatic mode, alarms
and cancel-on-kill."""

from decimal import Decimal

import msgspec
import pytest
import structlog

from btcbot.contracts import ids, subjects
from btcbot.contracts.codec import encode
from btcbot.contracts.messages import (
    Alarm,
    CancelOrder,
    KillSwitch,
    ModeChanged,
    OrderDenied,
    OrderIntent,
    PortfolioSnapshot,
    Position,
    SubmitOrder,
)
from btcbot.contracts.signing import verify
from btcbot.risk.app import rebuild
from btcbot.risk.control import RiskState
from btcbot.risk.handlers import RawControl, RiskHandlers
from btcbot.risk.limits import RiskLimits
from btcbot.risk.modes import BudgetLimits
from btcbot.risk.rules import SymbolRules
from btcbot.runtime.bus import Delivery
from btcbot.runtime.errors import DependencyUnavailable, Poison
from btcbot.runtime.latest import LastMessage
from btcbot.runtime.memory import InMemoryBus
from btcbot.runtime.signing import RunKeys

D = Decimal
S = 10**9
NOW = 1_700_000_000 * S
RULES = {
    "BTCTRY": SymbolRules("BTCTRY", True, price_scale=0, quantity_scale=8, tick_size=D(1), min_notional=D("99.91"))
}
LOG = structlog.get_logger("test")
# Control events are signed by the operator (automatic modes by risk); risk accepts both keys, as in a deployment.
KEYS = RunKeys.generate()
OPERATOR = KEYS.operator_signer()
RISK = KEYS.risk_signer()
CONTROL_KEYS = {**OPERATOR.keys(), **RISK.keys()}


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> int:
        return self.now


def kill(engaged=True, cancel_resting=False, ts=NOW):
    return OPERATOR.sign(
        KillSwitch(
            id=f"k{ts}{engaged}", ts_ns=ts, engaged=engaged, reason="r", operator="o", cancel_resting=cancel_resting
        )
    )


def mode(value, ts=NOW):
    return OPERATOR.sign(ModeChanged(id=f"m{ts}{value}", ts_ns=ts, mode=value, reason="r", operator="o"))


def snapshot(ts=NOW, sid="p1", **changes):
    base = PortfolioSnapshot(
        id=sid,
        ts_ns=ts,
        account="main",
        quote_asset="TRY",
        balances=(),
        positions=(
            Position(
                symbol="BTCTRY", quantity=D("0.001"), avg_cost=D(1), realized_pnl=D(0), unrealized_pnl=D(0), mark=D(1)
            ),
        ),
        exposure=D(0),
        realized_pnl=D(0),
        unrealized_pnl=D(0),
        fees=D(0),
        equity=D(100000),
        peak_equity=D(0),
        drawdown=D(0),
        fills=0,
    )
    return msgspec.structs.replace(base, **changes)


counter = iter(range(10**6))


def intent(side="buy", qty="0.0003", ts=NOW):
    book = f"b{next(counter)}"
    return OrderIntent(
        id=ids.intent_id("s", "BTCTRY", book),
        ts_ns=ts,
        strategy="s",
        symbol="BTCTRY",
        side=side,
        order_type="limit",
        price=D(3000000),
        quantity=D(qty),
        reason="t",
        book_id=book,
    )


async def control(h, subject, seq, message):
    data = message if isinstance(message, bytes) else encode(message)
    await h.on_control(RawControl(id="", ts_ns=0, data=data), Delivery(subject=subject, sequence=seq))


async def verdict(bus, h):
    await h.on_intent(intent(ts=h._clock()), Delivery(subject="intent.BTCTRY"))
    _, last = bus.published[-1]
    return "APPROVED" if isinstance(last, SubmitOrder) else last.reason


class FakeOpenOrders:
    def __init__(self, orders, fail=0):
        self.orders = orders
        self.fail = fail
        self.calls = 0

    async def open_orders(self):
        self.calls += 1
        if self.fail:
            self.fail -= 1
            raise DependencyUnavailable("redis down")
        return list(self.orders)


def rig(budget=None, open_orders=None, clock=None, failure_alarm_after=3):
    bus = InMemoryBus()
    state = RiskState("main")
    state.set_rules(RULES, NOW)
    h = RiskHandlers(
        state,
        RiskLimits(),
        bus,
        clock or Clock(),
        LOG,
        budget=budget,
        open_orders=open_orders,
        failure_alarm_after=failure_alarm_after,
        signer=RISK,
        control_keys=CONTROL_KEYS,
    )
    h.rebuilt = True
    return bus, state, h


async def test_control_is_ordered_by_stream_sequence_and_redeliveries_are_ignored():
    bus, state, h = rig()
    await control(h, subjects.CONTROL_KILL, 7, kill(True, ts=NOW))
    # A release dated an hour later but stored earlier (redelivered by a fan-out durable) changes nothing.
    await control(h, subjects.CONTROL_KILL, 5, kill(False, ts=NOW + 3600 * S))
    await control(h, subjects.CONTROL_KILL, 7, kill(False, ts=NOW + 3600 * S))
    assert state.kill_engaged
    assert await verdict(bus, h) == "KILL_SWITCH"
    # A release stored later applies, whatever its date.
    await control(h, subjects.CONTROL_KILL, 8, kill(False, ts=NOW - 3600 * S))
    assert await verdict(bus, h) == "APPROVED"
    # Subjects are ordered independently.
    await control(h, subjects.CONTROL_MODE, 2, mode("OBSERVE_ONLY"))
    await control(h, subjects.CONTROL_MODE, 1, mode("NORMAL"))
    assert await verdict(bus, h) == "MODE"


async def test_garbage_on_control_kill_fails_closed_until_a_valid_later_message():
    bus, _, h = rig()
    await control(h, subjects.CONTROL_KILL, 3, kill(False))
    with pytest.raises(Poison, match=r"CONTROL_UNREADABLE: control\.kill"):
        await control(h, subjects.CONTROL_KILL, 4, bytes(range(40)))
    assert await verdict(bus, h) == "CONTROL_UNREADABLE"
    [denied] = bus.of_type(OrderDenied)
    assert "control.kill" in denied.detail
    # Other subjects' messages do not clear it; a redelivery of an older valid one does not either.
    await control(h, subjects.CONTROL_MODE, 5, mode("NORMAL"))
    await control(h, subjects.CONTROL_KILL, 3, kill(False))
    assert await verdict(bus, h) == "CONTROL_UNREADABLE"
    # An operator publishes a valid state: trading resumes.
    await control(h, subjects.CONTROL_KILL, 6, kill(False))
    assert await verdict(bus, h) == "APPROVED"


async def test_a_valid_message_of_the_wrong_type_on_a_control_subject_fails_closed():
    bus, _, h = rig()
    with pytest.raises(Poison, match="CONTROL_UNREADABLE"):
        await control(h, subjects.CONTROL_KILL, 1, mode("NORMAL"))
    assert await verdict(bus, h) == "CONTROL_UNREADABLE"


async def test_the_budget_publishes_auto_mode_changes_with_deterministic_ids():
    clock = Clock()
    budget = BudgetLimits(max_drawdown=D(100), cooldown_ns=60 * S)
    bus, state, h = rig(budget=budget, clock=clock)
    await h.on_portfolio(snapshot(sid="p1"), Delivery(subject="portfolio.main"))
    assert bus.of_type(ModeChanged) == []
    assert await verdict(bus, h) == "APPROVED"
    clock.now += S
    await h.on_portfolio(snapshot(ts=clock.now, sid="p2", bot_drawdown=D(150)), Delivery(subject="portfolio.main"))
    [(subject, changed)] = [(s, m) for s, m in bus.published if isinstance(m, ModeChanged)]
    assert subject == subjects.CONTROL_AUTO
    assert (changed.mode, changed.source, changed.reasons) == ("OBSERVE_ONLY", "auto", ("DRAWDOWN",))
    assert changed.id == ids.auto_mode_id("OBSERVE_ONLY", "p2:0:DRAWDOWN")
    assert await verdict(bus, h) == "AUTO_MODE"
    # A second replica deciding the same on the same snapshot publishes the same id: the stream keeps one.
    _, _, h_b = rig(budget=budget, clock=clock)
    h_b._bus = bus
    await h_b.on_portfolio(snapshot(ts=clock.now, sid="p2", bot_drawdown=D(150)), Delivery(subject="portfolio.main"))
    assert bus.duplicates == 1
    # The drawdown clears: the mode holds for the cooldown, then relaxes on a tick.
    clock.now += S
    await h.on_portfolio(snapshot(ts=clock.now, sid="p3"), Delivery(subject="portfolio.main"))
    assert state.auto.mode == "OBSERVE_ONLY"
    clock.now += 59 * S
    await h.on_portfolio(snapshot(ts=clock.now, sid="p4"), Delivery(subject="portfolio.main"))
    await h.evaluate_auto()
    assert state.auto.mode == "NORMAL"
    assert [m.mode for m in bus.of_type(ModeChanged)] == ["OBSERVE_ONLY", "NORMAL"]
    assert await verdict(bus, h) == "APPROVED"


async def test_a_stale_snapshot_puts_the_account_in_observe_only_on_a_tick():
    clock = Clock()
    bus, state, h = rig(budget=BudgetLimits(max_snapshot_age_ns=10 * S), clock=clock)
    await h.on_portfolio(snapshot(), Delivery(subject="portfolio.main"))
    clock.now += 11 * S
    await h.evaluate_auto()
    assert (state.auto.mode, state.auto.reasons) == ("OBSERVE_ONLY", ("STALE_PORTFOLIO",))
    assert await verdict(bus, h) == "AUTO_MODE"
    # Fresh data relaxes at once: missing data does not start a cooldown.
    await h.on_portfolio(snapshot(ts=clock.now, sid="p2"), Delivery(subject="portfolio.main"))
    assert state.auto.mode == "NORMAL"


async def test_an_active_alarm_stops_trading_and_its_clear_resumes():
    # Alarms are not signed (rig() checks control signatures): they act all the same.
    bus, state, h = rig(budget=BudgetLimits())
    await h.on_portfolio(snapshot(), Delivery(subject="portfolio.main"))
    subject = subjects.alarm("ledger", "reconcile_mismatch")
    on = Alarm(id="a1", ts_ns=NOW, source="ledger", kind="reconcile_mismatch", active=True)
    await control(h, subject, 10, on)
    assert state.auto.reasons == ("ALARM",)
    assert await verdict(bus, h) == "AUTO_MODE"
    await control(h, subject, 11, msgspec.structs.replace(on, id="a2", active=False))
    assert state.auto.mode == "NORMAL"
    assert await verdict(bus, h) == "APPROVED"


async def test_live_auto_messages_are_not_adopted_but_rebuild_adopts_them():
    _, state, h = rig(budget=BudgetLimits())
    await h.on_portfolio(snapshot(), Delivery(subject="portfolio.main"))
    other = RISK.sign(
        ModeChanged(
            id="x", ts_ns=NOW, mode="OBSERVE_ONLY", reason="", operator="risk:b", source="auto", reasons=("DRAWDOWN",)
        )
    )
    await control(h, subjects.CONTROL_AUTO, 4, other)
    assert state.auto.mode == "NORMAL"
    # A fresh replica rebuilding from the stream adopts it, with the time it was set (for the cooldown).
    fresh = RiskState("main")
    h2 = RiskHandlers(
        fresh, RiskLimits(), InMemoryBus(), lambda: NOW + S, LOG, budget=BudgetLimits(), control_keys=CONTROL_KEYS
    )
    stored = {subjects.CONTROL_AUTO: LastMessage(subjects.CONTROL_AUTO, 4, encode(other), NOW)}
    portfolio = LastMessage("portfolio.main", 9, encode(snapshot()), NOW)
    await rebuild(h2, fresh, stored, portfolio, LOG)
    assert (fresh.auto.mode, fresh.auto.since_ns) == ("OBSERVE_ONLY", NOW)
    assert h2.rebuilt


async def test_rebuild_with_garbage_last_kill_denies_everything():
    state = RiskState("main")
    state.set_rules(RULES, NOW)
    bus = InMemoryBus()
    h = RiskHandlers(state, RiskLimits(), bus, lambda: NOW, LOG, control_keys=CONTROL_KEYS)
    stored = {
        subjects.CONTROL_KILL: LastMessage(subjects.CONTROL_KILL, 2, bytes(40), NOW),
        subjects.CONTROL_MODE: LastMessage(subjects.CONTROL_MODE, 1, encode(mode("NORMAL")), NOW),
    }
    await rebuild(h, state, stored, None, LOG)
    assert state.view().unreadable == ("control.kill",)
    assert await verdict(bus, h) == "CONTROL_UNREADABLE"


class BrokenVerdicts:
    async def claim(self, *args, **kwargs):
        raise DependencyUnavailable("redis down")

    async def get(self, key):
        raise DependencyUnavailable("redis down")


async def test_repeated_intent_failures_raise_an_alarm_and_recovery_clears_it():
    bus, _, h = rig(failure_alarm_after=3)
    h._shared = BrokenVerdicts()
    for n in range(4):
        with pytest.raises(DependencyUnavailable):
            await h.on_intent(intent(), Delivery(subject="intent.BTCTRY", deliveries=n + 1))
    alarms = [(s, m) for s, m in bus.published if isinstance(m, Alarm)]
    assert len(alarms) == 1
    subject, alarm = alarms[0]
    assert subject == "control.alarm.risk.repeated_failures"
    assert (alarm.source, alarm.kind, alarm.active) == ("risk", "repeated_failures", True)
    h._shared = None
    await h.on_intent(intent(), Delivery(subject="intent.BTCTRY"))
    cleared = [m for m in bus.of_type(Alarm) if not m.active]
    assert len(cleared) == 1
    # Two failures in a row are below the threshold: no alarm.
    h._shared = BrokenVerdicts()
    for _ in range(2):
        with pytest.raises(DependencyUnavailable):
            await h.on_intent(intent(), Delivery(subject="intent.BTCTRY"))
    assert len(bus.of_type(Alarm)) == 2


async def test_kill_with_cancel_resting_cancels_every_open_order_once():
    orders = FakeOpenOrders([("c1", "BTCTRY"), ("c2", "ETHTRY")], fail=1)
    bus, _, h = rig(open_orders=orders)
    # The open-order source fails: the kill still applies, and the redelivery finishes the cancels.
    with pytest.raises(DependencyUnavailable):
        await control(h, subjects.CONTROL_KILL, 3, kill(True, cancel_resting=True))
    assert await verdict(bus, h) == "KILL_SWITCH"
    await control(h, subjects.CONTROL_KILL, 3, kill(True, cancel_resting=True))
    cancels = [(s, m) for s, m in bus.published if isinstance(m, CancelOrder)]
    assert [(s, m.client_order_id, m.reason) for s, m in cancels] == [
        ("order.cancel.BTCTRY", "c1", "KILL_SWITCH"),
        ("order.cancel.ETHTRY", "c2", "KILL_SWITCH"),
    ]
    await control(h, subjects.CONTROL_KILL, 3, kill(True, cancel_resting=True))
    assert orders.calls == 2


async def test_kill_without_cancel_resting_leaves_resting_orders():
    orders = FakeOpenOrders([("c1", "BTCTRY")])
    bus, _, h = rig(open_orders=orders)
    await control(h, subjects.CONTROL_KILL, 3, kill(True))
    assert orders.calls == 0
    assert bus.of_type(CancelOrder) == []


async def test_a_repeated_failures_alarm_left_by_a_dead_replica_is_cleared_by_the_next_success():
    bus, state, h = rig()
    subject = subjects.alarm("risk", "repeated_failures")
    left = Alarm(id="old", ts_ns=NOW, source="risk", kind="repeated_failures", active=True)
    await control(h, subject, 3, left)
    assert state.active_alarms() == (subject,)
    await h.on_intent(intent(), Delivery(subject="intent.BTCTRY"))
    [cleared] = [m for m in bus.of_type(Alarm) if not m.active]
    assert cleared.source == "risk"
    # Once cleared, further successes publish nothing more.
    await h.on_intent(intent(), Delivery(subject="intent.BTCTRY"))
    assert len(bus.of_type(Alarm)) == 1


def test_the_raw_codec_keeps_id_and_date_for_the_kits_checks():
    from btcbot.risk.handlers import RawControlCodec

    raw = RawControlCodec().decode(encode(kill(True, ts=NOW + 7)))
    assert (raw.id, raw.ts_ns) == (f"k{NOW + 7}True", NOW + 7)
    garbage = RawControlCodec().decode(bytes(40))
    assert (garbage.id, garbage.ts_ns, garbage.data) == ("", 0, bytes(40))


async def test_an_alarm_mode_change_names_the_alarm():
    bus, _, h = rig(budget=BudgetLimits())
    await h.on_portfolio(snapshot(), Delivery(subject="portfolio.main"))
    subject = subjects.alarm("execution", "breaker_open")
    await control(h, subject, 1, Alarm(id="a", ts_ns=NOW, source="execution", kind="breaker_open", active=True))
    [changed] = bus.of_type(ModeChanged)
    assert changed.reasons == ("ALARM",)
    assert changed.reason == "ALARM (control.alarm.execution.breaker_open)"


# ---- signatures (docs/security.md "Signatures and key rotation") ----------------------------------------------------


def unsigned(message):
    return msgspec.structs.replace(message, signature="")


@pytest.mark.parametrize(
    ("forge", "problem"),
    [
        (unsigned, "MISSING"),
        (lambda m: RunKeys.generate().operator_signer().sign(m), "UNKNOWN_KEY"),
        (lambda m: msgspec.structs.replace(m, engaged=not m.engaged), "BAD_SIGNATURE"),
    ],
    ids=["missing", "unknown-key", "altered"],
)
async def test_an_unsigned_release_fails_closed_and_a_signed_one_acts(forge, problem):
    bus, state, h = rig()
    await control(h, subjects.CONTROL_KILL, 1, kill(True))
    assert await verdict(bus, h) == "KILL_SWITCH"
    forged = forge(kill(False) if problem != "BAD_SIGNATURE" else kill(True))
    assert forged.engaged is False
    with pytest.raises(Poison, match=rf"CONTROL_UNREADABLE: control\.kill: signature {problem}"):
        await control(h, subjects.CONTROL_KILL, 2, forged)
    # Never released by a forged message: the kill stays, and the unreadable subject denies everything anyway.
    assert state.kill_engaged
    assert state.unreadable == {subjects.CONTROL_KILL: state.unreadable[subjects.CONTROL_KILL]}
    await control(h, subjects.CONTROL_KILL, 3, kill(False))
    assert await verdict(bus, h) == "APPROVED"


async def test_an_unsigned_kill_or_mode_denies_everything_control_unreadable():
    bus, state, h = rig()
    with pytest.raises(Poison, match="CONTROL_UNREADABLE"):
        await control(h, subjects.CONTROL_KILL, 1, unsigned(kill(True)))
    assert not state.kill_engaged
    assert await verdict(bus, h) == "CONTROL_UNREADABLE"
    await control(h, subjects.CONTROL_KILL, 2, kill(True))
    assert await verdict(bus, h) == "KILL_SWITCH"
    await control(h, subjects.CONTROL_KILL, 3, kill(False))
    with pytest.raises(Poison, match="CONTROL_UNREADABLE"):
        await control(h, subjects.CONTROL_MODE, 4, unsigned(mode("NORMAL")))
    assert await verdict(bus, h) == "CONTROL_UNREADABLE"
    await control(h, subjects.CONTROL_MODE, 5, mode("NORMAL"))
    assert await verdict(bus, h) == "APPROVED"


async def test_an_unsigned_kill_with_cancel_resting_cancels_nothing_even_when_redelivered():
    orders = FakeOpenOrders([("bbc1", "BTCTRY")])
    bus, _, h = rig(open_orders=orders)
    forged = unsigned(kill(True, cancel_resting=True))
    with pytest.raises(Poison):
        await control(h, subjects.CONTROL_KILL, 1, forged)
    await control(h, subjects.CONTROL_KILL, 1, forged)  # the same sequence again: the finish-the-kill path
    assert bus.of_type(CancelOrder) == []
    assert orders.calls == 0


async def test_rebuild_treats_an_unsigned_last_kill_as_unreadable():
    state = RiskState("main")
    state.set_rules(RULES, NOW)
    bus = InMemoryBus()
    h = RiskHandlers(state, RiskLimits(), bus, lambda: NOW, LOG, signer=RISK, control_keys=CONTROL_KEYS)
    stored = {
        subjects.CONTROL_KILL: LastMessage(subjects.CONTROL_KILL, 2, encode(unsigned(kill(False))), NOW),
        subjects.CONTROL_MODE: LastMessage(subjects.CONTROL_MODE, 1, encode(mode("REDUCE_ONLY")), NOW),
    }
    await rebuild(h, state, stored, None, LOG)
    assert state.view().unreadable == ("control.kill",)
    assert state.mode == "REDUCE_ONLY"
    assert await verdict(bus, h) == "CONTROL_UNREADABLE"


async def test_live_auto_messages_must_be_signed_and_risk_signs_its_own():
    clock = Clock()
    bus, state, h = rig(budget=BudgetLimits(max_drawdown=D(100), cooldown_ns=60 * S), clock=clock)
    await h.on_portfolio(snapshot(bot_drawdown=D(150)), Delivery(subject="portfolio.main"))
    [auto] = [m for s, m in bus.published if s == subjects.CONTROL_AUTO]
    assert verify(auto, RISK.keys()) is None
    await control(h, subjects.CONTROL_AUTO, 1, auto)
    assert subjects.CONTROL_AUTO not in state.unreadable
    with pytest.raises(Poison, match="signature MISSING"):
        await control(h, subjects.CONTROL_AUTO, 2, unsigned(auto))
    assert await verdict(bus, h) == "CONTROL_UNREADABLE"
