"""`btcbot replay`: re-run strategy and risk over a recorded range of the market and diff their decisions.

This module is the I/O half (selection, loading, publishing, output); the pure half is `btcbot.cli.decisions`.

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
import sys
import time
import typing
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec

from btcbot.cli.decisions import (
    REPLAY_OF,
    REPLAY_TRACEPARENT,
    Decision,
    DiffRow,
    ExecutionEvent,
    Recording,
    ReplayError,
    ReplayOutcome,
    Stored,
    book_of,
    count_statuses,
    diff_decisions,
    override_params,
    permissive_rules,
    replay_decisions,
)
from btcbot.cli.natsconfig import cli_auth
from btcbot.contracts import ids, subjects
from btcbot.contracts.codec import encode
from btcbot.contracts.messages import (
    BookSnapshot,
    CancelOrder,
    KillSwitch,
    Message,
    ModeChanged,
    OrderDenied,
    OrderIntent,
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
from btcbot.risk.limits import RiskLimits
from btcbot.risk.rules import SymbolRules
from btcbot.strategy.signals import STRATEGY, ProfitParams

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
    book_ids = {book_of(b).id for b in rec.books}
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
    end = book_of(rec.books[-1]).received_ts_ns if rec.books else 0
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
        book = book_of(stored)
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
    books = [book_of(b) for b in recording.books]
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
        print(f"btcbot replay: {exc}", file=sys.stderr)
        return 2
    try:
        nc = await connect(nats_url, "btcbot-replay", 10, reconnect_forever=False, auth=cli_auth(os.environ, "reader"))
    except DependencyUnavailable as exc:
        print(f"btcbot replay: {exc} (check NATS_URL)", file=sys.stderr)
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
