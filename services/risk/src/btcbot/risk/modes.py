"""The automatic risk budget: which mode the account's own state calls for, and how long a mode holds.

`decide_mode` is a pure function of the newest portfolio snapshot, the active alarms and the time; it returns
the strictest mode any rule asks for and the stable codes of every rule that asks for more than NORMAL:

    OBSERVE_ONLY  DRAWDOWN (bot drawdown from its peak), DAILY_LOSS (bot loss today), NO_PORTFOLIO,
                  STALE_PORTFOLIO, MISSING_MARK, INTEGRITY_HALT (a halted symbol), ALARM (an active Alarm)
    REDUCE_ONLY   EXPOSURE (gross bot exposure), CONCENTRATION (largest bot position vs equity), DAY_FEES

`step` is the cooldown state machine: a stricter mode applies at once; a looser one only once the money rules
that set the current mode (DRAWDOWN, DAILY_LOSS, EXPOSURE, CONCENTRATION, DAY_FEES) have held it for the
cooldown. Conditions that an operator or a service clears on purpose (halts, alarms) and missing data hold the
mode exactly as long as they last: they do not flap around a threshold, and a restart with no snapshot yet must
not park the account for a whole cooldown.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal

from btcbot.contracts.messages import Mode, PortfolioSnapshot

_ZERO = Decimal(0)

RANK: dict[Mode, int] = {"NORMAL": 0, "REDUCE_ONLY": 1, "OBSERVE_ONLY": 2}

# Every reason code and the mode it asks for.
REASON_MODE: dict[str, Mode] = {
    "DRAWDOWN": "OBSERVE_ONLY",
    "DAILY_LOSS": "OBSERVE_ONLY",
    "NO_PORTFOLIO": "OBSERVE_ONLY",
    "STALE_PORTFOLIO": "OBSERVE_ONLY",
    "MISSING_MARK": "OBSERVE_ONLY",
    "INTEGRITY_HALT": "OBSERVE_ONLY",
    "ALARM": "OBSERVE_ONLY",
    "EXPOSURE": "REDUCE_ONLY",
    "CONCENTRATION": "REDUCE_ONLY",
    "DAY_FEES": "REDUCE_ONLY",
}
# Reasons whose mode holds for the cooldown after it was set (money measures that can flap around a limit).
STICKY = frozenset({"DRAWDOWN", "DAILY_LOSS", "EXPOSURE", "CONCENTRATION", "DAY_FEES"})


def stricter(a: Mode, b: Mode) -> Mode:
    """The stricter of two modes."""
    return a if RANK[a] >= RANK[b] else b


def mode_of(reasons: Iterable[str]) -> Mode:
    """The strictest mode these reasons ask for (NORMAL for none)."""
    mode: Mode = "NORMAL"
    for reason in reasons:
        mode = stricter(mode, REASON_MODE.get(reason, "OBSERVE_ONLY"))
    return mode


@dataclass(frozen=True)
class BudgetLimits:
    """The automatic budget's limits, in the quote asset (None: rule off)."""

    max_drawdown: Decimal | None = Decimal(3000)
    max_daily_loss: Decimal | None = Decimal(1000)
    max_exposure: Decimal | None = Decimal(10000)
    max_position_share: Decimal | None = Decimal("0.30")
    max_day_fees: Decimal | None = None
    max_snapshot_age_ns: int | None = 60_000_000_000
    cooldown_ns: int = 900_000_000_000


@dataclass(frozen=True)
class ModeInputs:
    """What the budget looks at: the newest snapshot of the account (None: none seen), active alarms, now."""

    snapshot: PortfolioSnapshot | None
    now_ns: int
    alarms: tuple[str, ...] = ()


def bot_quantity(quantity: Decimal, opening_quantity: Decimal) -> Decimal:
    """The part of a position the bot itself bought (holdings from before the run are not its risk)."""
    return quantity - opening_quantity


def decide_mode(inputs: ModeInputs, limits: BudgetLimits) -> tuple[Mode, tuple[str, ...]]:
    """The mode the account's state calls for and the codes of every rule that calls for it (sorted)."""
    reasons: set[str] = set()
    if inputs.alarms:
        reasons.add("ALARM")
    snap = inputs.snapshot
    if snap is None:
        reasons.add("NO_PORTFOLIO")
        return mode_of(reasons), tuple(sorted(reasons))
    if limits.max_snapshot_age_ns is not None and inputs.now_ns - snap.ts_ns > limits.max_snapshot_age_ns:
        reasons.add("STALE_PORTFOLIO")
    if snap.halted:
        reasons.add("INTEGRITY_HALT")
    if limits.max_drawdown is not None and snap.bot_drawdown >= limits.max_drawdown:
        reasons.add("DRAWDOWN")
    if limits.max_daily_loss is not None and -snap.day_pnl >= limits.max_daily_loss:
        reasons.add("DAILY_LOSS")
    if limits.max_day_fees is not None and snap.day_fees > limits.max_day_fees:
        reasons.add("DAY_FEES")
    missing = set(snap.missing_marks)
    gross = _ZERO
    largest = _ZERO
    for position in snap.positions:
        own = bot_quantity(position.quantity, position.opening_quantity)
        if not own:
            continue
        if position.mark is None:
            missing.add(position.symbol)
            continue
        value = abs(own * position.mark)
        gross += value
        largest = max(largest, value)
    if missing:
        reasons.add("MISSING_MARK")
    if limits.max_exposure is not None and gross > limits.max_exposure:
        reasons.add("EXPOSURE")
    share = limits.max_position_share
    if share is not None and largest > 0 and (snap.equity <= 0 or largest > share * snap.equity):
        reasons.add("CONCENTRATION")
    return mode_of(reasons), tuple(sorted(reasons))


@dataclass(frozen=True)
class AutoState:
    """The automatic mode in force, the reasons it was set for, and when (ns) it was set."""

    mode: Mode = "NORMAL"
    reasons: tuple[str, ...] = ()
    since_ns: int = 0


def step(state: AutoState, mode: Mode, reasons: tuple[str, ...], now_ns: int, cooldown_ns: int) -> AutoState:
    """The automatic mode after a decision: stricter at once; looser only as far as the cooldown allows."""
    if RANK[mode] > RANK[state.mode]:
        return AutoState(mode, reasons, now_ns)
    cooling = now_ns - state.since_ns < cooldown_ns
    held_by = {r for r in state.reasons if r in STICKY} if cooling else set()
    if mode == state.mode:
        # Same mode: the reasons may change (money rules still cooling down stay listed), the time it was set
        # does not (the cooldown keeps running).
        merged = tuple(sorted(set(reasons) | held_by))
        if set(merged) == set(state.reasons):
            return state
        # A money rule that newly holds this mode starts its own cooldown.
        fresh = (set(reasons) & STICKY) - set(state.reasons)
        return AutoState(mode, merged, now_ns if fresh else state.since_ns)
    allowed = stricter(mode, mode_of(held_by))
    if allowed == state.mode:
        return state
    if allowed == mode:
        return AutoState(mode, reasons, now_ns)
    # Partly relaxed: the sticky reasons still hold the intermediate mode.
    kept = tuple(sorted({r for r in state.reasons if r in STICKY and REASON_MODE[r] == allowed} | set(reasons)))
    return AutoState(allowed, kept, now_ns)
