"""Fakes for execution handler tests: an exchange that can lose answers, and an in-memory fenced lock."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from decimal import Decimal

import pytest

from btcbot.btcturk.errors import NotFound, OutcomeUnknown, Rejected
from btcbot.contracts import ids
from btcbot.contracts.messages import CancelOrder, SubmitOrder
from btcbot.execution.handlers import Execution, Policy
from btcbot.execution.journal import Journal, MemoryActiveOrders
from btcbot.execution.orders import Fill, Order
from btcbot.execution.reconcile import ExchangeOrder, ExchangeStatus
from btcbot.runtime.errors import StaleToken
from btcbot.runtime.idempotency import MemoryIdempotencyStore
from btcbot.runtime.locks import Lease
from btcbot.runtime.memory import InMemoryBus
from btcbot.runtime.signing import RunKeys

D = Decimal
NOW = 1_800_000_000_000_000_000


@dataclass
class Resting:
    """An order inside the fake exchange."""

    xid: str
    coid: str
    symbol: str
    quantity: Decimal
    status: ExchangeStatus = ExchangeStatus.OPEN
    filled: Decimal = field(default_factory=Decimal)


@dataclass
class FakeExchange:
    """Scriptable exchange: `script` holds what the next submits do ("ok", "lost", "unknown" or an error)."""

    script: list[object] = field(default_factory=list)
    orders: dict[str, Resting] = field(default_factory=dict)
    fills: list[Fill] = field(default_factory=list)
    posts: list[str] = field(default_factory=list)
    cancels: list[str] = field(default_factory=list)
    cancel_script: list[object] = field(default_factory=list)
    finds: int = 0
    open_order_reads: int = 0
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1000))

    async def submit(self, order: Order) -> str:
        self.posts.append(order.client_order_id)
        action = self.script.pop(0) if self.script else "ok"
        if isinstance(action, Exception):
            raise action
        if action == "unknown":  # the request died on the way: nothing placed, answer lost
            raise OutcomeUnknown("timeout", client_order_id=order.client_order_id)
        xid = str(next(self._ids))
        self.orders[xid] = Resting(xid, order.client_order_id, order.symbol, order.quantity)
        if action == "lost":  # placed, but the answer was lost
            raise OutcomeUnknown("read timeout", client_order_id=order.client_order_id)
        return xid

    def rest(self, coid: str, quantity: str, symbol: str = "BTCTRY") -> str:
        """An order placed at the exchange by someone else (nothing in our journal); returns its id."""
        xid = str(next(self._ids))
        self.orders[xid] = Resting(xid, coid, symbol, D(quantity))
        return xid

    def trade(self, xid: str, tid: str, qty: str, price: str = "100", ts_ms: int = 1) -> Fill:
        """Make the exchange fill part of a resting order."""
        resting = self.orders[xid]
        resting.filled += D(qty)
        fill = Fill(tid, xid, D(price), D(qty), D("0.15"), D("0.027"), "BTC", "TRY",
                    ts_ms * 1_000_000, resting.coid)  # fmt: skip
        self.fills.append(fill)
        if resting.filled == resting.quantity:
            resting.status = ExchangeStatus.CLOSED
        return fill

    async def cancel(self, exchange_order_id: str) -> None:
        self.cancels.append(exchange_order_id)
        action = self.cancel_script.pop(0) if self.cancel_script else "ok"
        if isinstance(action, Exception):
            raise action
        resting = self.orders.get(exchange_order_id)
        if resting is None:
            raise NotFound("no order", message_code="NO_ORDER_MATCHES_YOUR_REQUEST")
        if resting.status != ExchangeStatus.OPEN:
            raise Rejected("closed", message_code="ORDER_COULD_NOT_BE_CANCELED")
        if action == "ok":
            resting.status = ExchangeStatus.CANCELED

    def view(self, resting: Resting) -> ExchangeOrder:
        return ExchangeOrder(resting.xid, resting.coid, resting.status, resting.filled, symbol=resting.symbol,
                             side="buy", order_type="limit", price=D("100"), quantity=resting.quantity)  # fmt: skip

    async def open_orders(self, symbol: str) -> list[ExchangeOrder]:
        self.open_order_reads += 1
        return [self.view(r) for r in self.orders.values()
                if r.symbol == symbol and r.status == ExchangeStatus.OPEN]  # fmt: skip

    async def get(self, exchange_order_id: str) -> ExchangeOrder | None:
        resting = self.orders.get(exchange_order_id)
        return None if resting is None else self.view(resting)

    async def find(self, symbol: str, client_order_id: str) -> ExchangeOrder | None:
        self.finds += 1
        for resting in self.orders.values():
            if resting.coid == client_order_id and resting.symbol == symbol:
                return self.view(resting)
        return None

    async def trades(self, symbol: str, since_ms: int) -> list[Fill]:
        return [f for f in self.fills if f.exchange_ts_ns // 1_000_000 >= since_ms]

    async def order_trades(self, exchange_order_id: str) -> list[Fill]:
        return [f for f in self.fills if f.exchange_order_id == exchange_order_id]


class MemoryLocks:
    """FencedLock semantics in memory; `steal()` makes the current holder's token stale."""

    def __init__(self) -> None:
        self.held: dict[str, Lease] = {}
        self.tokens: dict[str, int] = {}
        self.taken: list[Lease] = []

    async def acquire(self, name: str, owner: str, ttl_s: float, wait_s: float = 0.0) -> Lease | None:
        if name in self.held:
            return None
        token = self.tokens.get(name, 0) + 1
        self.tokens[name] = token
        lease = Lease(name, owner, token)
        self.held[name] = lease
        self.taken.append(lease)
        return lease

    async def validate(self, lease: Lease) -> None:
        if self.held.get(lease.name) != lease or self.tokens[lease.name] != lease.token:
            raise StaleToken(f"{lease.name}: token {lease.token} is stale")

    async def release(self, lease: Lease) -> None:
        if self.held.get(lease.name) == lease:
            del self.held[lease.name]

    def steal(self, name: str) -> None:
        """Another replica takes over after our lease expired."""
        self.tokens[name] = self.tokens.get(name, 0) + 1
        self.held[name] = Lease(name, "other", self.tokens[name])


@dataclass
class Rig:
    """Everything a handler test needs."""

    bus: InMemoryBus
    store: MemoryIdempotencyStore
    locks: MemoryLocks
    exchange: FakeExchange
    execution: Execution
    clock: list[int]
    active: MemoryActiveOrders = field(default_factory=MemoryActiveOrders)

    @staticmethod
    def submit(coid: str = "bbc1", quantity: str = "1", order_type: str = "limit", ts_ns: int = NOW) -> SubmitOrder:
        """A SubmitOrder command."""
        return submit_cmd(coid, quantity, order_type, ts_ns)

    @staticmethod
    def signed(command: SubmitOrder) -> SubmitOrder:
        """A command (changed after signing) signed again with risk's key of these tests."""
        return RISK_KEY.sign(command)

    @staticmethod
    def cancel(coid: str = "bbc1", reason: str = "stale") -> CancelOrder:
        """A CancelOrder command."""
        return cancel_cmd(coid, reason)

    def new_execution(self, owner: str = "replica-2") -> Execution:
        """A second replica (or a restarted process) sharing the same Redis, bus and exchange."""
        journal = Journal(self.store, owner, 3600.0, active=self.active, clock=lambda: self.clock[0])
        return Execution(bus=self.bus, journal=journal, locks=self.locks,
                         exchange=self.exchange, account="main", owner=owner, clock=lambda: self.clock[0],
                         policy=self.execution.policy, order_keys=RISK_KEY.keys())  # fmt: skip


# Risk's key of these tests: the rig's execution accepts only orders signed with it.
RISK_KEY = RunKeys.generate().risk_signer()


def submit_cmd(coid: str = "bbc1", quantity: str = "1", order_type: str = "limit", ts_ns: int = NOW) -> SubmitOrder:
    return RISK_KEY.sign(
        SubmitOrder(
            id=ids.submit_id(coid),
            ts_ns=ts_ns,
            client_order_id=coid,
            intent_id=f"intent:{coid}",
            strategy="mm",
            symbol="BTCTRY",
            side="buy",
            order_type=order_type,  # type: ignore[arg-type]
            price=D("100") if order_type == "limit" else None,
            quantity=D(quantity),
        )
    )


def cancel_cmd(coid: str = "bbc1", reason: str = "stale") -> CancelOrder:
    return CancelOrder(
        id=ids.cancel_command_id(coid, reason),
        ts_ns=NOW,
        client_order_id=coid,
        symbol="BTCTRY",
        reason=reason,
        requested_by="strategy",
    )


@pytest.fixture
def rig() -> Rig:
    bus = InMemoryBus()
    store = MemoryIdempotencyStore()
    locks = MemoryLocks()
    exchange = FakeExchange()
    clock = [NOW]
    active = MemoryActiveOrders()
    execution = Execution(
        bus=bus,
        journal=Journal(store, "replica-1", 3600.0, active=active, clock=lambda: clock[0]),
        locks=locks,
        exchange=exchange,
        account="main",
        owner="replica-1",
        clock=lambda: clock[0],
        policy=Policy(lookups=2, lookup_delay_s=0.5, max_order_age_s=120.0),
        order_keys=RISK_KEY.keys(),
    )
    return Rig(bus, store, locks, exchange, execution, clock, active)
