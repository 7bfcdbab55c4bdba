"""The dynamic universe, pure: score candidates, filter them, keep the top N, change at most one a day.

Score (the original bot's): 24 h momentum (percent) - 0.01 x spread in bps + 0.1 x ln(depth in TRY + 1).

Rules, in this order:
- A selected symbol that fails a filter leaves at once (fail closed: no trading on a thin or rejecting market);
  such a forced removal is not budgeted.
- An addition (a new symbol, whether it fills an empty slot or replaces the worst selected one) is a change, and
  at most one happens per `change_every_ns` (a day). A replacement happens only when the newcomer scores
  better by more than `swap_margin`. The first selection that finds anything eligible takes the top N at once.
- A symbol that leaves the selection is in cooldown for `cooldown_ns`; a symbol that had `max_rejects` or more
  minimum-total rejects within the window is on probation for `probation_ns`. Neither may be added meanwhile.
Nothing here reads a clock: the time is passed in (ns since the epoch; 0 in `last_change_ns` means never).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal

from btcbot.contracts.messages import SymbolHold, UniverseMember, UniverseRejection, UniverseSelected

SPREAD = "SPREAD"
DEPTH = "DEPTH"
COOLDOWN = "COOLDOWN"
PROBATION = "PROBATION"
REJECTS = "REJECTS"
NO_DATA = "NO_DATA"
# Eligible but not selected: ranked below the top N, or the day's one change was spent.
RANKED_OUT = "RANKED_OUT"
CHANGE_BUDGET = "CHANGE_BUDGET"

_DAY_NS = 86_400 * 1_000_000_000


@dataclass(frozen=True)
class UniverseRules:
    """The thresholds of the selection; every one is a setting (MARKETDATA_UNIVERSE_*)."""

    size: int = 5
    max_spread_bps: float = 60.0
    min_depth_try: Decimal = Decimal(50_000)
    max_rejects: int = 3
    reject_window_ns: int = 240 * 60 * 1_000_000_000
    change_every_ns: int = _DAY_NS
    cooldown_ns: int = _DAY_NS
    probation_ns: int = _DAY_NS
    swap_margin: float = 0.0

    def __post_init__(self) -> None:
        if self.size < 1:
            raise ValueError(f"universe size must be at least 1, got {self.size}")


@dataclass(frozen=True)
class Quote:
    """What the exchange says about one candidate: 24 h change (percent), best bid/ask, the smaller side's depth."""

    symbol: str
    momentum: float
    bid: Decimal
    ask: Decimal
    depth_try: Decimal


@dataclass(frozen=True)
class UniverseState:
    """What a selection remembers: the members, when one was last added, the holds; version 0 = none yet."""

    version: int = 0
    selected: tuple[str, ...] = ()
    last_change_ns: int = 0
    cooldowns: Mapping[str, int] = field(default_factory=dict)
    probations: Mapping[str, int] = field(default_factory=dict)

    @classmethod
    def of(cls, message: UniverseSelected) -> UniverseState:
        """The state a published selection carries (a restarted selector resumes from it)."""
        return cls(
            version=message.version,
            selected=message.symbols,
            last_change_ns=message.last_change_ts_ns,
            cooldowns={h.symbol: h.until_ns for h in message.cooldowns},
            probations={h.symbol: h.until_ns for h in message.probations},
        )


@dataclass(frozen=True)
class Selection:
    """The outcome of one refresh: the new state, the scored members and the rejections."""

    state: UniverseState
    members: tuple[UniverseMember, ...]
    rejected: tuple[UniverseRejection, ...]
    added: tuple[str, ...]
    removed: tuple[str, ...]

    @property
    def changed(self) -> bool:
        """True when the set of selected symbols differs from the previous one."""
        return bool(self.added or self.removed)


def spread_bps(bid: Decimal, ask: Decimal) -> float:
    """(ask - bid) / mid in basis points; infinite for an empty or crossed book (fails the spread filter)."""
    if bid <= 0 or ask <= 0 or ask < bid:
        return math.inf
    mid = (bid + ask) / 2
    return float((ask - bid) / mid * 10_000)


def score(momentum: float, spread: float, depth_try: Decimal) -> float:
    """The original bot's score: momentum - 0.01 x spread_bps + 0.1 x ln(depth + 1)."""
    return momentum - 0.01 * spread + 0.1 * math.log(float(max(depth_try, Decimal(0))) + 1.0)


def member(quote: Quote) -> UniverseMember:
    """A quote scored, with its components."""
    spread = spread_bps(quote.bid, quote.ask)
    return UniverseMember(
        symbol=quote.symbol,
        score=score(quote.momentum, spread, quote.depth_try),
        momentum=quote.momentum,
        spread_bps=spread,
        depth_try=quote.depth_try,
    )


def quote_of(
    symbol: str,
    momentum: float,
    bids: Sequence[tuple[Decimal, Decimal]],
    asks: Sequence[tuple[Decimal, Decimal]],
    levels: int,
) -> Quote:
    """A quote from a book: best bid and ask, and the depth of the thinner side over the top `levels` (a pair
    must be deep enough both to buy and to sell)."""
    bid_depth = sum((p * q for p, q in bids[:levels]), Decimal(0))
    ask_depth = sum((p * q for p, q in asks[:levels]), Decimal(0))
    best_bid = bids[0][0] if bids else Decimal(0)
    best_ask = asks[0][0] if asks else Decimal(0)
    return Quote(symbol, momentum, best_bid, best_ask, min(bid_depth, ask_depth))


def count_recent(times_ns: Iterable[int], now_ns: int, window_ns: int) -> int:
    """How many of `times_ns` fall after the start of the window ending now (later ones count: clocks skew)."""
    return sum(1 for t in times_ns if t > now_ns - window_ns)


def _failures(m: UniverseMember, rules: UniverseRules, rejects: int) -> list[str]:
    reasons = []
    if not m.spread_bps <= rules.max_spread_bps:
        reasons.append(SPREAD)
    if m.depth_try < rules.min_depth_try:
        reasons.append(DEPTH)
    if rejects >= rules.max_rejects:
        reasons.append(REJECTS)
    return reasons


def _live(holds: Mapping[str, int], now_ns: int) -> dict[str, int]:
    return {s: until for s, until in holds.items() if until > now_ns}


def select(
    state: UniverseState,
    quotes: Sequence[Quote],
    rejects: Mapping[str, int],
    now_ns: int,
    rules: UniverseRules,
    candidates: Sequence[str] | None = None,
) -> Selection:
    """One refresh: the next selection from the previous state, the quotes, the recent reject counts.

    `candidates` names every symbol considered (a candidate without a quote is rejected NO_DATA); by default the
    quoted symbols.
    """
    by_symbol = {q.symbol: member(q) for q in quotes}
    names = list(dict.fromkeys(candidates if candidates is not None else by_symbol))
    cooldowns = _live(state.cooldowns, now_ns)
    probations = _live(state.probations, now_ns)
    failing: dict[str, list[str]] = {}
    for name in names:
        m = by_symbol.get(name)
        failing[name] = [NO_DATA] if m is None else _failures(m, rules, rejects.get(name, 0))
        if REJECTS in failing[name]:
            probations[name] = max(probations.get(name, 0), now_ns + rules.probation_ns)
    kept = [s for s in state.selected if s in by_symbol and not failing.get(s)]
    forced_out = [s for s in state.selected if s not in kept]

    def held(name: str) -> list[str]:
        return [r for r, hold in ((COOLDOWN, cooldowns), (PROBATION, probations)) if name in hold]

    eligible = sorted(
        (by_symbol[n] for n in names if n not in kept and not failing[n] and not held(n)),
        key=lambda m: (-m.score, m.symbol),
    )
    added: list[str] = []
    swapped_out: list[str] = []
    last_change = state.last_change_ns
    if state.last_change_ns == 0:
        # Bootstrap: nothing was ever added (no selection yet, or none was eligible so far): take the top N.
        added = [m.symbol for m in eligible[: rules.size]]
        if added:
            last_change = now_ns
    elif eligible and now_ns - state.last_change_ns >= rules.change_every_ns:
        best = eligible[0]
        if len(kept) < rules.size:
            added = [best.symbol]
        else:
            worst = min(kept, key=lambda s: (by_symbol[s].score, s))
            if best.score > by_symbol[worst].score + rules.swap_margin:
                added, swapped_out = [best.symbol], [worst]
        if added:
            last_change = now_ns
    chosen = [s for s in kept if s not in swapped_out] + added
    removed = forced_out + swapped_out
    for name in removed:
        cooldowns[name] = now_ns + rules.cooldown_ns
    members = tuple(sorted((by_symbol[s] for s in chosen), key=lambda m: (-m.score, m.symbol)))
    rejected = _rejections(names, by_symbol, failing, held, chosen, rules)
    new_state = UniverseState(
        version=state.version + 1,
        selected=tuple(m.symbol for m in members),
        last_change_ns=last_change,
        cooldowns=cooldowns,
        probations=probations,
    )
    return Selection(new_state, members, rejected, tuple(added), tuple(removed))


def _rejections(
    names: Sequence[str],
    by_symbol: Mapping[str, UniverseMember],
    failing: Mapping[str, list[str]],
    held: Callable[[str], list[str]],
    chosen: Sequence[str],
    rules: UniverseRules,
) -> tuple[UniverseRejection, ...]:
    out = []
    floor = min((by_symbol[s].score for s in chosen), default=-math.inf)
    for name in names:
        if name in chosen:
            continue
        m = by_symbol.get(name)
        reasons = failing[name] + held(name)
        if not reasons and m is not None:
            # Eligible and not chosen: it would have come in but for the one-change-a-day budget, or it ranks lower.
            wanted = len(chosen) < rules.size or m.score > floor + rules.swap_margin
            reasons = [CHANGE_BUDGET if wanted else RANKED_OUT]
        detail = "" if m is None else f"spread {m.spread_bps:.1f} bps, depth {m.depth_try:.0f} TRY"
        out.append(
            UniverseRejection(symbol=name, reasons=tuple(reasons), detail=detail, score=None if m is None else m.score)
        )
    return tuple(out)


def message(selection: Selection, message_id: str, now_ns: int, selector: str) -> UniverseSelected:
    """The UniverseSelected a selection is published as."""
    state = selection.state
    return UniverseSelected(
        id=message_id,
        ts_ns=now_ns,
        version=state.version,
        selected=selection.members,
        rejected=selection.rejected,
        added=selection.added,
        removed=selection.removed,
        last_change_ts_ns=state.last_change_ns,
        cooldowns=tuple(SymbolHold(symbol=s, until_ns=u) for s, u in sorted(state.cooldowns.items())),
        probations=tuple(SymbolHold(symbol=s, until_ns=u) for s, u in sorted(state.probations.items())),
        selector=selector,
    )
