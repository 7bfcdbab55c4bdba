"""The dynamic universe's selection rules: unit examples and Hypothesis properties."""

from __future__ import annotations

import itertools
import math
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from btcbot.contracts.codec import Codec, encode
from btcbot.contracts.messages import UniverseSelected
from btcbot.marketdata.selection import (
    CHANGE_BUDGET,
    COOLDOWN,
    DEPTH,
    NO_DATA,
    PROBATION,
    RANKED_OUT,
    REJECTS,
    SPREAD,
    Quote,
    UniverseRules,
    UniverseState,
    count_recent,
    member,
    message,
    quote_of,
    score,
    select,
    spread_bps,
)

D = Decimal
HOUR = 3600 * 1_000_000_000
DAY = 24 * HOUR
RULES = UniverseRules()
SYMBOLS = [f"S{i:02d}TRY" for i in range(12)]


def quote(symbol: str, momentum: float = 1.0, spread: float = 10.0, depth: int = 100_000) -> Quote:
    """A quote with the given spread in bps around a mid of 100."""
    half = D(str(spread)) / D(20_000) * 100
    return Quote(symbol, momentum, D(100) - half, D(100) + half, D(depth))


def test_score_is_the_original_formula() -> None:
    assert score(2.0, 10.0, D(50_000)) == 2.0 - 0.1 + 0.1 * math.log(50_001)
    assert math.isclose(spread_bps(D(99), D(101)), 200.0)
    assert spread_bps(D(0), D(101)) == math.inf
    assert spread_bps(D(101), D(100)) == math.inf  # crossed: never eligible


def test_filters_name_their_reasons() -> None:
    quotes = [
        quote("AAATRY", spread=61),
        quote("BBBTRY", depth=49_999),
        quote("CCCTRY"),
        quote("DDDTRY", momentum=5),
    ]
    out = select(UniverseState(), quotes, {"CCCTRY": 3}, 0, RULES, ["AAATRY", "BBBTRY", "CCCTRY", "DDDTRY", "EEETRY"])
    assert out.state.selected == ("DDDTRY",)
    reasons = {r.symbol: r.reasons for r in out.rejected}
    assert reasons == {"AAATRY": (SPREAD,), "BBBTRY": (DEPTH,), "CCCTRY": (REJECTS, PROBATION), "EEETRY": (NO_DATA,)}
    assert out.state.probations == {"CCCTRY": RULES.probation_ns}


def test_first_selection_takes_the_top_n_then_one_swap_a_day() -> None:
    quotes = [quote(s, momentum=i) for i, s in enumerate(SYMBOLS)]
    first = select(UniverseState(), quotes, {}, 1, RULES)
    assert first.state.selected == tuple(reversed(SYMBOLS[-5:]))
    # The market turns: the worst five become the best. Within the day nothing moves.
    turned = [quote(s, momentum=-i) for i, s in enumerate(SYMBOLS)]
    same = select(first.state, turned, {}, HOUR, RULES)
    assert set(same.state.selected) == set(first.state.selected)
    assert {r.reasons for r in same.rejected if r.symbol == "S00TRY"} == {(CHANGE_BUDGET,)}
    # A day later: one swap, the worst selected out (into cooldown), the best newcomer in.
    swapped = select(same.state, turned, {}, DAY + 1, RULES)
    assert swapped.added == ("S00TRY",)
    assert swapped.removed == ("S11TRY",)
    assert swapped.state.cooldowns == {"S11TRY": DAY + 1 + RULES.cooldown_ns}
    assert {r.reasons for r in swapped.rejected if r.symbol == "S11TRY"} == {(COOLDOWN,)}
    assert {r.reasons for r in swapped.rejected if r.symbol == "S06TRY"} == {(CHANGE_BUDGET,)}
    assert {r.reasons for r in first.rejected if r.symbol == "S00TRY"} == {(RANKED_OUT,)}


def test_a_first_refresh_with_nothing_eligible_does_not_spend_the_bootstrap() -> None:
    thin = select(UniverseState(), [quote(s, depth=1) for s in SYMBOLS], {}, 0, RULES)
    assert (thin.state.version, thin.state.selected, thin.state.last_change_ns) == (1, (), 0)
    deep = select(thin.state, [quote(s, momentum=i) for i, s in enumerate(SYMBOLS)], {}, HOUR, RULES)
    assert len(deep.state.selected) == RULES.size
    assert deep.state.last_change_ns == HOUR


def test_a_selected_symbol_failing_a_filter_leaves_at_once() -> None:
    quotes = [quote(s, momentum=i) for i, s in enumerate(SYMBOLS[:5])]
    first = select(UniverseState(), quotes, {}, 1, RULES)
    wide = [quote(s, momentum=i, spread=80 if s == "S04TRY" else 10) for i, s in enumerate(SYMBOLS[:5])]
    out = select(first.state, wide, {}, HOUR, RULES)
    assert "S04TRY" not in out.state.selected
    assert out.removed == ("S04TRY",)
    assert out.added == ()  # the slot stays empty until the next day's change


def test_state_survives_the_wire() -> None:
    quotes = [quote(s, momentum=i) for i, s in enumerate(SYMBOLS)]
    out = select(UniverseState(), quotes, {"S01TRY": 5}, 7, RULES)
    codec = Codec(UniverseSelected)
    wire = codec.decode(encode(message(out, "universe:1", 7, "me")))
    assert UniverseState.of(wire) == out.state
    assert wire.symbols == out.state.selected


def test_count_recent_counts_after_the_window_start() -> None:
    assert count_recent([0, 5, 10, 11], now_ns=10, window_ns=5) == 2


quote_st = st.builds(
    Quote,
    symbol=st.sampled_from(SYMBOLS),
    momentum=st.floats(-20, 20, allow_nan=False),
    bid=st.decimals(D(90), D(100), places=2),
    ask=st.decimals(D(95), D(110), places=2),
    depth_try=st.decimals(D(0), D(500_000), places=0),
)
rules_st = st.builds(
    UniverseRules,
    size=st.integers(1, 6),
    max_spread_bps=st.floats(1, 1000),
    min_depth_try=st.decimals(D(0), D(200_000), places=0),
    max_rejects=st.integers(1, 4),
    swap_margin=st.floats(0, 2),
)
round_st = st.tuples(
    st.lists(quote_st, max_size=12, unique_by=lambda q: q.symbol),
    st.dictionaries(st.sampled_from(SYMBOLS), st.integers(0, 5)),
    st.integers(1, 30 * HOUR),
)


@settings(max_examples=150, deadline=None)
@given(rules=rules_st, rounds=st.lists(round_st, min_size=1, max_size=25))
def test_selection_invariants_over_time(
    rules: UniverseRules, rounds: list[tuple[list[Quote], dict[str, int], int]]
) -> None:
    state = UniverseState()
    now = 0
    additions: list[int] = []
    for quotes, rejects, step in rounds:
        now += step
        out = select(state, quotes, rejects, now, rules, SYMBOLS)
        by_symbol = {q.symbol: member(q) for q in quotes}
        selected = out.state.selected
        # Never more than N, never a duplicate, never a symbol failing a filter.
        assert len(selected) <= rules.size
        assert len(set(selected)) == len(selected)
        for symbol in selected:
            m = by_symbol[symbol]
            assert m.spread_bps <= rules.max_spread_bps
            assert m.depth_try >= rules.min_depth_try
            assert rejects.get(symbol, 0) < rules.max_rejects
        # Nothing held is ever added, and a healthy member leaves only to make room for an addition.
        for symbol in out.added:
            assert state.cooldowns.get(symbol, 0) <= now
            assert state.probations.get(symbol, 0) <= now
        healthy_out = [
            s
            for s in out.removed
            if s in by_symbol
            and by_symbol[s].spread_bps <= rules.max_spread_bps
            and by_symbol[s].depth_try >= rules.min_depth_try
            and rejects.get(s, 0) < rules.max_rejects
        ]
        assert len(healthy_out) <= min(1, len(out.added))
        if state.last_change_ns != 0 and out.added:
            additions.append(now)
        state = out.state
    # After the first selection, at most one addition per day.
    assert all(b - a >= rules.change_every_ns for a, b in itertools.pairwise(additions))


@settings(max_examples=150, deadline=None)
@given(rules=rules_st, quotes=st.lists(quote_st, max_size=12, unique_by=lambda q: q.symbol))
def test_first_selection_is_the_top_n_of_the_eligible(rules: UniverseRules, quotes: list[Quote]) -> None:
    out = select(UniverseState(), quotes, {}, 1, rules)
    eligible = [
        member(q) for q in quotes if member(q).spread_bps <= rules.max_spread_bps and q.depth_try >= rules.min_depth_try
    ]
    best = sorted(eligible, key=lambda m: (-m.score, m.symbol))[: rules.size]
    assert out.state.selected == tuple(m.symbol for m in best)
    assert [m.score for m in out.members] == sorted((m.score for m in out.members), reverse=True)


def test_quote_of_takes_the_thinner_side_within_the_levels() -> None:
    bids = [(D(100), D(10)), (D(99), D(10)), (D(1), D(1_000_000))]
    asks = [(D(101), D(5))]
    q = quote_of("AAATRY", 2.5, bids, asks, levels=2)
    assert (q.bid, q.ask, q.depth_try, q.momentum) == (D(100), D(101), D(505), 2.5)
    empty = quote_of("AAATRY", 0.0, [], asks, levels=2)
    assert empty.depth_try == 0
    assert spread_bps(empty.bid, empty.ask) == math.inf
