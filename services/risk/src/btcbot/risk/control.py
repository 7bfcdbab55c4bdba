"""What risk remembers between intents: switches, the automatic mode, alarms, the portfolio and exchange rules.

Control state is the LAST message per subject of the CONTROL stream, in stream order: each subject remembers
the sequence it applied, and anything at or below it (a redelivery, a replayed fan-out durable) is ignored. The
sender's clock orders nothing. A subject whose last message cannot be read is `unreadable` until a readable one
with a higher sequence arrives: risk then denies everything (fail closed), since it cannot know the switch.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal

from btcbot.contracts import subjects
from btcbot.contracts.messages import Alarm, BookSnapshot, KillSwitch, Mode, ModeChanged, PortfolioSnapshot
from btcbot.risk.limits import BookSeen, RiskView
from btcbot.risk.modes import AutoState, BudgetLimits, ModeInputs, decide_mode, step
from btcbot.risk.rules import SymbolRules

ControlMessage = ModeChanged | KillSwitch | Alarm

_ALARM_PREFIX = "control.alarm."


def expected_type(subject: str) -> type[ModeChanged] | type[KillSwitch] | type[Alarm] | None:
    """The message type a control subject carries (None: not a subject risk reads)."""
    if subject in (subjects.CONTROL_MODE, subjects.CONTROL_AUTO):
        return ModeChanged
    if subject == subjects.CONTROL_KILL:
        return KillSwitch
    if subject.startswith(_ALARM_PREFIX):
        return Alarm
    return None


class RiskState:
    """The latest switches, positions and rules; `view()` is what the checks read."""

    def __init__(self, account: str) -> None:
        self.account = account
        self.mode: Mode = "NORMAL"
        self.kill_engaged = False
        self.auto = AutoState()
        self.alarms: dict[str, Alarm] = {}
        # subject -> why its last message cannot be used.
        self.unreadable: dict[str, str] = {}
        # The newest snapshot in full: the budget and pre-trade reservations read its balances, positions, exec_seq.
        self.snapshot: PortfolioSnapshot | None = None
        self.positions: dict[str, Decimal] = {}
        self.halted: frozenset[str] = frozenset()
        self.books: dict[str, BookSeen] = {}
        self.rules: Mapping[str, SymbolRules] | None = None
        self.rules_loaded_ns: int | None = None
        self._applied: dict[str, int] = {}
        self._portfolio_ts = -1

    # ---- control ------------------------------------------------------------------------------------------------

    def is_new(self, subject: str, seq: int) -> bool:
        """True if `seq` is after the last message applied on `subject` (0: no sequence known, always new)."""
        return seq == 0 or seq > self._applied.get(subject, 0)

    def applied_seq(self, subject: str) -> int:
        """The stream sequence of the message in force on `subject` (0: none)."""
        return self._applied.get(subject, 0)

    def apply_unreadable(self, subject: str, seq: int, why: str) -> bool:
        """The last message of `subject` cannot be used: fail closed until a readable later one arrives."""
        if not self.is_new(subject, seq):
            return False
        self._applied[subject] = max(seq, self._applied.get(subject, 0))
        self.unreadable[subject] = why
        return True

    def apply_control(self, subject: str, seq: int, message: ControlMessage) -> bool:
        """Apply the message stored at `seq` on `subject` unless a later one was applied; True if applied."""
        if not self.is_new(subject, seq):
            return False
        wanted = expected_type(subject)
        if wanted is None or not isinstance(message, wanted):
            return self.apply_unreadable(subject, seq, f"{subject} holds a {type(message).__name__}")
        self._applied[subject] = max(seq, self._applied.get(subject, 0))
        self.unreadable.pop(subject, None)
        if isinstance(message, KillSwitch):
            self.kill_engaged = message.engaged
        elif isinstance(message, Alarm):
            self.alarms[subject] = message
        elif subject == subjects.CONTROL_AUTO:
            self.auto = AutoState(message.mode, tuple(message.reasons), message.ts_ns)
        else:
            self.mode = message.mode
        return True

    def note_seq(self, subject: str, seq: int) -> bool:
        """Record a sequence as seen without applying its content (live control.auto: each replica decides)."""
        if not self.is_new(subject, seq):
            return False
        self._applied[subject] = max(seq, self._applied.get(subject, 0))
        self.unreadable.pop(subject, None)
        return True

    def active_alarms(self) -> tuple[str, ...]:
        """Subjects whose last alarm is active, sorted."""
        return tuple(sorted(s for s, a in self.alarms.items() if a.active))

    def alarm_seq(self) -> int:
        """The highest stream sequence applied on any alarm subject (part of an automatic change's cause)."""
        return max((seq for s, seq in self._applied.items() if s.startswith(_ALARM_PREFIX)), default=0)

    # ---- the automatic budget -----------------------------------------------------------------------------------

    def evaluate(self, limits: BudgetLimits, now_ns: int) -> AutoState | None:
        """Run the budget on what is known now; the new automatic state if it changed, else None."""
        mode, reasons = decide_mode(ModeInputs(self.snapshot, now_ns, self.active_alarms()), limits)
        new = step(self.auto, mode, reasons, now_ns, limits.cooldown_ns)
        if new == self.auto:
            return None
        self.auto = new
        return new

    # ---- portfolio, books, rules --------------------------------------------------------------------------------

    def on_portfolio(self, snapshot: PortfolioSnapshot) -> bool:
        """Take positions from this account's newest ledger snapshot."""
        if snapshot.account != self.account or snapshot.ts_ns < self._portfolio_ts:
            return False
        self._portfolio_ts = snapshot.ts_ns
        self.snapshot = snapshot
        self.positions = {p.symbol: p.quantity for p in snapshot.positions}
        self.halted = frozenset(snapshot.halted)
        return True

    def on_book(self, book: BookSnapshot) -> bool:
        """Remember the newest book of a symbol (by exchange time)."""
        seen = self.books.get(book.symbol)
        if seen is not None and book.exchange_ts_ns < seen.exchange_ts_ns:
            return False
        self.books[book.symbol] = BookSeen(book.exchange_ts_ns, book.stale)
        return True

    def set_rules(self, rules: Mapping[str, SymbolRules], now_ns: int) -> None:
        """Replace the exchange rules (after a successful exchangeinfo load)."""
        self.rules = dict(rules)
        self.rules_loaded_ns = now_ns

    def view(self) -> RiskView:
        """A consistent view for one check."""
        return RiskView(
            mode=self.mode,
            kill_engaged=self.kill_engaged,
            positions=dict(self.positions),
            rules=self.rules,
            halted=self.halted,
            books=dict(self.books),
            auto_mode=self.auto.mode,
            auto_reasons=self.auto.reasons,
            unreadable=tuple(sorted(self.unreadable)),
        )
