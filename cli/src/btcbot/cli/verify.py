"""`btcbot verify`: does what the exchange did match what execution and the ledger recorded?

Evidence comes from four places: the simulator's record of the account (GET /sim/state: every order with its
client id, every trade, balances), the EXECUTION stream (OrderAccepted / OrderRejected / OrderCanceled /
OrderFilled), the INTENTS and ORDERS streams (what was asked for), the ledger's Postgres tables (fills,
balances) and execution's order claims in Redis. :func:`compare` is pure; the rest fetches.

Printed as one JSON line; the exit code is 1 when any count in :data:`PROBLEMS` is not zero:

    duplicate_orders     orders at the exchange beyond the first for one client order id
    unrecorded_orders    exchange orders whose client id execution never reported accepted
    missing_fills        exchange trades of the account that the ledger has not booked
    missing_fill_events  exchange trades without an OrderFilled event
    extra_fills          ledger fills or OrderFilled events for trades the exchange does not have, and ledger
                         fills booked more than once
    fill_mismatches      ledger fills whose order, side, price or quantity differ from the exchange's trade
    orders_in_flight     claims stuck in "sending", or orders execution still thinks open (by its events or
                         its claim) that the exchange reports closed, canceled or never had
    balance_mismatches   assets whose ledger balance differs from the exchange's total
    lost_intents         intents that became neither a SubmitOrder nor an OrderDenied
    unresolved_orders    SubmitOrders that ended neither accepted nor rejected
    halted_symbols       symbols whose ledger position is frozen by an integrity halt (an oversell)
    quarantined_fills    fills the ledger holds, unbooked, because it does not know their order
    leaked_reservations  risk reservations (docs/risk.md) of orders risk still thinks open (no terminal event
                         reached it) although the exchange reports them closed, canceled or never had them: they
                         would hold budget and open-order slots for nothing

Also reported (not problems): `reserved_orders` and `reserved_exposure`, what risk's reservations still hold
per symbol after the run: an order resting at the exchange keeps its reservation, and a finished one counts
until the ledger's newest snapshot covers how it ended (both by design).

A halt or a held fill means the books are not known to be right, so the run is not clean even when every
trade matched. Messages that cannot be read as a record (undecodable, or money fields that are not money, e.g. a
NaN or 10^400 fill) are left out of the comparison and counted as `bad_messages` with their stream and sequence:
the services dead-letter them, so they changed nothing; they are reported, but do not fail the verdict (a
forged message would otherwise fail every verify for as long as the stream keeps it). A trade they hide still
shows, as a missing fill event or a missing ledger fill.

Trades are matched per (symbol, trade id, exchange order id): when two of our orders match each other the
exchange lists one trade id twice, once per order, and each side must be booked (`self_matched_trades` counts
those trade ids).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
import urllib.parse
import urllib.request
from collections import Counter, defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import msgspec

from btcbot.cli.natsconfig import run_file_auth
from btcbot.contracts.codec import decode
from btcbot.contracts.messages import (
    Message,
    OrderAccepted,
    OrderCanceled,
    OrderDenied,
    OrderFilled,
    OrderIntent,
    OrderRejected,
    PortfolioSnapshot,
    SubmitOrder,
)
from btcbot.runtime.jetstream import NatsAuth, nats_auth_from_env
from btcbot.runtime.sanity import money_problem

PROBLEMS = (
    "duplicate_orders",
    "unrecorded_orders",
    "missing_fills",
    "missing_fill_events",
    "extra_fills",
    "fill_mismatches",
    "orders_in_flight",
    "balance_mismatches",
    "lost_intents",
    "unresolved_orders",
    "halted_symbols",
    "quarantined_fills",
    "leaked_reservations",
)
CLOSED_AT_EXCHANGE = frozenset({"Canceled", "Closed"})
TERMINAL_CLAIM_STATUSES = frozenset({"filled", "canceled", "rejected"})
EXAMPLES = 5  # ids listed per problem, so a failure says where to look


class VerifyError(Exception):
    """An input is missing or a source cannot be read."""


@dataclass(frozen=True)
class Sources:
    """Where the records are; `redis_url` empty skips the claim checks."""

    sim_url: str
    api_key: str
    nats_url: str
    database_url: str
    redis_url: str = ""
    key_prefix: str = "btcbot"
    account: str = "main"
    since_ns: int = 0
    # The simulator's admin token (/sim/state needs it): run.json's sim_admin_token or SIM_ADMIN_TOKEN.
    sim_admin_token: str = ""
    nats_auth: NatsAuth | None = None  # the reader identity (environment, else the run file)
    # Redis behind Sentinel (REDIS_SENTINELS, REDIS_SENTINEL_MASTER): the master is asked for, as the services do.
    redis_sentinels: tuple[tuple[str, int], ...] = ()
    redis_sentinel_master: str = ""
    # On a live run, intents and submits younger than this are still in flight: counted as pending, not lost.
    in_flight_ns: int = 0

    def redis(self, **options: Any) -> Any:
        """A client of this deployment's Redis (its master, with Sentinel)."""
        from btcbot.runtime.redisconn import connect

        return connect(
            self.redis_url, sentinels=self.redis_sentinels, master=self.redis_sentinel_master, timeout_s=5, **options
        )


@dataclass(frozen=True)
class LedgerFill:
    """One row of the ledger's fills table, as compared."""

    symbol: str
    trade_id: str
    client_order_id: str
    side: str
    price: Decimal
    quantity: Decimal
    exchange_order_id: str

    @property
    def key(self) -> tuple[str, str, str]:
        """One order's side of an exchange trade."""
        return (self.symbol, self.trade_id, self.exchange_order_id)


@dataclass
class Evidence:
    """Everything compared, already fetched."""

    sim: Mapping[str, Any]
    messages: list[Message] = field(default_factory=list)
    ledger_fills: list[LedgerFill] = field(default_factory=list)
    ledger_balances: dict[str, Decimal] = field(default_factory=dict)
    claims: dict[str, dict[str, str]] | None = None  # client order id -> claim fields; None = not read
    bad_messages: list[str] = field(default_factory=list)  # "STREAM:seq why", left out of the comparison
    halted: dict[str, str] = field(default_factory=dict)  # symbol -> halt reason
    quarantined: list[str] = field(default_factory=list)  # "id:client order id:trade id" of open holds
    reservations: Mapping[str, Any] | None = None  # risk's reservation summary; None = not read
    snapshot_exec_seq: int = 0  # the newest portfolio snapshot's EXECUTION watermark
    young_after_ns: int = 0  # intents and submits stamped after this are in flight (0: none is)


def compare(evidence: Evidence) -> dict[str, Any]:
    """The verdict: the counts of :data:`PROBLEMS`, context counts, and a few example ids per problem."""
    sim_orders: list[Mapping[str, Any]] = list(evidence.sim.get("orders", []))
    sim_trades: list[Mapping[str, Any]] = list(evidence.sim.get("trades", []))
    by_type: dict[type[Message], list[Any]] = defaultdict(list)
    for message in evidence.messages:
        by_type[type(message)].append(message)
    examples: dict[str, list[str]] = {}

    def note(problem: str, ids: list[str]) -> int:
        if ids:
            examples[problem] = sorted(ids)[:EXAMPLES]
        return len(ids)

    placed = Counter(str(o.get("clientId") or "") for o in sim_orders)
    placed.pop("", None)
    duplicates = [coid for coid, n in placed.items() for _ in range(n - 1)]

    accepted = {m.client_order_id for m in by_type[OrderAccepted]}
    rejected = {m.client_order_id for m in by_type[OrderRejected]}
    unrecorded = [coid for coid in placed if coid not in accepted]

    trades = {(str(t["pair"]), str(t["tradeId"]), str(t["orderId"])): t for t in sim_trades}
    self_matched = Counter((s, t) for s, t, _ in trades)
    ledger = {f.key: f for f in evidence.ledger_fills}
    booked = Counter(f.key for f in evidence.ledger_fills)
    fill_events = {(m.symbol, m.trade_id, m.exchange_order_id) for m in by_type[OrderFilled]}
    missing = [_name(k) for k in trades if k not in ledger]
    missing_events = [_name(k) for k in trades if k not in fill_events]
    extra = [f"ledger {_name(k)}" for k in ledger if k not in trades]
    extra += [f"ledger twice {_name(k)}" for k, n in booked.items() for _ in range(n - 1)]
    extra += [f"event {_name(k)}" for k in fill_events if k not in trades]
    mismatched = [_name(key) for key, f in ledger.items() if key in trades and not _same(f, trades[key])]

    in_flight = _in_flight(sim_orders, by_type, evidence.claims)
    reserved, leaked = _reservations(sim_orders, evidence.reservations, evidence.snapshot_exec_seq)

    sim_balances = {a: Decimal(str(b["total"])) for a, b in evidence.sim.get("balances", {}).items()}
    assets = set(sim_balances) | set(evidence.ledger_balances)
    zero = Decimal(0)
    balance_diffs = [
        f"{a}: exchange {sim_balances.get(a, zero)} ledger {evidence.ledger_balances.get(a, zero)}"
        for a in assets
        if sim_balances.get(a, zero) != evidence.ledger_balances.get(a, zero)
    ]

    submitted = {m.intent_id for m in by_type[SubmitOrder]}
    denied = {m.intent_id for m in by_type[OrderDenied]}
    young = evidence.young_after_ns

    def in_flight_now(ts_ns: int) -> bool:
        return bool(young) and ts_ns > young

    unanswered = [m for m in by_type[OrderIntent] if m.id not in submitted and m.id not in denied]
    lost = [m.id for m in unanswered if not in_flight_now(m.ts_ns)]
    submits = {m.client_order_id for m in by_type[SubmitOrder]}
    open_submits = [m for m in by_type[SubmitOrder] if m.client_order_id not in accepted | rejected]
    unresolved = sorted({m.client_order_id for m in open_submits if not in_flight_now(m.ts_ns)})

    verdict: dict[str, Any] = {
        "duplicate_orders": note("duplicate_orders", duplicates),
        "unrecorded_orders": note("unrecorded_orders", unrecorded),
        "missing_fills": note("missing_fills", missing),
        "missing_fill_events": note("missing_fill_events", missing_events),
        "extra_fills": note("extra_fills", extra),
        "fill_mismatches": note("fill_mismatches", mismatched),
        "orders_in_flight": note("orders_in_flight", in_flight),
        "balance_mismatches": note("balance_mismatches", balance_diffs),
        "lost_intents": note("lost_intents", lost),
        "unresolved_orders": note("unresolved_orders", unresolved),
        "halted_symbols": note("halted_symbols", [f"{s}: {r}" for s, r in evidence.halted.items()]),
        "quarantined_fills": note("quarantined_fills", list(evidence.quarantined)),
        "leaked_reservations": note("leaked_reservations", leaked),
        "bad_messages": note("bad_messages", list(evidence.bad_messages)),
        "reserved_orders": len(reserved),
        "reserved_exposure": dict((evidence.reservations or {}).get("reserved", {})) if reserved else {},
        "exchange_orders": len(sim_orders),
        "exchange_trades": len(sim_trades),
        "self_matched_trades": sum(1 for n in self_matched.values() if n > 1),
        "intents": len(by_type[OrderIntent]),
        # A live run's intents and orders too young to have an answer yet (not problems: --in-flight-s).
        "pending_intents": len(unanswered) - len(lost),
        "pending_orders": len({m.client_order_id for m in open_submits}) - len(unresolved),
        "submits": len(submits),
        "denied": len(denied),
        "accepted": len(accepted),
        "rejected": len(rejected),
        "canceled": len({m.client_order_id for m in by_type[OrderCanceled]}),
        "fill_events": len(fill_events),
        "ledger_fills": len(evidence.ledger_fills),
        "claims_checked": evidence.claims is not None,
    }
    verdict["ok"] = not any(verdict[p] for p in PROBLEMS)
    verdict["examples"] = examples
    return verdict


def _reservations(
    sim_orders: list[Mapping[str, Any]], summary: Mapping[str, Any] | None, exec_seq: int
) -> tuple[list[str], list[str]]:
    """Reservations that still count (open, or finished past the ledger's watermark) and those of them leaked."""
    if not summary:
        return [], []
    status = {str(o.get("clientId") or ""): str(o.get("status") or "") for o in sim_orders}
    counting = [
        o for o in summary.get("orders", []) if o.get("state") != "done" or int(o.get("done_seq") or 0) > exec_seq
    ]
    reserved = [f"{o['client_order_id']} {o['symbol']} {o['side']} {o['state']}" for o in counting]
    leaked = [
        f"{o['client_order_id']} {o['symbol']} {o['state']} (exchange: {status.get(o['client_order_id']) or 'none'})"
        for o in counting
        if o.get("state") != "done"
        and (status.get(o["client_order_id"], "") in CLOSED_AT_EXCHANGE or o["client_order_id"] not in status)
    ]
    return reserved, leaked


def _name(key: tuple[str, str, str]) -> str:
    return ":".join(key)


def _same(fill: LedgerFill, trade: Mapping[str, Any]) -> bool:
    return (
        fill.client_order_id == str(trade.get("clientId") or fill.client_order_id)
        and fill.side == str(trade.get("side", fill.side)).lower()
        and fill.price == Decimal(str(trade["price"]))
        and fill.quantity == abs(Decimal(str(trade["amount"])))
    )


def _in_flight(
    sim_orders: list[Mapping[str, Any]],
    by_type: Mapping[type[Message], list[Any]],
    claims: Mapping[str, Mapping[str, str]] | None,
) -> list[str]:
    """Client ids whose outcome execution has not settled although the exchange has (see the module doc)."""
    status_at_exchange = {str(o.get("clientId")): str(o.get("status")) for o in sim_orders if o.get("clientId")}
    stuck: set[str] = set()
    # Execution's view from its events: accepted, not yet canceled/rejected, not yet completely filled.
    filled: dict[str, Decimal] = defaultdict(Decimal)
    for fill in by_type.get(OrderFilled, []):
        filled[fill.client_order_id] += fill.quantity
    ended = {m.client_order_id for m in [*by_type.get(OrderCanceled, []), *by_type.get(OrderRejected, [])]}
    for acc in by_type.get(OrderAccepted, []):
        coid = acc.client_order_id
        complete = acc.order_type == "limit" and filled[coid] >= acc.quantity
        at_exchange = status_at_exchange.get(coid)
        # A market order may close short of its size: Closed with fills is settled.
        market_done = acc.order_type == "market" and at_exchange == "Closed" and filled[coid] > 0
        closed = at_exchange is None or at_exchange in CLOSED_AT_EXCHANGE
        if coid not in ended and not complete and not market_done and closed:
            stuck.add(coid)
    # Execution's view from its claims.
    for coid, fields in (claims or {}).items():
        if "status" not in fields:
            continue  # claimed, crashed before writing the order: nothing was sent
        state, status = fields.get("state", ""), fields["status"]
        at_exchange = status_at_exchange.get(coid)
        if state == "sending" or (
            state == "sent"
            and status not in TERMINAL_CLAIM_STATUSES
            and (at_exchange is None or at_exchange in CLOSED_AT_EXCHANGE)
        ):
            stuck.add(coid)
    return sorted(stuck)


# ---- fetching ----------------------------------------------------------------------------------


def sources_from(options: Mapping[str, str | None], env: Mapping[str, str]) -> Sources:
    """Sources from explicit options, else the run file (`--run-file`), else the environment."""
    run: dict[str, Any] = {}
    run_file = options.get("run_file")
    if run_file:
        path = Path(run_file)
        if not path.exists():
            raise VerifyError(f"run file {path} not found (written by `btcbot up` once its services are ready)")
        run = json.loads(path.read_text())

    def pick(option: str, run_key: str, env_key: str, default: str | None = None) -> str:
        value = options.get(option) or run.get(run_key) or env.get(env_key) or default
        if value is None:
            raise VerifyError(f"--{option.replace('_', '-')} (or {env_key}, or a --run-file) is needed")
        return str(value)

    since_ms = options.get("since_ms")
    in_flight = options.get("in_flight_s")
    return Sources(
        sim_url=pick("sim_url", "sim_url", "BTCTURK_BASE_URL"),
        api_key=pick("api_key", "api_key", "BTCTURK_API_KEY"),
        nats_url=pick("nats_url", "nats_url", "NATS_URL"),
        database_url=pick("database_url", "database_url", "DATABASE_URL"),
        redis_url=pick("redis_url", "redis_url", "REDIS_URL", ""),
        key_prefix=pick("key_prefix", "key_prefix", "BTCBOT_KEY_PREFIX", "btcbot"),
        account=pick("account", "account", "BTCBOT_ACCOUNT", "main"),
        since_ns=int(since_ms) * 1_000_000 if since_ms else 0,
        sim_admin_token=pick("sim_admin_token", "sim_admin_token", "SIM_ADMIN_TOKEN", ""),
        nats_auth=nats_auth_from_env(env) or run_file_auth(run, "reader"),
        redis_sentinels=_sentinels(env),
        redis_sentinel_master=env.get("REDIS_SENTINEL_MASTER", ""),
        in_flight_ns=int(float(in_flight) * 1e9) if in_flight else 0,
    )


def _sentinels(env: Mapping[str, str]) -> tuple[tuple[str, int], ...]:
    from btcbot.runtime.settings import parse_sentinels

    try:
        found = parse_sentinels(env.get("REDIS_SENTINELS", ""))
    except ValueError as exc:
        raise VerifyError(f"REDIS_SENTINELS: {exc}") from None
    if bool(found) != bool(env.get("REDIS_SENTINEL_MASTER")):
        raise VerifyError("REDIS_SENTINELS and REDIS_SENTINEL_MASTER must be set together")
    return found


async def gather(sources: Sources) -> Evidence:
    """Fetch every record `compare` needs."""
    sim = await asyncio.to_thread(_sim_state, sources.sim_url, sources.api_key, sources.sim_admin_token)
    account = sources.account if sources.redis_url else None
    messages, bad, exec_seq = await _nats_records(sources.nats_url, sources.since_ns, sources.nats_auth, account)
    evidence = Evidence(sim=sim, messages=messages, bad_messages=bad, snapshot_exec_seq=exec_seq)
    if sources.in_flight_ns:
        evidence.young_after_ns = time.time_ns() - sources.in_flight_ns
    evidence.ledger_fills, evidence.ledger_balances = await _ledger(sources.database_url)
    evidence.halted, evidence.quarantined = await _ledger_holds(sources.database_url)
    if sources.redis_url:
        prefix = f"{sources.key_prefix}:{sources.account}"
        evidence.claims = await _claims(sources, sources.key_prefix, sources.account)
        evidence.reservations = await _reservation_summary(sources, prefix)
    return evidence


async def run_verify(sources: Sources) -> int:
    """Print the verdict as one JSON line; 0 when nothing is wrong, 1 otherwise."""
    verdict = compare(await gather(sources))
    # A live run is read while it moves: an order that just closed at the exchange has its events still on the way
    # to execution, risk and the ledger. What is wrong stays wrong; what was in flight settles within seconds.
    deadline = time.monotonic() + sources.in_flight_ns / 1e9
    while not verdict["ok"] and time.monotonic() < deadline:
        await asyncio.sleep(2)
        verdict = compare(await gather(sources))
    print(json.dumps(verdict, sort_keys=False), flush=True)
    return 0 if verdict["ok"] else 1


def _sim_state(sim_url: str, api_key: str, admin_token: str = "") -> dict[str, Any]:
    url = f"{sim_url.rstrip('/')}/sim/state?{urllib.parse.urlencode({'apiKey': api_key})}"
    request = urllib.request.Request(url, headers={"X-Sim-Admin-Token": admin_token})  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310  (the simulator's admin URL)
            data: dict[str, Any] = json.loads(response.read())
    except (OSError, ValueError) as exc:
        raise VerifyError(f"cannot read the simulator's record at {sim_url}: {exc}") from exc
    return data


def read_record(stream: str, sequence: int, data: bytes) -> tuple[Message | None, str | None]:
    """One stored message as a record, or None and why it cannot be one (never raises on bad input)."""
    try:
        message = decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        return None, f"{stream}:{sequence} undecodable: {exc}"
    problem = money_problem(message)
    if problem is not None:
        return None, f"{stream}:{sequence} INVALID_MONEY: {type(message).__name__}.{problem}"
    return message, None


async def _stream_messages(
    nats_url: str, since_ns: int, auth: NatsAuth | None = None, account: str | None = None
) -> tuple[list[Message], list[str]]:
    """The records of INTENTS, ORDERS and EXECUTION (and bad messages counted, never raised)."""
    messages, bad, _exec_seq = await _nats_records(nats_url, since_ns, auth, account)
    return messages, bad


async def _nats_records(
    nats_url: str, since_ns: int, auth: NatsAuth | None, account: str | None
) -> tuple[list[Message], list[str], int]:
    """One connection for everything verify reads from NATS: the records, and (with `account`) the EXECUTION
    watermark of the account's newest portfolio snapshot (0 when there is none)."""
    from btcbot.contracts import subjects
    from btcbot.contracts.streams import PORTFOLIO
    from btcbot.runtime.inspect import read_stream
    from btcbot.runtime.jetstream import connect
    from btcbot.runtime.latest import last_per_subject

    nc = await connect(nats_url, "btcbot-verify", 10, reconnect_forever=False, auth=auth)
    try:
        js = nc.jetstream()
        found: list[Message] = []
        bad: list[str] = []
        for stream in ("INTENTS", "ORDERS", "EXECUTION"):
            async for stored in read_stream(js, stream, 1):
                message, why = read_record(stream, stored.sequence, stored.data)
                if message is None:
                    bad.append(str(why))
                elif message.ts_ns >= since_ns:
                    found.append(message)
        exec_seq = 0
        if account is not None:
            last = await last_per_subject(js, PORTFOLIO.name, (subjects.portfolio(account),), 1 << 62)
            for stored_snapshot in last.values():
                snapshot, _why = read_record(PORTFOLIO.name, stored_snapshot.sequence, stored_snapshot.data)
                if isinstance(snapshot, PortfolioSnapshot):
                    exec_seq = snapshot.exec_seq
        return found, bad, exec_seq
    finally:
        await nc.close()


async def _reservation_summary(sources: Sources, prefix: str) -> dict[str, Any]:
    from btcbot.runtime.errors import DependencyUnavailable
    from btcbot.runtime.reservations import RedisReservations

    client = sources.redis()
    try:
        return dict(await RedisReservations(client, prefix).summary())
    except DependencyUnavailable as exc:
        raise VerifyError(f"cannot read risk's reservations from Redis: {exc}") from exc
    finally:
        await client.aclose()


async def _ledger_holds(database_url: str) -> tuple[dict[str, str], list[str]]:
    """Halted symbols and the open quarantine (an older schema without the quarantine table has none)."""
    import asyncpg

    try:
        conn = await asyncpg.connect(database_url, timeout=10)
    except (OSError, asyncpg.PostgresError) as exc:
        raise VerifyError(f"cannot reach the ledger database: {exc}") from exc
    try:
        halts = await conn.fetch("SELECT symbol, halted_reason FROM positions WHERE halted_reason IS NOT NULL")
        held: list[asyncpg.Record] = []
        if await conn.fetchval("SELECT to_regclass('quarantined_fills') IS NOT NULL"):
            held = await conn.fetch(
                "SELECT id, client_order_id, trade_id FROM quarantined_fills WHERE resolved_at IS NULL ORDER BY id"
            )
    finally:
        await conn.close()
    return (
        {r["symbol"]: r["halted_reason"] for r in halts},
        [f"{r['id']}:{r['client_order_id']}:{r['trade_id']}" for r in held],
    )


async def _ledger(database_url: str) -> tuple[list[LedgerFill], dict[str, Decimal]]:
    import asyncpg

    try:
        conn = await asyncpg.connect(database_url, timeout=10)
    except (OSError, asyncpg.PostgresError) as exc:
        raise VerifyError(f"cannot reach the ledger database: {exc}") from exc
    try:
        rows = await conn.fetch(
            "SELECT symbol, trade_id, client_order_id, side, price, quantity, exchange_order_id FROM fills"
        )
        balances = await conn.fetch("SELECT asset, total FROM balances")
    finally:
        await conn.close()
    fills = [
        LedgerFill(
            r["symbol"],
            r["trade_id"],
            r["client_order_id"],
            r["side"],
            r["price"],
            r["quantity"],
            r["exchange_order_id"],
        )
        for r in rows
    ]
    return fills, {r["asset"]: r["total"] for r in balances}


async def _claims(sources: Sources, key_prefix: str, account: str) -> dict[str, dict[str, str]]:
    """Execution's order claims, through its read module (the key layout is execution's)."""
    from btcbot.execution.journal_reader import JournalReader
    from btcbot.runtime.errors import DependencyUnavailable
    from btcbot.runtime.redact import redact

    redis_url = sources.redis_url
    client = sources.redis(decode_responses=True)
    try:
        return await JournalReader(client, key_prefix, account).claims()
    except DependencyUnavailable as exc:
        where = redact(redis_url)
        raise VerifyError(f"cannot read execution's claims from Redis at {where} (REDIS_URL): {exc}") from exc
    finally:
        await client.aclose()


def main_options(args: Any) -> dict[str, str | None]:
    """The argparse namespace of `btcbot verify` as the options `sources_from` reads."""
    keys = ("run_file", "sim_url", "api_key", "nats_url", "database_url", "redis_url", "key_prefix", "account")
    options: dict[str, str | None] = {k: getattr(args, k, None) for k in keys}
    since = getattr(args, "since_ms", None)
    options["since_ms"] = None if since is None else str(since)
    in_flight = getattr(args, "in_flight_s", None)
    options["in_flight_s"] = None if in_flight is None else str(in_flight)
    return options


def run_from_args(args: Any) -> int:
    """Entry point used by `btcbot.cli.main`: exit 2 on a missing input or unreachable source."""
    try:
        sources = sources_from(main_options(args), os.environ)
        return asyncio.run(run_verify(sources))
    except VerifyError as exc:
        print(f"btcbot verify: {exc}", file=sys.stderr, flush=True)
        return 2
