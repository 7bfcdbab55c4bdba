"""Pre-trade holdings from a snapshot, minimum-total rejects, and the properties of the in-flight limits."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from btcbot.contracts.messages import Balance, OrderRejected, PortfolioSnapshot, Position
from btcbot.contracts.rejects import is_min_total_reject
from btcbot.risk.pretrade import Holdings, bot_value, holdings
from btcbot.runtime.reservations import ReservationModel, ReserveLimits, ReserveRequest

D = Decimal


def position(symbol: str, qty: str, opening: str = "0", mark: str | None = "100", avg: str = "90") -> Position:
    return Position(
        symbol=symbol,
        quantity=D(qty),
        avg_cost=D(avg),
        realized_pnl=D(0),
        unrealized_pnl=D(0),
        mark=None if mark is None else D(mark),
        opening_quantity=D(opening),
    )


def snapshot(*positions: Position, cash: str = "1000", exec_seq: int = 7) -> PortfolioSnapshot:
    return PortfolioSnapshot(
        id="p", ts_ns=1, account="main", quote_asset="TRY",
        balances=(Balance(asset="TRY", total=D(cash)), Balance(asset="BTC", total=D(5))),
        positions=positions, exposure=D(0), realized_pnl=D(0), unrealized_pnl=D(0), fees=D(0), equity=D(0),
        peak_equity=D(0), drawdown=D(0), fills=0, exec_seq=exec_seq,
    )  # fmt: skip


def test_bot_value_excludes_opening_holdings_and_falls_back_to_cost() -> None:
    assert bot_value(position("BTCTRY", "3", opening="1")) == D(200)
    assert bot_value(position("BTCTRY", "1", opening="2")) == 0
    assert bot_value(position("BTCTRY", "2", mark=None)) == D(180)
    assert bot_value(position("BTCTRY", "-2")) == 0


def test_holdings_of_a_symbol() -> None:
    snap = snapshot(position("BTCTRY", "3", opening="1"), position("ETHTRY", "2", mark="50"), cash="1234.5")
    assert holdings(snap, "BTCTRY") == Holdings(7, D(3), D(200), D(300), D("1234.5"))
    assert holdings(snap, "XRPTRY") == Holdings(7, D(0), D(0), D(300), D("1234.5"))
    # No snapshot: nothing held, no cash: every sell and buy is denied.
    assert holdings(None, "BTCTRY") == Holdings()
    assert holdings(snapshot(position("BTCTRY", "-1"), cash="-5"), "BTCTRY").position == 0


def test_min_total_rejects_are_recognised_by_code() -> None:
    def rejected(reason: str, detail: str = "x") -> OrderRejected:
        return OrderRejected(id="r", ts_ns=1, client_order_id="c", intent_id="i", strategy="s", symbol="BTCTRY",
                             reason=reason, detail=detail)  # fmt: skip

    assert is_min_total_reject(rejected("FAILED_MIN_TOTAL_AMOUNT"))
    assert is_min_total_reject(rejected("1123"))
    assert not is_min_total_reject(rejected("BALANCE_NOT_ENOUGH"))
    assert is_min_total_reject(rejected("Order total too small", "BTCTurk said code=1123"))
    assert not is_min_total_reject(rejected("BALANCE_NOT_ENOUGH", "price 1123 too low, code=1009"))


# ---- property: no sequence of intents and fills makes the account sell more than it holds --------------

FREE = ReserveLimits(max_open_per_symbol=50, max_open_total=50, cooldown_ms=0, cash_reserve=0, symbol_cap=10**12,
                     budget=10**12, deny_unknown_outcome=False)  # fmt: skip


@dataclass
class Account:
    """The exchange, the EXECUTION stream and the ledger's snapshots around one reservation store."""

    opening: int
    store: ReservationModel = field(default_factory=ReservationModel)
    stream: list[tuple[object, ...]] = field(default_factory=list)
    orders: dict[str, list[object]] = field(default_factory=dict)  # coid -> [side, quantity, filled]
    processed: int = 0
    snaps: list[int] = field(default_factory=lambda: [0, 0])  # two replicas' snapshot watermarks
    trades: int = 0
    approvals: int = 0

    def position_at(self, seq: int) -> int:
        """What the ledger's snapshot at `seq` says is held."""
        held = self.opening
        for kind, _coid, side, qty, *_ in self.stream[:seq]:
            if kind == "filled":
                held += qty if side == "buy" else -qty  # type: ignore[operator]
        return held

    def held_now(self) -> int:
        return self.position_at(len(self.stream))

    async def intent(self, replica: int, side: str, qty: int) -> None:
        coid = f"c{len(self.orders)}-{self.approvals}-{self.trades}-{len(self.stream)}"
        snap = self.snaps[replica]
        req = ReserveRequest(coid=coid, symbol="BTCTRY", side=side, quantity=qty, notional=qty,  # type: ignore[arg-type]
                             now_ms=1, snap_seq=snap, position=max(0, self.position_at(snap)), symbol_value=0,
                             exposure=0, cash=10**9)  # fmt: skip
        if (await self.store.reserve(req, FREE)).outcome == "approved":
            self.orders[coid] = [side, qty, 0]
            self.approvals += 1

    def fill(self, pick: int, qty: int) -> None:
        live = sorted(c for c, (_, q, f) in self.orders.items() if f < q)  # type: ignore[operator]
        if not live:
            return
        coid = live[pick % len(live)]
        side, total, filled = self.orders[coid]
        qty = min(qty, total - filled)  # type: ignore[operator]
        self.orders[coid][2] = filled + qty  # type: ignore[operator]
        self.trades += 1
        self.stream.append(("filled", coid, side, qty, f"t{self.trades}"))

    def end(self, pick: int, how: str) -> None:
        live = sorted(c for c, (_, q, f) in self.orders.items() if f < q)  # type: ignore[operator]
        if not live:
            return
        coid = live[pick % len(live)]
        side, _total, filled = self.orders[coid]
        self.orders[coid][1] = filled  # nothing more will fill
        if how == "reject" and filled == 0:
            self.stream.append(("rejected", coid, side, 0))
        else:
            self.stream.append(("canceled", coid, side, filled))

    async def risk_reads(self, count: int) -> None:
        for seq in range(self.processed + 1, min(len(self.stream), self.processed + count) + 1):
            kind, coid, side, qty, *rest = self.stream[seq - 1]
            if kind == "filled":
                await self.store.filled(coid, "BTCTRY", side, rest[0], qty, qty, seq)  # type: ignore[arg-type]
            elif kind == "canceled":
                await self.store.canceled(coid, qty, seq)  # type: ignore[arg-type]
            else:
                await self.store.rejected(coid)  # type: ignore[arg-type]
            self.processed = seq

    def ledger_snapshot(self, replica: int, step: int) -> None:
        self.snaps[replica] = min(len(self.stream), self.snaps[replica] + step)

    def resting_sells(self) -> int:
        return sum(q - f for side, q, f in self.orders.values() if side == "sell")  # type: ignore[misc]


ops = st.lists(
    st.one_of(
        st.tuples(st.just("intent"), st.integers(0, 1), st.sampled_from(("buy", "sell", "sell")), st.integers(1, 6)),
        st.tuples(st.just("fill"), st.integers(0, 20), st.integers(1, 6)),
        st.tuples(st.just("end"), st.integers(0, 20), st.sampled_from(("cancel", "reject"))),
        st.tuples(st.just("risk"), st.integers(1, 4)),
        st.tuples(st.just("snapshot"), st.integers(0, 1), st.integers(1, 4)),
    ),
    min_size=5,
    max_size=80,
)


@settings(max_examples=400, deadline=None)
@given(opening=st.integers(0, 12), steps=ops)
def test_no_sequence_of_intents_and_fills_sells_more_than_the_account_holds(opening: int, steps: list) -> None:  # type: ignore[type-arg]
    account = Account(opening)

    async def run() -> None:
        for step in steps:
            kind = step[0]
            if kind == "intent":
                await account.intent(step[1], step[2], step[3])
            elif kind == "fill":
                account.fill(step[1], step[2])
            elif kind == "end":
                account.end(step[1], step[2])
            elif kind == "risk":
                await account.risk_reads(step[1])
            else:
                account.ledger_snapshot(step[1], step[2])
            # Whatever fills next, every sell resting at the exchange is covered by what the account holds.
            assert account.held_now() - account.resting_sells() >= 0, (account.stream, account.orders)

    asyncio.run(run())


@settings(max_examples=200, deadline=None)
@given(
    budget=st.integers(0, 50),
    exposure=st.integers(0, 30),
    asks=st.lists(st.tuples(st.sampled_from(("BTCTRY", "ETHTRY")), st.integers(1, 9)), max_size=30),
)
def test_buys_in_flight_plus_exposure_never_pass_the_budget(budget: int, exposure: int, asks: list) -> None:  # type: ignore[type-arg]
    store = ReservationModel()
    limits = ReserveLimits(max_open_per_symbol=99, max_open_total=99, cooldown_ms=0, cash_reserve=0,
                           symbol_cap=10**9, budget=budget, deny_unknown_outcome=False)  # fmt: skip

    async def run() -> int:
        total = 0
        for i, (symbol, notional) in enumerate(asks):
            req = ReserveRequest(coid=f"c{i}", symbol=symbol, side="buy", quantity=1, notional=notional, now_ms=1,
                                 snap_seq=0, position=0, symbol_value=0, exposure=exposure, cash=10**9)  # fmt: skip
            if (await store.reserve(req, limits)).outcome == "approved":
                total += notional
            assert exposure + total <= max(budget, exposure) or total == 0
        return total

    total = asyncio.run(run())
    assert total == 0 or exposure + total <= budget
