"""The in-flight checks and the reservation model in plain Python (no servers)."""

from __future__ import annotations

import asyncio
import itertools
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from btcbot.runtime import reservations as res
from btcbot.runtime.reservations import Held, ReservationModel, ReserveAnswer, ReserveLimits, ReserveRequest

D = Decimal
OPEN = ReserveLimits(
    max_open_per_symbol=100,
    max_open_total=100,
    cooldown_ms=0,
    cash_reserve=0,
    symbol_cap=10**9,
    budget=10**9,
    deny_unknown_outcome=False,
)


def req(
    coid: str = "c1", side: str = "buy", qty: int = 1, notional: int = 100, symbol: str = "BTCTRY", **kw: int
) -> ReserveRequest:
    base = {"now_ms": 1_000_000, "snap_seq": 0, "position": 0, "symbol_value": 0, "exposure": 0, "cash": 10**6}
    base.update(kw)
    return ReserveRequest(coid=coid, symbol=symbol, side=side, quantity=qty, notional=notional, **base)  # type: ignore[arg-type]


# ---- each check alone -------------------------------------------------------------------------------


def test_min_total_cooldown_denies_until_its_end() -> None:
    assert res.min_total_cooldown(99, 100) == ReserveAnswer("denied", "MIN_TOTAL_COOLDOWN", 99, 100)
    assert res.min_total_cooldown(100, 100) is None
    assert res.min_total_cooldown(5, 0) is None


def test_outcome_unknown_denies_only_when_enabled_and_some_are_unknown() -> None:
    assert res.outcome_unknown(1, True) == ReserveAnswer("denied", "OUTCOME_UNKNOWN", 1, 0)
    assert res.outcome_unknown(0, True) is None
    assert res.outcome_unknown(3, False) is None


def test_open_orders_deny_at_the_limit() -> None:
    assert res.open_orders("OPEN_ORDERS_SYMBOL", 1, 1) == ReserveAnswer("denied", "OPEN_ORDERS_SYMBOL", 1, 1)
    assert res.open_orders("OPEN_ORDERS_TOTAL", 4, 5) is None


def test_cooldown_per_symbol_and_side() -> None:
    assert res.cooldown(1_059_999, 1_000_000, 60_000) == ReserveAnswer("denied", "COOLDOWN", 59_999, 60_000)
    assert res.cooldown(1_060_000, 1_000_000, 60_000) is None
    assert res.cooldown(5, None, 60_000) is None
    assert res.cooldown(999, 1000, 0) is None  # no cooldown: another replica's clock may be a little ahead


def test_oversell_counts_sells_in_flight() -> None:
    assert res.oversell(5, 10, 5) is None
    assert res.oversell(6, 10, 5) == ReserveAnswer("denied", "OVERSELL", 5, 6)
    assert res.oversell(1, 0, 0) == ReserveAnswer("denied", "OVERSELL", 0, 1)


def test_cash_reserve_keeps_the_reserve_and_what_buys_in_flight_hold() -> None:
    assert res.cash_reserve(700, 1000, 300, 0) is None
    assert res.cash_reserve(701, 1000, 300, 0) == ReserveAnswer("denied", "CASH_RESERVE", 700, 701)
    assert res.cash_reserve(600, 1000, 300, 200) == ReserveAnswer("denied", "CASH_RESERVE", 500, 600)


def test_caps_count_used_plus_the_order() -> None:
    assert res.cap("EXPOSURE_BUDGET", 100, 900, 1000) is None
    assert res.cap("EXPOSURE_BUDGET", 101, 900, 1000) == ReserveAnswer("denied", "EXPOSURE_BUDGET", 100, 101)


def test_units_round_against_us() -> None:
    assert res.to_units(D("0.005"), 2, up=True) == 1
    assert res.to_units(D("0.005"), 2, up=False) == 0
    assert res.from_units(12345, 2) == D("123.45")
    made = res.request("c", "BTCTRY", "buy", D("0.00000001"), D("3000000.5"), 5 * 10**6, snap_seq=3,
                       position=D("1.000000009"), symbol_value=D("0.001"), exposure=D(0), cash=D("10.009"))  # fmt: skip
    assert made is not None
    assert (made.quantity, made.notional, made.now_ms, made.position, made.symbol_value, made.cash) == (
        1,
        4,
        5,
        100_000_000,
        1,
        1000,
    )
    assert res.request("c", "X", "buy", D(10**20), D(1), 0, snap_seq=0, position=D(0), symbol_value=D(0),
                       exposure=D(0), cash=D(0)) is None  # fmt: skip
    huge = res.request("c", "X", "sell", D(1), D(1), 0, snap_seq=0, position=D(10**30), symbol_value=D(-5),
                       exposure=D(10**30), cash=D(10**30))  # fmt: skip
    assert huge is not None
    assert (huge.position, huge.symbol_value, huge.exposure) == (res.MAX_UNITS, 0, res.MAX_UNITS)


# ---- the model --------------------------------------------------------------------------------------


async def test_same_coid_same_answer() -> None:
    m = ReservationModel()
    assert (await m.reserve(req("a"), ReserveLimits())).outcome == "approved"
    assert (await m.reserve(req("a"), ReserveLimits())).outcome == "approved"
    denied = await m.reserve(req("b"), ReserveLimits())
    assert denied.reason == "OUTCOME_UNKNOWN"
    await m.accepted("a")
    # Still denied: the answer of a coid never changes.
    assert await m.reserve(req("b"), ReserveLimits()) == denied
    assert (await m.reserve(req("c", now_ms=2_000_000), ReserveLimits())).reason == "OPEN_ORDERS_SYMBOL"


async def test_checks_run_in_order() -> None:
    m = ReservationModel()
    limits = ReserveLimits(max_open_per_symbol=2, max_open_total=2, cooldown_ms=60_000, deny_unknown_outcome=False)
    assert (await m.reserve(req("a"), limits)).outcome == "approved"
    assert (await m.reserve(req("b", now_ms=1_000_001), limits)).reason == "COOLDOWN"
    assert (await m.reserve(req("c", side="sell", position=10**8), limits)).outcome == "approved"
    assert (await m.reserve(req("d", symbol="ETHTRY"), limits)).reason == "OPEN_ORDERS_TOTAL"


async def test_budget_counts_exposure_and_buys_in_flight() -> None:
    m = ReservationModel()
    limits = ReserveLimits(max_open_per_symbol=10, max_open_total=10, cooldown_ms=0, budget=1000, symbol_cap=800,
                           cash_reserve=0, deny_unknown_outcome=False)  # fmt: skip
    assert (await m.reserve(req("a", notional=500, exposure=200, symbol_value=200), limits)).outcome == "approved"
    over_cap = await m.reserve(req("b", notional=101, exposure=200, symbol_value=200), limits)
    assert over_cap == ReserveAnswer("denied", "SYMBOL_EXPOSURE", 100, 101)
    over_budget = await m.reserve(req("c", symbol="ETHTRY", notional=301, exposure=200), limits)
    assert over_budget == ReserveAnswer("denied", "EXPOSURE_BUDGET", 300, 301)
    assert (await m.reserve(req("d", symbol="ETHTRY", notional=300, exposure=200), limits)).outcome == "approved"


async def test_a_filled_order_counts_until_the_snapshot_includes_it() -> None:
    m = ReservationModel()
    assert (await m.reserve(req("s1", side="sell", qty=10, position=10, snap_seq=5), OPEN)).outcome == "approved"
    await m.accepted("s1")
    await m.filled("s1", "BTCTRY", "sell", "t1", 4, 40, 7)
    await m.filled("s1", "BTCTRY", "sell", "t1", 4, 40, 7)  # redelivered
    assert m.held["s1"].state == "open"
    assert m.held["s1"].fqty == 4
    await m.filled("s1", "BTCTRY", "sell", "t2", 6, 60, 9)
    assert m.held["s1"].state == "done"
    # The stale snapshot (seq 8) still shows 10 held: selling them again would oversell.
    stale = await m.reserve(req("s2", side="sell", qty=1, position=10, snap_seq=8), OPEN)
    assert stale == ReserveAnswer("denied", "OVERSELL", 0, 1)
    # Once the snapshot includes the fill (seq 9), position 0 is the truth and the record goes.
    assert (await m.reserve(req("s3", side="sell", qty=1, position=0, snap_seq=9), OPEN)).reason == "OVERSELL"
    assert "s1" not in m.held
    # An older snapshot than one already used is refused: the caller retries.
    assert (await m.reserve(req("s4", side="sell", qty=1, position=10, snap_seq=8), OPEN)).outcome == "stale"


async def test_cancel_with_unseen_fills_holds_the_whole_order() -> None:
    m = ReservationModel()
    assert (await m.reserve(req("b1", notional=500, snap_seq=1), OPEN)).outcome == "approved"
    await m.canceled("b1", 1, 4)
    assert m.held["b1"].in_flight() == (0, 500)
    # The snapshot passed the cancel, but the fill it reported is not seen yet: keep it.
    await m.reserve(req("x", notional=1, snap_seq=5), OPEN)
    assert "b1" in m.held
    await m.filled("b1", "BTCTRY", "buy", "t9", 1, 300, 6)
    assert m.held["b1"].in_flight() == (0, 300)
    await m.reserve(req("y", notional=1, snap_seq=6), OPEN)
    assert "b1" not in m.held


async def test_rejects_and_empty_cancels_release_at_once() -> None:
    m = ReservationModel()
    await m.reserve(req("a"), OPEN)
    await m.reserve(req("b", symbol="ETHTRY"), OPEN)
    assert await m.open_orders() == [("a", "BTCTRY"), ("b", "ETHTRY")]
    await m.rejected("a")
    await m.canceled("b", 0, 3)
    assert m.held == {}
    assert await m.release_denied("a") is False


async def test_a_fill_of_an_unknown_order_counts_until_the_snapshot_has_it() -> None:
    m = ReservationModel()
    await m.filled("ghost", "BTCTRY", "sell", "t1", 3, 30, 12)
    assert m.held["ghost"] == Held("BTCTRY", "sell", 0, 0, "done", 3, 30, 0, 12)
    assert (await m.reserve(req("s", side="sell", qty=8, position=10, snap_seq=11), OPEN)).reason == "OVERSELL"


async def test_three_min_total_rejects_in_an_hour_start_a_cooldown() -> None:
    m = ReservationModel()
    hour, cool = 3_600_000, 14_400_000
    assert await m.min_total_reject("BTCTRY", "r1", 0, hour, 3, cool) == 0
    assert await m.min_total_reject("BTCTRY", "r1", 0, hour, 3, cool) == 0  # redelivered: counted once
    assert await m.min_total_reject("BTCTRY", "r2", hour - 1, hour, 3, cool) == 0
    # r1 fell out of the window: still only two.
    assert await m.min_total_reject("BTCTRY", "r3", hour, hour, 3, cool) == 0
    assert await m.min_total_reject("BTCTRY", "r4", hour + 5, hour, 3, cool) == hour + 5 + cool
    denied = await m.reserve(req("a", now_ms=hour + 10), OPEN)
    assert denied.reason == "MIN_TOTAL_COOLDOWN"
    assert (await m.reserve(req("b", now_ms=hour + 5 + cool), OPEN)).outcome == "approved"
    assert (await m.reserve(req("c", symbol="ETHTRY", now_ms=hour + 10), OPEN)).outcome == "approved"


async def test_summary_lists_what_is_reserved() -> None:
    m = ReservationModel()
    await m.reserve(req("a", notional=12345), OPEN)
    await m.reserve(req("b", side="sell", qty=50_000_000, position=10**8), OPEN)
    summary = await m.summary()
    assert summary["reserved"] == {"BTCTRY": {"buy_notional": "123.45", "sell_quantity": "0.50000000"}}
    assert [o["client_order_id"] for o in summary["orders"]] == ["a", "b"]  # type: ignore[attr-defined]


def test_out_of_range_units_are_refused() -> None:
    with pytest.raises(ValueError, match="position"):
        res._check_units(req(position=-1))


# ---- properties of every check over the model -------------------------------------------------------

limits_st = st.builds(
    ReserveLimits,
    max_open_per_symbol=st.integers(1, 4),
    max_open_total=st.integers(1, 6),
    cooldown_ms=st.sampled_from((0, 500, 2000)),
    cash_reserve=st.integers(0, 10),
    symbol_cap=st.integers(0, 30),
    budget=st.integers(0, 30),
    deny_unknown_outcome=st.booleans(),
)
steps_st = st.lists(
    st.one_of(
        st.tuples(
            st.just("reserve"),
            st.sampled_from(("BTCTRY", "ETHTRY")),
            st.sampled_from(("buy", "sell")),
            st.integers(1, 8),
            st.integers(0, 1500),
        ),
        st.tuples(st.sampled_from(("accepted", "rejected", "canceled")), st.integers(0, 30), st.integers(0, 2)),
    ),
    max_size=60,
)


@settings(max_examples=500, deadline=None)
@given(limits=limits_st, steps=steps_st, cash=st.integers(0, 30), exposure=st.integers(0, 8),
       value=st.integers(0, 10), position=st.integers(0, 12))  # fmt: skip
def test_every_limit_holds_after_any_sequence(
    limits: ReserveLimits,
    steps: list,  # type: ignore[type-arg]
    cash: int,
    exposure: int,
    value: int,
    position: int,
) -> None:
    """With the snapshot fixed, whatever is approved, accepted, rejected or canceled, every limit holds."""
    model = ReservationModel()
    approvals: dict[str, list[int]] = {}

    async def run() -> None:
        now, n = 0, 0
        for step in steps:
            if step[0] == "reserve":
                _, symbol, side, qty, dt = step
                now += dt
                n += 1
                ask = ReserveRequest(
                    coid=f"c{n}", symbol=symbol, side=side, quantity=qty, notional=qty, now_ms=now, snap_seq=0,
                    position=position, symbol_value=value, exposure=exposure, cash=cash,
                )  # fmt: skip
                if (await model.reserve(ask, limits)).outcome == "approved":
                    approvals.setdefault(f"{symbol}:{side}", []).append(now)
            else:
                coids = sorted(model.held)
                if coids:
                    coid = coids[step[1] % len(coids)]
                    if step[0] == "canceled":
                        await model.canceled(coid, min(step[2], model.held[coid].quantity), 1)
                    else:
                        await getattr(model, step[0])(coid)
            live = [o for o in model.held.values() if o.state != "done"]
            assert len(live) <= limits.max_open_total
            buys_total = sum(o.in_flight()[1] for o in model.held.values())
            for symbol in ("BTCTRY", "ETHTRY"):
                mine = [o for o in model.held.values() if o.symbol == symbol]
                assert sum(o.state != "done" for o in mine) <= limits.max_open_per_symbol
                if limits.deny_unknown_outcome:
                    assert sum(o.state == "unknown" for o in mine) <= 1
                assert sum(o.in_flight()[0] for o in mine) <= position  # no oversell
                buys = sum(o.in_flight()[1] for o in mine)
                assert buys == 0 or value + buys <= limits.symbol_cap
            assert buys_total == 0 or buys_total <= cash - limits.cash_reserve
            assert buys_total == 0 or exposure + buys_total <= limits.budget
        if limits.cooldown_ms:
            for times in approvals.values():
                assert all(b - a >= limits.cooldown_ms for a, b in itertools.pairwise(times))

    asyncio.run(run())
