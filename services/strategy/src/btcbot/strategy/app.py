"""Wiring: the engine running the configured strategies, fed by books, execution events, portfolio snapshots and
the exchange's rules; symbols owned by lease."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import Any, cast

import msgspec

from btcbot.btcturk.errors import BtcTurkError
from btcbot.btcturk.models import SymbolInfo
from btcbot.btcturk.rest import BtcTurkClient
from btcbot.btcturk.rulebook import RulesHolder
from btcbot.contracts import subjects
from btcbot.contracts.codec import Codec
from btcbot.contracts.messages import (
    BookSnapshot,
    OrderAccepted,
    OrderCanceled,
    OrderDenied,
    OrderFilled,
    OrderIntent,
    OrderRejected,
    PortfolioSnapshot,
)
from btcbot.contracts.streams import (
    EXECUTION,
    INTENTS,
    ORDERS,
    STRATEGY_BOOKS,
    STRATEGY_DENIED,
    STRATEGY_EXECUTION,
    STRATEGY_PORTFOLIO,
)
from btcbot.runtime.inspect import StoredMessage, last_message, last_sequence, read_stream
from btcbot.runtime.leases import partition_leases
from btcbot.runtime.rulefeed import keep_rules
from btcbot.runtime.service import Service
from btcbot.strategy.handlers import ExecutionEvent, History, StrategyHandlers
from btcbot.strategy.registry import Configured
from btcbot.strategy.settings import StrategySettings
from btcbot.strategy.signals import Engine, OrderEvent

# How far back in each stream to look (messages of all symbols); recent orders of a symbol are well inside it.
WINDOW = 20_000

_INTENT: Codec[OrderIntent] = Codec(OrderIntent)
_EVENT: Codec[OrderEvent] = Codec(OrderAccepted | OrderRejected | OrderCanceled | OrderFilled | OrderDenied)


@dataclass(frozen=True)
class Read:
    """Every message of a subject the stream held from `first` to `upto`, with its sequence."""

    first: int
    upto: int
    messages: list[tuple[int, bytes]]


async def _read(js: Any, stream: str, subject: str) -> Read:
    # Read before the subject's last message: every message of the subject up to `upto` is then in the read.
    upto = await last_sequence(js, stream)
    start = max(1, upto - WINDOW + 1)
    # The last match tells where to stop, so the read never waits out a fetch timeout for more.
    newest = await last_message(js, stream, subject)
    if newest is None:
        return Read(start, upto, [])
    last = newest.sequence
    if last < start:
        return Read(start, upto, [])
    out: list[tuple[int, bytes]] = []
    # read_stream is an async generator; close it on the early break so its consumer is unsubscribed now.
    messages = cast(AsyncGenerator[StoredMessage, None], read_stream(js, stream, start, subject))
    try:
        async for message in messages:
            out.append((message.sequence, message.data))
            if message.sequence >= last:
                break
    finally:
        await messages.aclose()
    return Read(start, upto, out)


async def recent_history(js: Any, symbol: str, since_ns: int) -> History:
    """Intents, execution events and denials of `symbol` stamped at or after `since_ns`, and every fill of the
    symbol in the EXECUTION window read (with its stream sequence), for the position."""
    intents: list[OrderIntent] = []
    events: list[OrderEvent] = []
    raw_intents, raw_exec, raw_denied = await asyncio.gather(
        _read(js, INTENTS.name, subjects.intent(symbol)),
        _read(js, EXECUTION.name, f"exec.*.{symbol}"),
        _read(js, ORDERS.name, subjects.denied(symbol)),
    )
    for _, data in raw_intents.messages:
        try:
            intent = _INTENT.decode(data)
        except (msgspec.DecodeError, msgspec.ValidationError):
            continue  # the dead-letter path of the live consumer reports these
        if intent.ts_ns >= since_ns:
            intents.append(intent)
    fills: list[tuple[OrderFilled, int]] = []
    for read in (raw_exec, raw_denied):
        for sequence, data in read.messages:
            try:
                event = _EVENT.decode(data)
            except (msgspec.DecodeError, msgspec.ValidationError):
                continue
            if read is raw_exec and isinstance(event, OrderFilled):
                fills.append((event, sequence))
            if event.ts_ns >= since_ns:
                events.append(event)
    return History(intents, events, raw_exec.first, raw_exec.upto, fills)


def _described(configured: Configured) -> dict[str, Any]:
    allocation = configured.allocation
    return {
        "weight": str(allocation.weight),
        "capital": None if allocation.capital is None else str(allocation.capital),
        "params": configured.params.model_dump(mode="json"),
    }


async def setup(svc: Service, settings: StrategySettings) -> None:
    """Build the engine, take part in the symbol leases and register the consumers."""
    configured = settings.configured()  # SettingsError (exit 2) naming the variable of a bad parameter
    rules: RulesHolder[SymbolInfo] = RulesHolder()
    engine = Engine(
        settings.symbols, settings.params(), track_fills=True, slots=settings.slots(configured), rules=rules.get
    )
    client = BtcTurkClient(settings.btcturk_base_url, timeout=settings.btcturk_timeout)
    svc.on_close(client.aclose)

    async def fetch_rules() -> tuple[SymbolInfo, ...]:
        return (await client.exchange_info()).symbols

    svc.task(
        "rules",
        lambda stop: keep_rules(
            stop, fetch_rules, rules, svc.log, service="strategy", every=settings.rules_refresh, errors=(BtcTurkError,)
        ),
    )
    # Not ready until exchangeinfo was read once (until then every book is held: no rules, no intent).
    svc.readiness("rules", lambda: rules.loaded)
    p = engine.params
    # Older than this, an intent has expired unheard or its order has been canceled for age (order_ttl).
    horizon_ns = 2 * (p.intent_timeout_ns + p.order_ttl_ns)

    async def history(symbol: str) -> History:
        return await recent_history(svc.js, symbol, svc.now_ns() - horizon_ns)

    handlers = StrategyHandlers(engine, svc.bus, svc.now_ns, settings.account, svc.log, history=history)
    ownership = await partition_leases(
        svc,
        f"{settings.account}:strategy",
        settings.symbols,
        on_acquire=handlers.on_acquire,
        on_lose=handlers.on_lose,
    )
    handlers.set_owner(ownership.owns)
    svc.consume(STRATEGY_PORTFOLIO, Codec(PortfolioSnapshot), handlers.on_portfolio)
    execution: Codec[ExecutionEvent] = Codec(OrderAccepted | OrderRejected | OrderCanceled | OrderFilled)
    svc.consume(STRATEGY_EXECUTION, execution, handlers.on_execution)
    execution_spec = STRATEGY_EXECUTION.for_instance(settings.instance)

    async def coverage(stop: asyncio.Event) -> None:
        # Our EXECUTION durable delivers every message after its ack floor: from there on, we see every fill.
        while not stop.is_set():
            try:
                info = await asyncio.wait_for(svc.js.consumer_info(execution_spec.stream, execution_spec.durable), 5)
            except Exception as exc:  # not created yet, or NATS away: try again
                svc.log.info("strategy.coverage_pending", error=f"{type(exc).__name__}: {exc}")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), 0.5)
                continue
            floor = int(info.ack_floor.stream_seq or 0)
            handlers.start_at(floor)
            return

    svc.task("execution-coverage", coverage)
    svc.consume(STRATEGY_DENIED, Codec(OrderDenied), handlers.on_denied)
    svc.consume(STRATEGY_BOOKS, Codec(BookSnapshot), handlers.on_book)
    svc.log.info(
        "strategy.configured",
        strategies={c.name: _described(c) for c in configured},
        symbols=list(settings.symbols),
        params=repr(engine.params),
        partition_leases=settings.partition_leases,
    )
