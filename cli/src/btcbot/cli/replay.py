"""`btcbot replay`: re-run strategy and risk over a recorded range of the market and diff their decisions.

The recorded books of a MARKET range are fed, in time order with the recorded execution events, portfolio
snapshots and control events, to a fresh `ProfitV1` and each intent it produces goes through risk's pure
`check`: the very code the services run, with the clock set to each book's recorded receive time. The
replayed decisions are compared with the recorded ones (INTENTS, and their SubmitOrder or OrderDenied in
ORDERS) by intent id, which is derived from the book, so the match is exact.

What the replay cannot know, it says in `warnings`: PORTFOLIO and CONTROL keep only their latest message per
subject, so earlier snapshots and switches are gone; there is no exchange in the replay, so an order the
recording never placed gets no execution events (the strategy forgets it after its intent timeout); the
exchange rules are today's (or a snapshot's), not those of the recorded day.

With `--publish-prefix PFX` the books (and the replay's intents) are also published under `PFX.` into a
stream `REPLAY_PFX`, each with `Btcbot-Replay-Of: STREAM:SEQUENCE` of its original, for a copy of the
pipeline to consume.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
import typing
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Literal

import msgspec

from btcbot.contracts import ids, subjects
from btcbot.contracts.codec import encode
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
from btcbot.contracts.streams import (
    ALL_STREAMS,
    CONTROL,
    DAY,
    EXECUTION,
    INTENTS,
    MARKET,
    ORDERS,
    PORTFOLIO,
    StreamSpec,
)
from btcbot.risk.control import RiskState
from btcbot.risk.limits import Approved, RiskLimits, check
from btcbot.risk.rules import RulesBook, SymbolRules
from btcbot.strategy.signals import STRATEGY, Hold, ProfitParams, ProfitV1

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


def _book(stored: Stored) -> BookSnapshot:
    assert isinstance(stored.message, BookSnapshot)
    return stored.message


def _timeline(recording: Recording, initial: Sequence[PortfolioSnapshot]) -> list[tuple[int, int, Message]]:
    # State changes sort before a book of the same nanosecond: the book is decided on what was known.
    events: list[tuple[int, int, Message]] = [(s.ts_ns, 0, s) for s in (*initial, *recording.portfolios)]
    events += [(c.ts_ns, 0, c) for c in recording.controls]
    events += [(e.message.ts_ns, 0, e.message) for e in recording.executions]
    events += [(_book(b).received_ts_ns, 1, b.message) for b in recording.books]
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
    start = _book(recording.books[0]).received_ts_ns
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
            risk.on_mode(message)
        elif isinstance(message, KillSwitch):
            risk.on_kill(message)
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


# -- selection and loading (I/O) ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Selection:
    """Which books to replay: a sequence range of MARKET and/or a receive-time range, and symbols."""

    from_seq: int = 1
    to_seq: int | None = None
    since_ns: int | None = None
    until_ns: int | None = None
    symbols: tuple[str, ...] = ()

    def wants(self, book: BookSnapshot) -> bool:
        """True if this stored book is inside the selection."""
        if self.symbols and book.symbol not in self.symbols:
            return False
        if self.since_ns is not None and book.received_ts_ns < self.since_ns:
            return False
        return self.until_ns is None or book.received_ts_ns <= self.until_ns

    def past_end(self, sequence: int, book: BookSnapshot) -> bool:
        """True once the stream has moved beyond the selection (books are stored in receive order)."""
        if self.to_seq is not None and sequence > self.to_seq:
            return True
        return self.until_ns is not None and book.received_ts_ns > self.until_ns


def parse_time(text: str) -> int:
    """An ISO 8601 time (with offset, or UTC if none) as ns since the epoch."""
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ReplayError(f"not an ISO time: {text!r} (e.g. 2025-01-31T12:00:00Z)") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp()) * 1_000_000_000 + moment.microsecond * 1000


ReadStream = Callable[[str, int, str], Any]  # (stream, start_seq, subject) -> async iterator of StoredMessage


async def load_recording(read: ReadStream, selection: Selection, account: str) -> Recording:
    """Read the selected books and every recorded message that belongs to them."""
    rec = Recording()
    subject = f"md.book.{selection.symbols[0]}" if len(selection.symbols) == 1 else "md.book.*"
    async with contextlib.aclosing(read(MARKET.name, max(1, selection.from_seq), subject)) as market:
        async for stored in market:
            message = _decode(stored.data, rec)
            if not isinstance(message, BookSnapshot):
                continue
            if selection.past_end(stored.sequence, message):
                break
            if selection.wants(message):
                rec.books.append(_stored(stored, message))
    book_ids = {_book(b).id for b in rec.books}
    async for stored in read(INTENTS.name, 1, "intent.*"):
        message = _decode(stored.data, rec)
        if isinstance(message, OrderIntent) and message.strategy == STRATEGY and message.book_id in book_ids:
            rec.intents[message.id] = _stored(stored, message)
    client_ids = {ids.client_order_id(i) for i in rec.intents}
    async for stored in read(ORDERS.name, 1, ">"):
        message = _decode(stored.data, rec)
        if isinstance(message, SubmitOrder | OrderDenied) and message.intent_id in rec.intents:
            rec.answers.setdefault(message.intent_id, message)
        elif isinstance(message, CancelOrder) and message.client_order_id in client_ids:
            rec.cancels += 1
    async for stored in read(EXECUTION.name, 1, ">"):
        message = _decode(stored.data, rec)
        if isinstance(message, ExecutionEvent) and message.client_order_id in client_ids:
            rec.executions.append(_stored(stored, message))
    end = _book(rec.books[-1]).received_ts_ns if rec.books else 0
    async for stored in read(PORTFOLIO.name, 1, subjects.portfolio(account)):
        message = _decode(stored.data, rec)
        if isinstance(message, PortfolioSnapshot) and message.ts_ns <= end:
            rec.portfolios.append(message)
    async for stored in read(CONTROL.name, 1, ">"):
        message = _decode(stored.data, rec)
        if isinstance(message, ModeChanged | KillSwitch) and message.ts_ns <= end:
            rec.controls.append(message)
    return rec


def _decode(data: bytes, rec: Recording) -> Message | None:
    from btcbot.contracts.codec import decode

    try:
        return decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError):
        rec.undecodable += 1
        return None


def _stored(raw: Any, message: Message) -> Stored:
    return Stored(raw.stream, raw.sequence, message, raw.headers.get("traceparent", ""))


def rules_from_file(path: Path) -> dict[str, SymbolRules]:
    """Rules from a saved exchangeinfo answer (`curl .../api/v2/server/exchangeinfo > rules.json`)."""
    from btcbot.btcturk.errors import BtcTurkError
    from btcbot.btcturk.parse import parse_exchange_info
    from btcbot.risk.rules import rules_from_exchange

    try:
        raw = json.loads(path.read_text())
        data = raw.get("data", raw) if isinstance(raw, dict) else raw
        return rules_from_exchange(parse_exchange_info(data).symbols)
    except (OSError, ValueError, BtcTurkError) as exc:
        raise ReplayError(f"--rules {path}: {exc}") from exc


async def rules_from_exchange_url(url: str) -> dict[str, SymbolRules]:
    """Rules from a live exchangeinfo (BTCTurk or the simulator)."""
    from btcbot.btcturk.errors import BtcTurkError
    from btcbot.btcturk.rest import BtcTurkClient
    from btcbot.risk.rules import rules_from_exchange

    client = BtcTurkClient(url, timeout=10.0, auto_sync_clock=False)
    try:
        return rules_from_exchange((await client.exchange_info()).symbols)
    except BtcTurkError as exc:
        raise ReplayError(f"--rules-from-exchange {url}: {exc}") from exc
    finally:
        await client.aclose()


# -- publishing into an isolated prefix (I/O) ----------------------------------------------------------------

_TAKEN_PREFIXES = frozenset(s.split(".", 1)[0] for spec in ALL_STREAMS for s in spec.subjects)


def replay_stream(prefix: str) -> StreamSpec:
    """The stream a replay under `prefix` publishes into (its own subjects, kept a day)."""
    if not prefix.replace("_", "").replace("-", "").isalnum() or prefix in _TAKEN_PREFIXES:
        raise ReplayError(f"--publish-prefix {prefix!r}: use letters, digits, - or _, and not one of the live roots")
    return StreamSpec(f"REPLAY_{prefix}", (f"{prefix}.>",), "an incident replay's books and intents", max_age=DAY)


class JetStreamLike(typing.Protocol):
    """The part of a JetStream context that publishing a replay uses."""

    async def publish(
        self,
        subject: str,
        payload: bytes = b"",
        timeout: float | None = None,
        stream: str | None = None,
        headers: dict[str, Any] | None = None,
    ) -> Any:
        """Publish and wait for the stream's ack."""
        ...


async def publish_replay(
    js: JetStreamLike,
    prefix: str,
    recording: Recording,
    outcome: ReplayOutcome,
    speed: float,
    run_id: str,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> int:
    """Publish the books and the replay's intents under `prefix`, paced by `speed` (0: at once); returns count."""
    published = 0
    previous: int | None = None
    for stored in recording.books:
        book = _book(stored)
        if speed > 0 and previous is not None:
            await sleep(max(0.0, (book.received_ts_ns - previous) / 1e9 / speed))
        previous = book.received_ts_ns
        await _publish(js, f"{prefix}.{subjects.book(book.symbol)}", book, stored, run_id)
        published += 1
        intent = outcome.intents.get(book.id)
        if intent is not None:
            # Linked to the recorded intent when there was one, else to the book it was decided on.
            origin = recording.intents.get(intent.id, stored)
            await _publish(js, f"{prefix}.{subjects.intent(intent.symbol)}", intent, origin, run_id)
            published += 1
    return published


async def _publish(js: JetStreamLike, subject: str, message: Message, origin: Stored, run_id: str) -> None:
    headers = {"Nats-Msg-Id": f"replay:{run_id}:{message.id}", REPLAY_OF: f"{origin.stream}:{origin.sequence}"}
    if origin.traceparent:
        headers[REPLAY_TRACEPARENT] = origin.traceparent
    await js.publish(subject, encode(message), headers=headers)


# -- the command -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReplayOptions:
    """Everything `btcbot replay` was asked to do."""

    selection: Selection
    params: tuple[str, ...] = ()
    rules_file: Path | None = None
    rules_url: str | None = None
    assume_flat: bool = False
    publish_prefix: str | None = None
    speed: float = 0.0
    json_lines: bool = False


def strategy_setup(
    symbols: tuple[str, ...] | None, overrides: Sequence[str]
) -> tuple[ProfitParams, tuple[str, ...], str]:
    """Params, symbols and account as the strategy service would read them (STRATEGY_*, BTCBOT_*)."""
    from btcbot.runtime.settings import load_settings
    from btcbot.strategy.settings import StrategySettings

    settings = load_settings(StrategySettings)
    return override_params(settings.params(), overrides), symbols or settings.symbols, settings.account


def risk_limits() -> RiskLimits:
    """RISK_* limits as the risk service reads them (its exchange credentials are not needed here)."""
    from pydantic import SecretStr

    from btcbot.risk.settings import RiskSettings
    from btcbot.runtime.settings import load_settings

    class ReplayRiskSettings(RiskSettings):
        btcturk_api_key: str = "unused-by-replay"
        btcturk_api_secret: SecretStr = SecretStr("unused-by-replay")

    return load_settings(ReplayRiskSettings).limits()


def render_table(rows: Sequence[DiffRow]) -> str:
    """The diff as a readable table: one line per intent."""
    lines = [f"{'status':<14}{'side':<6}{'price':>16}{'quantity':>16}  {'verdict':<24}intent"]
    for row in rows:
        shown = row.replayed or row.recorded
        assert shown is not None
        verdict = shown.verdict
        if row.recorded and row.replayed and row.recorded.verdict != row.replayed.verdict:
            verdict = f"{row.recorded.verdict}->{row.replayed.verdict}"
        price = str(shown.price)
        quantity = str(shown.quantity)
        if row.recorded and row.replayed:
            if "price" in row.fields:
                price = f"{row.recorded.price}->{row.replayed.price}"
            if "quantity" in row.fields:
                quantity = f"{row.recorded.quantity}->{row.replayed.quantity}"
        lines.append(f"{row.status:<14}{shown.side:<6}{price:>16}{quantity:>16}  {verdict:<24}{row.intent_id}")
    return "\n".join(lines)


def row_json(row: DiffRow) -> dict[str, Any]:
    """A diff row as a JSON-friendly dict."""

    def side(d: Decision | None) -> dict[str, Any] | None:
        if d is None:
            return None
        return {
            "side": d.side,
            "price": None if d.price is None else str(d.price),
            "quantity": str(d.quantity),
            "verdict": d.verdict,
        }

    return {
        "intent_id": row.intent_id,
        "status": row.status,
        "fields": list(row.fields),
        "recorded": side(row.recorded),
        "replayed": side(row.replayed),
    }


def summary(
    recording: Recording, outcome: ReplayOutcome, rows: Sequence[DiffRow], rules_source: str, published: int | None
) -> dict[str, Any]:
    """The one-line JSON summary of a replay."""
    books = [_book(b) for b in recording.books]
    out: dict[str, Any] = {
        "books": len(books),
        "market_seq": [recording.books[0].sequence, recording.books[-1].sequence] if books else None,
        "received_ns": [books[0].received_ts_ns, books[-1].received_ts_ns] if books else None,
        "recorded": len(recording.intents),
        "replayed": len(outcome.decisions),
        **count_statuses(rows),
        "cancels": {"recorded": recording.cancels, "replayed": outcome.cancels},
        "rules": rules_source,
        "warnings": outcome.warnings,
    }
    if recording.undecodable:
        out["undecodable"] = recording.undecodable
    if published is not None:
        out["published"] = published
    return out


async def run_replay(options: ReplayOptions, nats_url: str) -> int:
    """Load, replay, diff, print; exit 0 when every decision is the same, 1 when any differs, 2 on bad input."""
    from btcbot.runtime.errors import DependencyUnavailable, SettingsError
    from btcbot.runtime.inspect import read_stream
    from btcbot.runtime.jetstream import connect, provision

    try:
        params, symbols, account = strategy_setup(options.selection.symbols or None, options.params)
        limits = risk_limits()
        if options.publish_prefix is not None:
            replay_stream(options.publish_prefix)
        if options.rules_file is not None:
            rules, source = rules_from_file(options.rules_file), f"file:{options.rules_file}"
        elif options.rules_url is not None:
            rules, source = await rules_from_exchange_url(options.rules_url), f"exchange:{options.rules_url}"
        else:
            rules, source = permissive_rules(symbols), "skipped"
    except (ReplayError, SettingsError) as exc:
        print(f"btcbot replay: {exc}")
        return 2
    try:
        nc = await connect(nats_url, "btcbot-replay", 10, reconnect_forever=False)
    except DependencyUnavailable as exc:
        print(f"btcbot replay: {exc}")
        return 2
    try:
        js = nc.jetstream()

        def read(stream: str, start: int, subject: str) -> Any:
            return read_stream(js, stream, start, subject)

        recording = await load_recording(read, options.selection, account)
        outcome = replay_decisions(recording, params, symbols, account, limits, rules, assume_flat=options.assume_flat)
        if source == "skipped":
            outcome.warnings.append("no exchange rules given: exchange rule checks skipped (our limits still apply)")
        published = None
        if options.publish_prefix is not None:
            await provision(js, [replay_stream(options.publish_prefix)])
            run_id = str(time.time_ns())
            published = await publish_replay(js, options.publish_prefix, recording, outcome, options.speed, run_id)
    finally:
        await nc.close()
    rows = diff_decisions(recording.decisions(), outcome.decisions)
    if options.json_lines:
        for row in rows:
            print(json.dumps(row_json(row)))
    else:
        print(render_table(rows))
    print(json.dumps(summary(recording, outcome, rows, source, published)))
    counts = count_statuses(rows)
    return 0 if counts["same"] == len(rows) else 1


def options_from_args(args: Any) -> ReplayOptions:
    """ReplayOptions from parsed `btcbot replay` arguments."""
    symbols = tuple(s.strip().upper() for s in (args.symbols or "").split(",") if s.strip())
    if args.speed < 0:
        raise ReplayError("--speed must be 0 (full speed) or positive")
    selection = Selection(
        from_seq=args.from_seq,
        to_seq=args.to_seq,
        since_ns=parse_time(args.since) if args.since else None,
        until_ns=parse_time(args.until) if args.until else None,
        symbols=symbols,
    )
    return ReplayOptions(
        selection=selection,
        params=tuple(args.params or ()),
        rules_file=args.rules,
        rules_url=args.rules_from_exchange,
        assume_flat=args.assume_flat,
        publish_prefix=args.publish_prefix,
        speed=args.speed,
        json_lines=args.json,
    )


def run_from_args(args: Any) -> int:
    """`btcbot replay` entry point."""
    try:
        options = options_from_args(args)
    except ReplayError as exc:
        print(f"btcbot replay: {exc}")
        return 2
    return asyncio.run(run_replay(options, args.nats_url or os.environ.get("NATS_URL", "nats://127.0.0.1:4222")))
