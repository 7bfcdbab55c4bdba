from decimal import Decimal

import pytest
import structlog

from btcbot.contracts import ids, subjects
from btcbot.contracts.codec import Codec, encode
from btcbot.contracts.messages import (
    Balance,
    BookSnapshot,
    CancelOrder,
    Level,
    OrderAccepted,
    OrderCanceled,
    OrderFilled,
    OrderIntent,
    OrderRejected,
    PortfolioSnapshot,
    Position,
)
from btcbot.runtime.errors import DependencyUnavailable
from btcbot.runtime.memory import InMemoryBus
from btcbot.strategy.handlers import History, StrategyHandlers
from btcbot.strategy.settings import StrategySettings
from btcbot.strategy.signals import STRATEGY, ProfitParams, ProfitV1

D = Decimal
S = 1_000_000_000
T0 = 1_700_000_000 * S


class Clock:
    def __init__(self):
        self.now = T0

    def __call__(self):
        return self.now


class FlakyBus(InMemoryBus):
    def __init__(self):
        super().__init__()
        self.fail_next = 0

    async def publish(self, subject, message):
        if self.fail_next:
            self.fail_next -= 1
            raise DependencyUnavailable("nats down")
        await super().publish(subject, message)


def book(seq, bid, ask, at):
    return BookSnapshot(
        id=ids.book_id("BTCTRY", at, seq),
        ts_ns=at,
        symbol="BTCTRY",
        sequence=seq,
        bids=(Level(D(bid), D("5")),),
        asks=(Level(D(ask), D("5")),),
        exchange_ts_ns=at,
        received_ts_ns=at,
    )


def portfolio(qty, cost, at, account="main"):
    positions = (
        ()
        if D(qty) == 0
        else (Position(symbol="BTCTRY", quantity=D(qty), avg_cost=D(cost), realized_pnl=D(0), unrealized_pnl=D(0)),)
    )
    return PortfolioSnapshot(
        id=f"p{at}",
        ts_ns=at,
        account=account,
        quote_asset="TRY",
        balances=(Balance(asset="TRY", total=D("1000000")),),
        positions=positions,
        exposure=D(0),
        realized_pnl=D(0),
        unrealized_pnl=D(0),
        fees=D(0),
        equity=D(0),
        peak_equity=D(0),
        drawdown=D(0),
        fills=0,
    )


@pytest.fixture
def rig():
    bus = FlakyBus()
    clock = Clock()
    engine = ProfitV1(("BTCTRY",), ProfitParams(cooldown_ns=S))
    handlers = StrategyHandlers(engine, bus, clock, "main", structlog.get_logger("test"))
    return bus, clock, engine, handlers


async def test_round_trip_buy_then_take_profit(rig):
    bus, clock, engine, h = rig
    assert await bus.deliver(h.on_portfolio, portfolio("0", "0", T0)) == "ack"
    assert await bus.deliver(h.on_book, book(1, "1000000", "1000100", T0)) == "ack"
    [buy] = bus.of_type(OrderIntent)
    assert bus.subjects() == [subjects.intent("BTCTRY")]
    assert buy.side == "buy"
    coid = ids.client_order_id(buy.id)
    accepted = OrderAccepted(
        id=ids.accepted_id(coid),
        ts_ns=T0,
        client_order_id=coid,
        exchange_order_id="9",
        intent_id=buy.id,
        strategy=STRATEGY,
        symbol="BTCTRY",
        side="buy",
        order_type="limit",
        price=buy.price,
        quantity=buy.quantity,
    )
    filled = OrderFilled(
        id=ids.fill_id("BTCTRY", "t1", "9"),
        ts_ns=T0,
        client_order_id=coid,
        exchange_order_id="9",
        strategy=STRATEGY,
        symbol="BTCTRY",
        side="buy",
        trade_id="t1",
        price=buy.price,
        quantity=buy.quantity,
        fee=D(0),
        fee_asset="TRY",
    )
    # Execution events come through the union codec, as on the bus.
    codec = Codec(OrderAccepted | OrderRejected | OrderCanceled | OrderFilled)
    for event in (accepted, filled):
        assert await bus.deliver(h.on_execution, codec.decode(encode(event))) == "ack"
    assert engine.state("BTCTRY").inflight is None
    await bus.deliver(h.on_portfolio, portfolio(str(buy.quantity), "1000100", T0 + S))
    clock.now = T0 + 2 * S
    # 30 bps over the average cost of 1000100 is 1003100.3.
    await bus.deliver(h.on_book, book(2, "1003200", "1003300", T0 + 2 * S))
    buy_again, sell = bus.of_type(OrderIntent)
    assert buy_again == buy
    # profit_v1 sells a quarter, rounded down to the quantity scale.
    assert (sell.side, sell.price) == ("sell", D("1003200"))
    assert sell.quantity == (buy.quantity / 4).quantize(D("1E-8"), rounding="ROUND_DOWN")
    assert sell.id == ids.intent_id(STRATEGY, "BTCTRY", ids.book_id("BTCTRY", T0 + 2 * S, 2))


async def test_other_accounts_are_ignored(rig):
    bus, _, engine, h = rig
    await bus.deliver(h.on_portfolio, portfolio("1", "1", T0, account="other"))
    assert engine.state("BTCTRY").quantity == 0
    await bus.deliver(h.on_book, book(1, "1000000", "1000100", T0))
    assert bus.published == []  # no portfolio of our own account yet


async def test_failed_publish_naks_and_redelivery_sends_the_same_intent(rig):
    bus, _, _, h = rig
    await bus.deliver(h.on_portfolio, portfolio("0", "0", T0))
    bus.fail_next = 1
    b = book(1, "1000000", "1000100", T0)
    assert await bus.deliver(h.on_book, b) == "nak"
    assert bus.published == []
    assert await bus.deliver(h.on_book, b, deliveries=2) == "ack"
    [intent] = bus.of_type(OrderIntent)
    assert intent.id == ids.intent_id(STRATEGY, "BTCTRY", b.id)


async def test_ttl_cancel_is_published_and_retried_after_a_failure(rig):
    bus, clock, engine, h = rig
    await bus.deliver(h.on_portfolio, portfolio("0", "0", T0))
    await bus.deliver(h.on_book, book(1, "1000000", "1000100", T0))
    [buy] = bus.of_type(OrderIntent)
    coid = ids.client_order_id(buy.id)
    engine.state("BTCTRY").inflight.accepted = True
    late = T0 + engine.params.order_ttl_ns
    clock.now = late
    bus.fail_next = 1
    assert await bus.deliver(h.on_book, book(2, "1000000", "1000100", late)) == "nak"
    assert await bus.deliver(h.on_book, book(3, "1000000", "1000100", late)) == "ack"
    [cancel] = bus.of_type(CancelOrder)
    assert cancel.client_order_id == coid
    assert bus.subjects()[-1] == subjects.cancel("BTCTRY")


def test_settings_build_params(monkeypatch):
    monkeypatch.setenv("STRATEGY_ORDER_NOTIONAL", "250.5")
    monkeypatch.setenv("STRATEGY_COOLDOWN", "0.5")
    monkeypatch.setenv("STRATEGY_STOP_LOSS_BPS", "40")
    p = StrategySettings().params()
    assert p.order_notional == D("250.5")
    assert p.cooldown_ns == S // 2
    assert p.stop_loss_bps == D(40)
    assert p.take_profit_bps == D(30)  # the original's MIN_PROFIT_BPS
    assert p.sell_fraction == D("0.25")


class Owner:
    def __init__(self, owned=()):
        self.owned = set(owned)

    def __call__(self, symbol):
        return symbol in self.owned


async def test_a_non_owner_emits_nothing_and_takes_over_after_the_lease_moves():
    clock = Clock()
    owner_a, owner_b = Owner({"BTCTRY"}), Owner()
    bus_a, bus_b = InMemoryBus(), InMemoryBus()
    history = []  # what the streams hold: the intents and events published so far

    async def read_history(symbol):
        intents = [m for m in history if isinstance(m, OrderIntent) and m.symbol == symbol]
        return History(intents, [m for m in history if not isinstance(m, OrderIntent) and m.symbol == symbol])

    def replica(bus, owns):
        engine = ProfitV1(("BTCTRY",), ProfitParams(cooldown_ns=S))
        log = structlog.get_logger("test")
        return engine, StrategyHandlers(engine, bus, clock, "main", log, owns=owns, history=read_history)

    _, a = replica(bus_a, owner_a)
    engine_b, b = replica(bus_b, owner_b)
    for h, bus in ((a, bus_a), (b, bus_b)):  # fan-out: both replicas see every message
        await bus.deliver(h.on_portfolio, portfolio("0", "0", T0))
        await bus.deliver(h.on_book, book(1, "1000000", "1000100", T0))
    [intent] = bus_a.of_type(OrderIntent)
    assert bus_b.published == []
    history.append(intent)
    coid = ids.client_order_id(intent.id)
    accepted = OrderAccepted(
        id=ids.accepted_id(coid),
        ts_ns=T0 + 1,
        client_order_id=coid,
        exchange_order_id="9",
        intent_id=intent.id,
        strategy=STRATEGY,
        symbol="BTCTRY",
        side="buy",
        order_type="limit",
        price=intent.price,
        quantity=intent.quantity,
    )
    history.append(accepted)
    await bus_a.deliver(a.on_execution, accepted)
    await bus_b.deliver(b.on_execution, accepted)
    assert engine_b.state("BTCTRY").inflight is None  # b ignores a symbol it does not own
    # The lease moves: a loses BTCTRY at once, b rebuilds before acting.
    owner_a.owned.clear()
    await a.on_lose("BTCTRY")
    await b.on_acquire("BTCTRY")
    owner_b.owned.add("BTCTRY")
    rebuilt = engine_b.state("BTCTRY").inflight
    assert rebuilt is not None
    assert (rebuilt.client_order_id, rebuilt.accepted) == (coid, True)
    clock.now = T0 + 2 * S
    await bus_a.deliver(a.on_book, book(2, "1000000", "1000100", clock.now))
    await bus_b.deliver(b.on_book, book(2, "1000000", "1000100", clock.now))
    assert len(bus_a.published) == 1  # a stopped acting
    assert bus_b.published == []  # b holds: the order a placed is still resting, no second buy
    # The resting order outlives its TTL: the new owner cancels it, as the old one would have.
    clock.now = T0 + engine_b.params.order_ttl_ns
    await bus_b.deliver(b.on_book, book(3, "1000000", "1000100", clock.now))
    [cancel] = bus_b.of_type(CancelOrder)
    assert cancel.client_order_id == coid
    canceled = OrderCanceled(
        id="c1",
        ts_ns=clock.now,
        client_order_id=coid,
        exchange_order_id="9",
        symbol="BTCTRY",
        filled_quantity=D(0),
        reason="ttl",
    )
    await bus_b.deliver(b.on_execution, canceled)
    clock.now += 2 * S
    await bus_b.deliver(b.on_book, book(4, "1000000", "1000100", clock.now))
    [entry] = bus_b.of_type(OrderIntent)
    assert entry.side == "buy"


async def test_fills_of_every_symbol_count_by_stream_sequence_even_when_not_owned():
    """A standby replica counts fills too, so on takeover it knows the position without waiting for the ledger."""
    import msgspec

    from btcbot.runtime.bus import Delivery

    bus, clock = InMemoryBus(), Clock()
    engine = ProfitV1(("BTCTRY",), ProfitParams(cooldown_ns=0), track_fills=True)
    owned: set[str] = set()
    h = StrategyHandlers(engine, bus, clock, "main", structlog.get_logger("test"), owns=lambda s: s in owned)
    h.start_at(10)  # its EXECUTION consumer delivers everything after 10
    flat = msgspec.structs.replace(portfolio("0", "0", T0), exec_seq=10)
    await h.on_portfolio(flat, Delivery(subject="portfolio.main"))
    fill = OrderFilled(
        id="f1", ts_ns=T0, client_order_id="c1", exchange_order_id="1", strategy=STRATEGY, symbol="BTCTRY",
        side="buy", trade_id="t1", price=D("1000000"), quantity=D("0.002"), fee=D(0), fee_asset="TRY",
    )  # fmt: skip
    await h.on_execution(fill, Delivery(subject="exec.filled.BTCTRY", stream="EXECUTION", sequence=11))
    owned.add("BTCTRY")
    # The ledger's snapshot (up to 10) knows nothing of it; the replica does: it sells, it does not buy again.
    await h.on_book(book(1, "1004000", "1004100", T0), Delivery(subject="md.book.BTCTRY"))
    [intent] = bus.of_type(OrderIntent)
    assert (intent.side, intent.quantity) == ("sell", D("0.0005"))  # a quarter of 0.002
