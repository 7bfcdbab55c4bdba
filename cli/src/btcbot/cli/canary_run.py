"""`btcbot canary`, the shell: doctor, one capped order through risk and execution, the ledger's booking.

The canary publishes an `OrderIntent` (strategy `canary`) as its own NATS identity, so risk applies every check
and signs the `SubmitOrder`; it never publishes an order itself. It then watches ORDERS and EXECUTION for its
intent, cancels after the TTL if the order has not finished, and reads the ledger's fills of its client order id.
One line per step on stdout, then one JSON object; the exit code is the report's (canary.py).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import msgspec

from btcbot.cli.canary import (
    STRATEGY,
    OrderPlan,
    Outcome,
    Report,
    Step,
    arming_step,
    cap_step,
    ledger_step,
    mode_step,
    parse_cap,
)
from btcbot.cli.canary import plan_order as make_plan
from btcbot.cli.control import control_status
from btcbot.cli.doctor import DEFAULT_DATABASE_URL, doctor_checks
from btcbot.cli.natsconfig import cli_connect
from btcbot.contracts import ids, subjects
from btcbot.contracts.codec import decode
from btcbot.contracts.messages import BookSnapshot, CancelOrder, Message, OrderIntent, Side
from btcbot.contracts.streams import CONTROL, EXECUTION, MARKET, ORDERS, RISK_CONTROL
from btcbot.runtime.inspect import last_message, last_sequence, read_stream
from btcbot.runtime.jetstream import NatsPublisher
from btcbot.runtime.latest import last_per_subject

VERDICT_TIMEOUT = 20.0  # risk answers within a second on a healthy pipeline
EXCHANGE_TIMEOUT = 20.0
CANCEL_TIMEOUT = 20.0
LEDGER_TIMEOUT = 30.0
POLL = 0.5


@dataclass(frozen=True)
class CanaryOptions:
    """What `btcbot canary` was asked to do."""

    symbol: str
    notional: Decimal
    side: Side = "buy"
    ttl: float = 30.0
    max_book_age: float = 30.0


def env_from_run_file(env: Mapping[str, str], run_file: Path | None) -> dict[str, str]:
    """The environment against a `btcbot up` run: its servers, simulator and credentials. The run file was named
    on the command line, so what it says wins over the environment (which may point at other servers)."""
    from btcbot.cli.runs import load_run, merge_run

    return dict(env) if run_file is None else merge_run(env, load_run(run_file))


async def run_canary(env: Mapping[str, str], opts: CanaryOptions) -> int:
    """Run the steps, print the report, return the exit code."""
    report = Report(opts.symbol, opts.notional)
    try:
        await _steps(env, opts, report)
    except Exception as exc:  # a step that crashed is a failed step, reported like the others
        report.add(Step("error", False, f"{type(exc).__name__}: {exc}"))
        print(report.steps[-1].line(), flush=True)
    print(report.json(), flush=True)
    return report.exit_code()


def _say(report: Report, step: Step) -> bool:
    print(step.line(), flush=True)
    return report.add(step)


async def _steps(env: Mapping[str, str], opts: CanaryOptions, report: Report) -> None:
    try:
        cap = parse_cap(env)
    except ValueError as exc:
        report.refused = True
        _say(report, Step("cap", False, str(exc)))
        return
    base_url = env.get("BTCTURK_BASE_URL", "http://127.0.0.1:8800")
    for step in (cap_step(opts.notional, cap), arming_step(base_url, env)):
        if not _say(report, step):
            report.refused = True  # nothing has been sent
            return
    report.target = "live" if "LIVE" in report.steps[-1].detail else "simulator"
    checks = await doctor_checks(env)
    failed = [c for c in checks if not c.ok]
    detail = f"{len(checks)} checks passed" if not failed else "; ".join(f"{c.name}: {c.detail}" for c in failed)
    if not _say(report, Step("doctor", not failed, detail)):
        return
    nc = await cli_connect(env, "btcbot-canary", "canary")
    try:
        await _trade(nc.jetstream(), env, opts, report, base_url)
    finally:
        await nc.close()


async def _trade(js: Any, env: Mapping[str, str], opts: CanaryOptions, report: Report, base_url: str) -> None:
    skew_ns = int(float(env.get("BTCBOT_MAX_CLOCK_SKEW", "5")) * 1_000_000_000)
    stored = await last_per_subject(js, CONTROL.name, RISK_CONTROL.filter_subjects, skew_ns)
    if not _say(report, mode_step(control_status(stored), opts.side)):
        return
    book = await _last_book(js, opts.symbol)
    now = time.time_ns()
    if book is None:
        _say(report, Step("book", False, f"no book of {opts.symbol} on MARKET; is marketdata running?"))
        return
    age = (now - book.received_ts_ns) / 1e9
    if not _say(report, Step("book", age <= opts.max_book_age, f"{book.id}, {age:.1f}s old")):
        return
    plan = await _plan(base_url, env, book, opts)
    if isinstance(plan, str):
        _say(report, Step("rules", False, plan))
        return
    _say(report, Step("rules", True, f"{plan.side} {plan.quantity} at {plan.price} = {plan.notional}"))

    starts = {name: await last_sequence(js, name) for name in (ORDERS.name, EXECUTION.name)}
    intent_id = f"intent:{STRATEGY}:{opts.symbol}:{time.time_ns()}"
    coid = ids.client_order_id(intent_id)
    report.facts.update({"intent_id": intent_id, "client_order_id": coid, "side": plan.side, "price": str(plan.price)})
    report.facts["quantity"] = str(plan.quantity)
    intent = OrderIntent(
        id=intent_id,
        ts_ns=time.time_ns(),
        strategy=STRATEGY,
        symbol=opts.symbol,
        side=plan.side,
        order_type="limit",
        price=plan.price,
        quantity=plan.quantity,
        reason="canary",
        book_id=book.id,
    )
    publisher = NatsPublisher(js)
    await publisher.publish(subjects.intent(opts.symbol), intent)
    _say(report, Step("intent", True, f"{intent_id} on {subjects.intent(opts.symbol)}"))

    outcome = Outcome(intent_id, coid)
    watch = _Watch(js, starts, opts.symbol, outcome)
    await watch.until(lambda: outcome.verdict() is not None, VERDICT_TIMEOUT)
    if not _say(report, outcome.verdict() or Step("verdict", False, f"no verdict within {VERDICT_TIMEOUT:g}s")):
        return
    await watch.until(lambda: outcome.exchange() is not None, EXCHANGE_TIMEOUT)
    if not _say(report, outcome.exchange() or Step("exchange", False, f"no answer within {EXCHANGE_TIMEOUT:g}s")):
        return
    finished = await watch.until(lambda: outcome.done(plan.quantity), opts.ttl)
    if not finished:
        await publisher.publish(
            subjects.cancel(opts.symbol),
            CancelOrder(
                id=ids.cancel_command_id(coid, "canary-ttl"),
                ts_ns=time.time_ns(),
                client_order_id=coid,
                symbol=opts.symbol,
                reason="canary-ttl",
                requested_by="btcbot-canary",
            ),
        )
        report.facts["canceled_after_ttl"] = True
        await watch.until(lambda: outcome.done(plan.quantity), CANCEL_TIMEOUT)
    report.facts["filled_quantity"] = str(outcome.filled_quantity)
    if not _say(report, outcome.fill_step(plan.quantity, opts.ttl)):
        return
    _say(report, await _ledger(env.get("DATABASE_URL", DEFAULT_DATABASE_URL), outcome))


async def _last_book(js: Any, symbol: str) -> BookSnapshot | None:
    stored = await last_message(js, MARKET.name, subjects.book(symbol))
    if stored is None:
        return None
    message = decode(stored.data)
    return message if isinstance(message, BookSnapshot) else None


async def _plan(base_url: str, env: Mapping[str, str], book: BookSnapshot, opts: CanaryOptions) -> OrderPlan | str:
    from btcbot.btcturk.rest import BtcTurkClient

    async with BtcTurkClient(base_url, None, None, timeout=5.0) as client:
        info = (await client.exchange_info()).symbol(opts.symbol)
    if info is None:
        return f"the exchange lists no {opts.symbol}"
    return make_plan(book, info, opts.notional, opts.side)


class _Watch:
    """Reads ORDERS and EXECUTION on from where they stood before the intent, folding events into the outcome."""

    def __init__(self, js: Any, starts: dict[str, int], symbol: str, outcome: Outcome) -> None:
        self._js = js
        self._next = {name: seq + 1 for name, seq in starts.items()}
        self._filters = {ORDERS.name: f"order.*.{symbol}", EXECUTION.name: f"exec.*.{symbol}"}
        self._outcome = outcome

    async def poll(self) -> None:
        for stream, start in self._next.items():
            async for stored in read_stream(self._js, stream, start, self._filters[stream]):
                self._next[stream] = stored.sequence + 1
                try:
                    message: Message = decode(stored.data)
                except (msgspec.DecodeError, msgspec.ValidationError):
                    continue
                self._outcome.add(message)

    async def until(self, condition: Any, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while True:
            await self.poll()
            if condition():
                return True
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(POLL)


async def _ledger(database_url: str, outcome: Outcome) -> Step:
    """Wait (bounded) until the ledger has booked every fill execution published for the canary's order."""
    import asyncpg

    deadline = time.monotonic() + LEDGER_TIMEOUT
    conn = await asyncpg.connect(database_url, timeout=10)
    try:
        while True:
            row = await conn.fetchrow(
                "SELECT count(*) AS n, coalesce(sum(quantity), 0) AS q FROM fills WHERE client_order_id = $1",
                outcome.client_order_id,
            )
            step = ledger_step(int(row["n"]), Decimal(row["q"]), outcome)
            if step.ok or time.monotonic() >= deadline:
                return step
            await asyncio.sleep(POLL)
    finally:
        await conn.close()
