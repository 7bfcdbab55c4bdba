import asyncio
from decimal import Decimal

import msgspec
import pytest
import structlog

from btcbot.btcturk.errors import Unavailable
from btcbot.btcturk.models import ExchangeInfo, SymbolInfo
from btcbot.contracts import ids, subjects
from btcbot.contracts.codec import Codec, encode
from btcbot.contracts.messages import (
    KillSwitch,
    ModeChanged,
    OrderDenied,
    OrderIntent,
    PortfolioSnapshot,
    Position,
    SubmitOrder,
)
from btcbot.contracts.signing import verify
from btcbot.contracts.streams import RISK_BOOKS, RISK_CONTROL, RISK_INTENTS, RISK_PORTFOLIO
from btcbot.risk import app
from btcbot.risk.control import RiskState
from btcbot.risk.handlers import RawControl, RiskHandlers
from btcbot.risk.limits import RiskLimits
from btcbot.risk.rules import SymbolRules
from btcbot.risk.settings import RiskSettings
from btcbot.runtime.bus import Delivery
from btcbot.runtime.errors import DependencyUnavailable, SettingsError
from btcbot.runtime.memory import InMemoryBus
from btcbot.runtime.settings import load_settings
from btcbot.runtime.signing import RunKeys

D = Decimal
NOW = 1_700_000_000 * 10**9
RULES = {
    "BTCTRY": SymbolRules("BTCTRY", True, price_scale=0, quantity_scale=8, tick_size=D(1), min_notional=D("99.91"))
}


class FlakyBus(InMemoryBus):
    fail_next = 0

    async def publish(self, subject, message):
        if self.fail_next:
            self.fail_next -= 1
            raise DependencyUnavailable("nats down")
        await super().publish(subject, message)


def intent(price="3000000", qty="0.0003", side="buy", book="b1"):
    return OrderIntent(
        id=ids.intent_id("profit_v1", "BTCTRY", book),
        ts_ns=NOW,
        strategy="profit_v1",
        symbol="BTCTRY",
        side=side,
        order_type="limit",
        price=D(price),
        quantity=D(qty),
        reason="entry",
        book_id=book,
    )


async def control(handlers, subject, seq, message):
    """Deliver a control message as the CONTROL consumer does: raw bytes, with its subject and stream sequence."""
    data = message if isinstance(message, bytes) else encode(message)
    await handlers.on_control(RawControl(id="", ts_ns=0, data=data), Delivery(subject=subject, sequence=seq))


@pytest.fixture
def rig():
    bus = FlakyBus()
    state = RiskState("main")
    state.set_rules(RULES, NOW)
    return bus, state, RiskHandlers(state, RiskLimits(), bus, lambda: NOW, structlog.get_logger("test"))


async def test_approved_intent_becomes_submit_order(rig):
    bus, _, h = rig
    i = intent()
    assert await bus.deliver(h.on_intent, i) == "ack"
    [(subject, submit)] = bus.published
    assert subject == subjects.submit("BTCTRY")
    assert isinstance(submit, SubmitOrder)
    coid = ids.client_order_id(i.id)
    assert (submit.id, submit.client_order_id, submit.intent_id) == (ids.submit_id(coid), coid, i.id)
    assert (submit.side, submit.price, submit.quantity, submit.strategy) == (
        "buy",
        D("3000000"),
        D("0.0003"),
        "profit_v1",
    )
    assert submit.checks[0] == "KILL_SWITCH"
    assert submit.checks[-1] == "MAX_ORDER_NOTIONAL"
    assert submit.ts_ns == NOW


async def test_denied_intent_becomes_order_denied(rig):
    bus, _, h = rig
    i = intent(price="3000000.5")
    await bus.deliver(h.on_intent, i)
    [(subject, denied)] = bus.published
    assert subject == subjects.denied("BTCTRY")
    assert isinstance(denied, OrderDenied)
    assert (denied.id, denied.intent_id, denied.reason) == (ids.denied_id(i.id), i.id, "PRICE_TICK")


async def test_rules_not_loaded_denies():
    bus = InMemoryBus()
    h = RiskHandlers(RiskState("main"), RiskLimits(), bus, lambda: NOW, structlog.get_logger("test"))
    await bus.deliver(h.on_intent, intent())
    [denied] = bus.of_type(OrderDenied)
    assert denied.reason == "RULES_NOT_LOADED"


async def test_redelivery_keeps_the_first_verdict(rig):
    bus, _, h = rig
    i = intent()
    bus.fail_next = 1
    assert await bus.deliver(h.on_intent, i) == "nak"
    # The kill switch engages between the two deliveries: the intent was already approved, keep it so.
    await control(h, subjects.CONTROL_KILL, 1, KillSwitch(id="k", ts_ns=NOW, engaged=True, reason="r", operator="o"))
    assert await bus.deliver(h.on_intent, i, deliveries=2) == "ack"
    assert [type(m) for _, m in bus.published] == [SubmitOrder]
    assert await bus.deliver(h.on_intent, intent(book="b2")) == "ack"
    assert bus.of_type(OrderDenied)[0].reason == "KILL_SWITCH"


async def test_control_and_portfolio_drive_mode_checks(rig):
    bus, state, h = rig
    mode = ModeChanged(id="m", ts_ns=NOW, mode="REDUCE_ONLY", reason="drawdown", operator="ops")
    await control(h, subjects.CONTROL_MODE, 1, mode)
    assert state.mode == "REDUCE_ONLY"
    snap = PortfolioSnapshot(
        id="p",
        ts_ns=NOW,
        account="main",
        quote_asset="TRY",
        balances=(),
        positions=(
            Position(symbol="BTCTRY", quantity=D("0.001"), avg_cost=D(1), realized_pnl=D(0), unrealized_pnl=D(0)),
        ),
        exposure=D(0),
        realized_pnl=D(0),
        unrealized_pnl=D(0),
        fees=D(0),
        equity=D(0),
        peak_equity=D(0),
        drawdown=D(0),
        fills=1,
    )
    await bus.deliver(h.on_portfolio, snap)
    await bus.deliver(h.on_intent, intent(book="buy"))
    await bus.deliver(h.on_intent, intent(side="sell", qty="0.001", book="sell"))
    denied, submit = bus.published
    assert denied[1].reason == "MODE"
    assert isinstance(submit[1], SubmitOrder)


class FakeService:
    def __init__(self):
        self.bus = InMemoryBus()
        self.log = structlog.get_logger("test")
        self.tasks, self.checks, self.consumers = {}, {}, []

    def now_ns(self):
        return NOW

    def task(self, name, fn):
        self.tasks[name] = fn

    def readiness(self, name, check):
        self.checks[name] = check

    def consume(self, spec, codec, handler):
        self.consumers.append(spec)

    def before_consumers(self, name, fn):
        self.gates = {**getattr(self, "gates", {}), name: fn}


def symbol_info(name="BTCTRY", status="TRADING"):
    return SymbolInfo(
        id=1,
        name=name,
        name_normalized=name,
        status=status,
        numerator=name[:3],
        denominator="TRY",
        numerator_scale=8,
        denominator_scale=0,
        has_fraction=False,
        tick_size=D(1),
        min_price=None,
        max_price=None,
        min_exchange_value=D("99.91"),
    )


class FakeClient:
    def __init__(self, answers):
        self.answers = list(answers)
        self.calls = 0

    async def exchange_info(self):
        self.calls += 1
        item = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(item, Exception):
            raise item
        return item


@pytest.fixture
def risk_env(monkeypatch):
    monkeypatch.setenv("BTCTURK_API_KEY", "k")
    monkeypatch.setenv("BTCTURK_API_SECRET", "s")
    monkeypatch.setenv("RISK_RULES_REFRESH", "0.01")
    monkeypatch.setenv("RISK_RULES_RETRY_MAX", "0.02")
    for name, value in RunKeys.generate().service_env("risk").items():
        monkeypatch.setenv(name, value)
    return monkeypatch


async def test_register_loads_rules_after_a_failure_and_turns_ready(risk_env):
    svc = FakeService()
    info = ExchangeInfo(server_time_ms=None, symbols=(symbol_info(),))
    client = FakeClient([Unavailable("503"), info])
    state = app.register(svc, load_settings(RiskSettings), client)
    assert svc.consumers == [RISK_CONTROL, RISK_PORTFOLIO, RISK_BOOKS, RISK_INTENTS]
    assert svc.checks["rules"]() is False
    stop = asyncio.Event()
    task = asyncio.ensure_future(svc.tasks["rules"](stop))
    for _ in range(300):
        if state.rules is not None:
            break
        await asyncio.sleep(0.01)
    stop.set()
    await asyncio.wait_for(task, 1)
    assert svc.checks["rules"]() is True
    assert state.rules is not None
    assert state.rules["BTCTRY"].min_notional == D("99.91")


@pytest.mark.parametrize(
    ("name", "value"),
    [("RISK_MAX_ORDER_NOTIONAL", "0"), ("RISK_MAX_ORDER_NOTIONAL", "x"), ("RISK_MAX_INTENT_AGE", "-3")],
)
def test_bad_settings_name_the_variable(risk_env, name, value):
    risk_env.setenv(name, value)
    with pytest.raises(SettingsError, match=name):
        load_settings(RiskSettings)


def test_settings_limits(risk_env):
    risk_env.setenv("RISK_MAX_ORDER_NOTIONAL", "2500.50")
    limits = load_settings(RiskSettings).limits()
    assert limits.max_order_notional == D("2500.50")
    assert limits.max_intent_age_ns == 30 * 10**9


async def test_first_load_fills_the_state_and_the_task_then_waits(risk_env):
    svc = FakeService()
    info = ExchangeInfo(server_time_ms=None, symbols=(symbol_info(), symbol_info("ETHTRY", "HALT")))
    client = FakeClient([info])
    state = RiskState("main")
    await app.first_load(client, state, svc, timeout=1)
    assert state.rules is not None
    assert state.rules["ETHTRY"].trading is False
    failing = RiskState("main")
    await app.first_load(FakeClient([Unavailable("503")]), failing, svc, timeout=1)
    assert failing.rules is None
    risk_env.setenv("RISK_RULES_REFRESH", "60")
    app.register(svc, load_settings(RiskSettings), client, state)
    stop = asyncio.Event()
    task = asyncio.ensure_future(svc.tasks["rules"](stop))
    await asyncio.sleep(0.01)
    # Rules are loaded, so the task waits a full refresh period before asking again.
    assert client.calls == 1
    stop.set()
    await asyncio.wait_for(task, 1)


async def test_a_redelivery_on_another_replica_repeats_the_first_verdict():
    from btcbot.runtime.idempotency import MemoryIdempotencyStore

    shared = MemoryIdempotencyStore()  # stands in for Redis: one record seen by every replica
    bus = InMemoryBus()
    replicas = []
    for name in ("risk-a", "risk-b"):
        state = RiskState("main")
        state.set_rules(RULES, NOW)
        replicas.append(
            (
                state,
                RiskHandlers(
                    state, RiskLimits(), bus, lambda: NOW, structlog.get_logger("t"), verdicts=shared, owner=name
                ),
            )
        )
    i = intent()
    assert await bus.deliver(replicas[0][1].on_intent, i) == "ack"
    # Replica b has the kill switch engaged when the same intent reaches it: it must not deny what a approved.
    replicas[1][0].apply_control(
        "control.kill", 1, KillSwitch(id="k", ts_ns=NOW, engaged=True, reason="r", operator="o")
    )
    assert await bus.deliver(replicas[1][1].on_intent, i, deliveries=2) == "ack"
    assert bus.of_type(OrderDenied) == []
    [submit] = bus.of_type(SubmitOrder)
    assert submit.intent_id == i.id
    assert shared.claims[f"risk:verdict:{i.id}"]["owner"] == "risk-a"
    # A fresh intent on replica b is denied, and that verdict is recorded too.
    assert await bus.deliver(replicas[1][1].on_intent, intent(book="b2")) == "ack"
    assert bus.of_type(OrderDenied)[0].reason == "KILL_SWITCH"


# ---- signatures ------------------------------------------------------------------------------------------------------


def test_risk_refuses_to_start_without_a_signing_key(risk_env):
    risk_env.delenv("BTCBOT_SIGNING_KEY_ID")
    risk_env.delenv("BTCBOT_SIGNING_KEY")
    with pytest.raises(SettingsError, match="BTCBOT_SIGNING_KEY_ID and BTCBOT_SIGNING_KEY are required"):
        app.register(FakeService(), load_settings(RiskSettings), FakeClient([Unavailable("503")]))


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("BTCBOT_SIGNING_KEYS", "no-secret-here"),
        ("BTCBOT_SIGNING_KEYS", "k:c2hvcnQ="),
        ("BTCBOT_SIGNING_KEY", "not base64!"),
        ("BTCBOT_SIGNING_KEY_ID", "bad id"),
    ],
)
def test_a_bad_key_setting_names_the_variable(risk_env, name, value):
    risk_env.setenv(name, value)
    with pytest.raises(SettingsError, match=name):
        load_settings(RiskSettings)


def test_a_signing_key_without_its_id_names_both(risk_env):
    risk_env.delenv("BTCBOT_SIGNING_KEY_ID")
    with pytest.raises(SettingsError, match="BTCBOT_SIGNING_KEY and BTCBOT_SIGNING_KEY_ID must be set together"):
        load_settings(RiskSettings)


def test_risk_trusts_its_own_key_and_the_listed_ones(risk_env):
    settings = load_settings(RiskSettings)
    signer = settings.signer()
    assert signer is not None
    assert signer.key_id in settings.verification_keys()
    assert len(settings.verification_keys()) == 2  # its own and the operator's


def signing_rig(verdicts=None, owner="risk-a", signer=None):
    bus = InMemoryBus()
    state = RiskState("main")
    state.set_rules(RULES, NOW)
    handlers = RiskHandlers(
        state, RiskLimits(), bus, lambda: NOW, structlog.get_logger("t"), verdicts=verdicts, owner=owner, signer=signer
    )
    return bus, handlers


async def test_every_submit_order_is_signed_by_risk():
    keys = RunKeys.generate()
    bus, h = signing_rig(signer=keys.risk_signer())
    assert await bus.deliver(h.on_intent, intent()) == "ack"
    [submit] = bus.of_type(SubmitOrder)
    assert verify(submit, keys.risk_signer().keys()) is None
    assert verify(submit, keys.operator_signer().keys()) == "UNKNOWN_KEY"


async def test_a_verdict_stored_under_a_retired_key_is_re_signed_with_the_current_one():
    from btcbot.runtime.idempotency import MemoryIdempotencyStore

    shared = MemoryIdempotencyStore()
    old, new = RunKeys.generate().risk_signer(), RunKeys.generate().risk_signer()
    bus, first = signing_rig(shared, "risk-a", old)
    assert await bus.deliver(first.on_intent, intent()) == "ack"
    # The replica that stored it is gone, the key rotated: the redelivery on a new replica repeats the verdict,
    # signed with a key execution still accepts.
    bus2, second = signing_rig(shared, "risk-b", new)
    assert await bus2.deliver(second.on_intent, intent(), deliveries=2) == "ack"
    [stored] = bus.of_type(SubmitOrder)
    [repeated] = bus2.of_type(SubmitOrder)
    assert verify(repeated, new.keys()) is None
    assert msgspec.structs.replace(repeated, signature="") == msgspec.structs.replace(stored, signature="")


async def test_a_stored_verdict_altered_under_our_key_is_never_re_signed():
    import base64

    from btcbot.runtime.idempotency import MemoryIdempotencyStore

    shared = MemoryIdempotencyStore()
    signer = RunKeys.generate().risk_signer()
    bus, first = signing_rig(shared, "risk-a", signer)
    i = intent()
    assert await bus.deliver(first.on_intent, i) == "ack"
    key = f"risk:verdict:{i.id}"
    stored = Codec(SubmitOrder).decode(base64.b64decode(shared.claims[key]["verdict"]))
    bigger = msgspec.structs.replace(stored, quantity=D(5))
    shared.claims[key]["verdict"] = base64.b64encode(encode(bigger)).decode()
    bus2, second = signing_rig(shared, "risk-b", signer)
    assert await bus2.deliver(second.on_intent, i, deliveries=2) == "dead"
    assert bus2.of_type(SubmitOrder) == []
