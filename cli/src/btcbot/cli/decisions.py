"""The pure half of `btcbot replay`: re-run profit_v1 and risk over recorded messages and diff the decisions.

No I/O here: the recording comes in as data, so the same functions serve the CLI and the tests.
"""

from __future__ import annotations

import typing
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from decimal import Decimal, InvalidOperation
from typing import Any, Literal

from btcbot.contracts import ids, subjects
from btcbot.contracts.messages import (
    BookSnapshot,
    CancelOrder,
    KillSwitch,
    Message,
    ModeChanged,
    OrderAccepted,
    OrderCanceled,
    OrderDenied,
    OrderFilled,
    OrderIntent,
    OrderRejected,
    PortfolioSnapshot,
    SubmitOrder,
)
from btcbot.risk.control import RiskState
from btcbot.risk.limits import Approved, RiskLimits, check
from btcbot.risk.rules import RulesBook, SymbolRules
from btcbot.strategy.signals import Hold, ProfitParams, ProfitV1

Status = Literal["same", "different", "only_recorded", "only_replayed"]
STATUSES: tuple[Status, ...] = ("same", "different", "only_recorded", "only_replayed")
COMPARED = ("side", "price", "quantity", "verdict")
REPLAY_OF = "Btcbot-Replay-Of"
REPLAY_TRACEPARENT = "Btcbot-Replay-Traceparent"
NO_VERDICT = "none"  # a recorded intent that risk never answered
ExecutionEvent = OrderAccepted | OrderRejected | OrderCanceled | OrderFilled
ControlEvent = ModeChanged | KillSwitch


class ReplayError(Exception):
    """A bad option or an input the replay cannot use."""


# -- decisions and their diff (pure) -------------------------------------------------------------------------


@dataclass(frozen=True)
class Decision:
    """One intent and what risk made of it: `approved`, `denied:REASON`, or `none` (never answered)."""

    intent_id: str
    symbol: str
    side: str
    price: Decimal | None
    quantity: Decimal
    verdict: str


@dataclass(frozen=True)
class DiffRow:
    """How one intent id compares: its status, the fields that differ, and both sides."""

    intent_id: str
    status: Status
    fields: tuple[str, ...]
    recorded: Decision | None
    replayed: Decision | None


def decision_of(intent: OrderIntent, verdict: str) -> Decision:
    """The comparable part of an intent and its verdict."""
    return Decision(intent.id, intent.symbol, intent.side, intent.price, intent.quantity, verdict)


def verdict_text(answer: SubmitOrder | OrderDenied | None) -> str:
    """A recorded risk answer as a verdict string."""
    if answer is None:
        return NO_VERDICT
    if isinstance(answer, SubmitOrder):
        return "approved"
    return f"denied:{answer.reason}"


def diff_decisions(recorded: Mapping[str, Decision], replayed: Mapping[str, Decision]) -> list[DiffRow]:
    """Every intent id of either side with its status; ordered by intent id (book time is inside it)."""
    rows: list[DiffRow] = []
    for intent_id in sorted(recorded.keys() | replayed.keys()):
        old, new = recorded.get(intent_id), replayed.get(intent_id)
        if old is None:
            rows.append(DiffRow(intent_id, "only_replayed", (), None, new))
        elif new is None:
            rows.append(DiffRow(intent_id, "only_recorded", (), old, None))
        else:
            # Decimal equality ignores trailing zeros, as the exchange does.
            changed = tuple(name for name in COMPARED if getattr(old, name) != getattr(new, name))
            rows.append(DiffRow(intent_id, "different" if changed else "same", changed, old, new))
    return rows


def count_statuses(rows: Iterable[DiffRow]) -> dict[str, int]:
    """How many rows have each status (every status present, zero included)."""
    counts: dict[str, int] = dict.fromkeys(STATUSES, 0)
    for row in rows:
        counts[row.status] += 1
    return counts


def _param_value(name: str, hint: Any, text: str) -> Any:
    optional = type(None) in typing.get_args(hint)
    if optional and text.strip().lower() in ("none", ""):
        return None
    base = next((t for t in typing.get_args(hint) if t is not type(None)), hint) if optional else hint
    try:
        if base is Decimal:
            value = Decimal(text)
            if not value.is_finite():
                raise InvalidOperation
            return value
        if base is bool:
            if text.lower() not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError(text)
            return text.lower() in ("true", "1", "yes")
        if base is int:
            return int(text)
    except (ValueError, InvalidOperation):
        raise ReplayError(f"--params {name}={text!r}: not a valid {getattr(base, '__name__', base)}") from None
    raise ReplayError(f"--params {name}: cannot parse a {hint}")


def override_params(base: ProfitParams, overrides: Sequence[str]) -> ProfitParams:
    """`base` with `name=value` overrides (ProfitParams field names; times in ns; `none` clears optionals)."""
    hints = typing.get_type_hints(ProfitParams)
    known = {f.name for f in fields(ProfitParams)}
    changes: dict[str, Any] = {}
    for item in overrides:
        for pair in filter(None, (p.strip() for p in item.split(","))):
            name, sep, text = pair.partition("=")
            name = name.strip()
            if not sep or name not in known:
                raise ReplayError(f"--params {pair!r}: expected NAME=VALUE with NAME one of {', '.join(sorted(known))}")
            changes[name] = _param_value(name, hints[name], text.strip())
    return replace(base, **changes)


def permissive_rules(symbols: Iterable[str]) -> dict[str, SymbolRules]:
    """Rules that every order passes: used when no exchange rules are given, so only our own limits apply."""
    return {s: SymbolRules(symbol=s, trading=True, price_scale=28, quantity_scale=28) for s in symbols}


# -- the recording and the in-process replay (pure) ----------------------------------------------------------


@dataclass(frozen=True)
class Stored:
    """A decoded message with where the stream keeps it."""

    stream: str
    sequence: int
    message: Message
    traceparent: str = ""


@dataclass
class Recording:
    """What was recorded for a range of books: the inputs and the decisions."""

    books: list[Stored] = field(default_factory=list)
    intents: dict[str, Stored] = field(default_factory=dict)
    answers: dict[str, SubmitOrder | OrderDenied] = field(default_factory=dict)
    executions: list[Stored] = field(default_factory=list)
    portfolios: list[PortfolioSnapshot] = field(default_factory=list)
    controls: list[ControlEvent] = field(default_factory=list)
    cancels: int = 0
    undecodable: int = 0

    def decisions(self) -> dict[str, Decision]:
        """The recorded decisions keyed by intent id."""
        out: dict[str, Decision] = {}
        for intent_id, stored in self.intents.items():
            assert isinstance(stored.message, OrderIntent)
            out[intent_id] = decision_of(stored.message, verdict_text(self.answers.get(intent_id)))
        return out


@dataclass
class ReplayOutcome:
    """The replayed decisions, the intents per book (for publishing), cancels and what to be wary of."""

    decisions: dict[str, Decision] = field(default_factory=dict)
    intents: dict[str, OrderIntent] = field(default_factory=dict)  # by book id
    cancels: int = 0
    warnings: list[str] = field(default_factory=list)


def book_of(stored: Stored) -> BookSnapshot:
    assert isinstance(stored.message, BookSnapshot)
    return stored.message


def _timeline(recording: Recording, initial: Sequence[PortfolioSnapshot]) -> list[tuple[int, int, Message]]:
    # State changes sort before a book of the same nanosecond: the book is decided on what was known.
    events: list[tuple[int, int, Message]] = [(s.ts_ns, 0, s) for s in (*initial, *recording.portfolios)]
    events += [(c.ts_ns, 0, c) for c in recording.controls]
    events += [(e.message.ts_ns, 0, e.message) for e in recording.executions]
    events += [(book_of(b).received_ts_ns, 1, b.message) for b in recording.books]
    return sorted(events, key=lambda e: (e[0], e[1]))


def replay_decisions(
    recording: Recording,
    params: ProfitParams,
    symbols: tuple[str, ...],
    account: str,
    limits: RiskLimits,
    rules: RulesBook,
    *,
    assume_flat: bool = False,
) -> ReplayOutcome:
    """Run strategy and risk over the recording; the clock is each book's receive time (an event's own ts)."""
    outcome = ReplayOutcome()
    if not recording.books:
        return outcome
    start = book_of(recording.books[0]).received_ts_ns
    account_snapshots = [p for p in recording.portfolios if p.account == account]
    initial: list[PortfolioSnapshot] = []
    if not any(p.ts_ns <= start for p in account_snapshots):
        if assume_flat:
            initial.append(_flat_portfolio(account, start - 1))
            outcome.warnings.append("no portfolio snapshot before the range: started flat (--assume-flat)")
        elif params.require_portfolio:
            outcome.warnings.append(
                "no portfolio snapshot before the range (PORTFOLIO keeps only the latest): the strategy holds "
                "until one arrives; --assume-flat starts from an empty portfolio"
            )
    if not any(c.ts_ns <= start for c in recording.controls):
        outcome.warnings.append("no control event before the range: assumed mode NORMAL, kill switch released")
    unsigned = [c.id for c in recording.controls if isinstance(c, ModeChanged | KillSwitch) and not c.signature]
    if unsigned:
        # Replay holds no keys: it applies every event, where live risk treated an unsigned one as unreadable.
        outcome.warnings.append(
            f"{len(unsigned)} unsigned control event(s) applied here that live risk refused (CONTROL_UNREADABLE):"
            f" {', '.join(unsigned[:3])}"
        )
    engine = ProfitV1(symbols, params)
    risk = RiskState(account)
    risk.set_rules(rules, start)
    for ts, _, message in _timeline(recording, initial):
        if isinstance(message, BookSnapshot):
            _on_book(message, engine, risk, limits, outcome)
        elif isinstance(message, PortfolioSnapshot):
            if message.account == account:
                engine.on_portfolio(message)
                risk.on_portfolio(message)
        elif isinstance(message, ModeChanged):
            # Recorded in stream order: sequence 0 applies each in turn (the automatic mode as it was published).
            risk.apply_control(subjects.CONTROL_AUTO if message.source == "auto" else subjects.CONTROL_MODE, 0, message)
        elif isinstance(message, KillSwitch):
            risk.apply_control(subjects.CONTROL_KILL, 0, message)
        elif isinstance(message, OrderAccepted):
            engine.on_accepted(message)
        elif isinstance(message, OrderRejected):
            engine.on_rejected(message, ts)
        elif isinstance(message, OrderCanceled):
            engine.on_canceled(message, ts)
        elif isinstance(message, OrderFilled):
            engine.on_filled(message, ts)
    return outcome


def _on_book(book: BookSnapshot, engine: ProfitV1, risk: RiskState, limits: RiskLimits, out: ReplayOutcome) -> None:
    now = book.received_ts_ns
    risk.on_book(book)
    decision = engine.on_book(book, now)
    if isinstance(decision, Hold):
        return
    if isinstance(decision, CancelOrder):
        out.cancels += 1
        return
    verdict = check(decision, risk.view(), limits, now)
    if isinstance(verdict, Approved):
        out.decisions[decision.id] = decision_of(decision, "approved")
    else:
        out.decisions[decision.id] = decision_of(decision, f"denied:{verdict.reason}")
        # The live strategy hears of the denial from risk; the replay's own risk answers here.
        denial = OrderDenied(
            id=ids.denied_id(decision.id),
            ts_ns=now,
            intent_id=decision.id,
            strategy=decision.strategy,
            symbol=decision.symbol,
            reason=verdict.reason,
            detail=verdict.detail,
        )
        engine.on_denied(denial, now)
    out.intents[book.id] = decision


def _flat_portfolio(account: str, ts_ns: int) -> PortfolioSnapshot:
    zero = Decimal(0)
    return PortfolioSnapshot(
        id=f"replay-flat:{account}:{ts_ns}",
        ts_ns=ts_ns,
        account=account,
        quote_asset="",
        balances=(),
        positions=(),
        exposure=zero,
        realized_pnl=zero,
        unrealized_pnl=zero,
        fees=zero,
        equity=zero,
        peak_equity=zero,
        drawdown=zero,
        fills=0,
    )
