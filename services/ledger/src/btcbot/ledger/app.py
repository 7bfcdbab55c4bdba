"""Ledger wiring: migrate, open the store, seed opening balances, consume (batched), revalue and reconcile."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from decimal import Decimal

from btcbot.contracts import streams
from btcbot.contracts.codec import Codec
from btcbot.contracts.messages import (
    BookSnapshot,
    OrderAccepted,
    OrderCanceled,
    OrderFilled,
    OrderRejected,
    ResumeSymbol,
)
from btcbot.ledger.exchange import ExchangeAccount
from btcbot.ledger.handlers import ExecutionEvent, Ledger
from btcbot.ledger.migrations import migrate
from btcbot.ledger.positions import split_symbol
from btcbot.ledger.settings import LedgerSettings
from btcbot.ledger.store import FillResult, Incoming, Store
from btcbot.ledger.tasks import Batcher, LedgerAlarms, Reconciler, run_batched, sleep_or_stop
from btcbot.runtime.alarms import recall
from btcbot.runtime.consumer import Consumer
from btcbot.runtime.jetstream import provision
from btcbot.runtime.service import Service

_UNHEALTHY_PING_INTERVAL = 2.0


async def setup(svc: Service, settings: LedgerSettings) -> None:
    """Bring the schema up to date, then consume execution events and books."""
    # Every start migrates (idempotent, serialized by an advisory lock), so a fresh database just works.
    store = await _open_store(svc, settings)
    openings = opening_symbols(settings.symbols, settings.quote_asset)
    await _record_opening_at_start(svc, settings, store, openings)

    ledger = Ledger(
        store=store,
        bus=svc.bus,
        account=settings.account,
        quote_asset=settings.quote_asset,
        now_ns=svc.now_ns,
        log=svc.log,
        day_offset_minutes=settings.day_offset_minutes,
        heartbeat_ns=int(settings.snapshot_interval * 1e9),
        resume_keys=settings.verification_keys(),
    )
    batcher: Batcher[Incoming, FillResult] = Batcher(ledger.apply, settings.batch_max, settings.batch_linger)
    ledger.batcher = batcher
    svc.on_close(batcher.close)

    # Execution events: our own fetch loop runs the kit's per-message processing concurrently (see tasks.py),
    # so the durable is provisioned here rather than through svc.consume.
    execution: Codec[ExecutionEvent] = Codec(OrderAccepted | OrderRejected | OrderCanceled | OrderFilled)
    spec = streams.LEDGER_EXECUTION.for_instance(settings.instance)
    await provision(svc.js, streams.ALL_STREAMS, [spec], replicas=settings.stream_replicas)
    consumer = Consumer(svc.name, svc.js, svc.bus, spec, execution, ledger.on_execution, svc.now_ns,
                        max_skew_ns=int(settings.max_clock_skew * 1e9),
                        base_name=streams.LEDGER_EXECUTION.durable)  # fmt: skip
    svc.watch_consumer(streams.LEDGER_EXECUTION.durable, spec)

    async def ack_floor() -> int:
        # The ledger acks only after commit: everything up to the durable's ack floor is committed (or parked).
        info = await asyncio.wait_for(svc.js.consumer_info(spec.stream, spec.durable), settings.db_timeout)
        return int(info.ack_floor.stream_seq or 0)

    ledger.ack_floor = ack_floor

    async def ingest_loop(stop: asyncio.Event) -> None:
        await run_batched(consumer, svc.js, stop, settings.batch_max)

    svc.task(f"consumer:{spec.durable}", ingest_loop)
    svc.consume(streams.LEDGER_MARKS, Codec(BookSnapshot), ledger.on_book)
    svc.consume(streams.LEDGER_RESUMES, Codec(ResumeSymbol), ledger.on_resume)
    svc.readiness("postgres", lambda: store.healthy)

    async def revalue_loop(stop: asyncio.Event) -> None:
        while not stop.is_set():
            if not store.healthy:
                await store.ping()
            if store.healthy:
                await ledger.revalue()
            interval = min(settings.revalue_interval, settings.snapshot_interval)
            await sleep_or_stop(stop, interval if store.healthy else _UNHEALTHY_PING_INTERVAL)

    svc.task("revalue", revalue_loop)

    alarms = _setup_quarantine_alarm(svc, settings, store)
    _setup_reconciliation(svc, settings, store, ledger, openings, alarms)


async def _open_store(svc: Service, settings: LedgerSettings) -> Store:
    # Every start migrates (idempotent, serialized by an advisory lock), so a fresh database just works.
    applied = await migrate(settings.database_url, timeout=settings.db_timeout)
    if applied:
        svc.log.info("ledger.migrated", applied=applied)
    store = await Store.open(
        settings.database_url,
        min_size=settings.pool_min_size,
        max_size=settings.pool_max_size,
        timeout=settings.db_timeout,
    )
    svc.on_close(store.close)
    store.quarantine_unknown = settings.quarantine_unknown_fills
    if await store.seed_balances(settings.opening_balances, svc.now_ns()):
        seeded = {asset: str(amount) for asset, amount in settings.opening_balances.items()}
        svc.log.info("ledger.opening_balances_seeded", balances=seeded)
    if await store.configure_day_offset(settings.day_offset_minutes, svc.now_ns()):
        svc.log.info("ledger.daily_pnl_rebuilt", day_utc_offset=settings.day_utc_offset)
    return store


async def _record_opening_at_start(
    svc: Service, settings: LedgerSettings, store: Store, openings: Mapping[str, str]
) -> None:
    balances = (await store.state()).balances if settings.opening_balances else {}
    if balances:
        # What the account held at start (the seeded opening balances) is the opening holding of each symbol.
        # Without seeded balances the first reconciliation that reads the exchange records it instead.
        recorded = await store.record_opening(openings, balances, "start", svc.now_ns())
        if recorded:
            svc.log.info("ledger.opening_positions", source="start", **{k: str(v) for k, v in recorded.items()})


def _setup_quarantine_alarm(svc: Service, settings: LedgerSettings, store: Store) -> LedgerAlarms:
    alarms = LedgerAlarms(svc.bus, svc.now_ns, quarantine_after_ns=int(settings.quarantine_alarm_after * 1e9))

    async def quarantine_alarm_loop(stop: asyncio.Event) -> None:
        await recall(svc.js, alarms.quarantine)
        while not stop.is_set():
            await alarms.check_quarantine(store)
            await sleep_or_stop(stop, settings.revalue_interval)

    if settings.quarantine_alarm_after > 0:
        svc.task("quarantine-alarm", quarantine_alarm_loop)
    return alarms


def opening_symbols(symbols: Sequence[str], quote_asset: str) -> dict[str, str]:
    """Which symbol each base asset's opening holding belongs to: the pair in the ledger's quote asset if traded,
    else the first symbol (sorted) with that base. Symbols that do not split are left out."""
    chosen: dict[str, str] = {}
    for symbol in sorted(symbols):
        try:
            base, quote = split_symbol(symbol)
        except ValueError:
            continue
        if base not in chosen or quote == quote_asset:
            chosen[base] = symbol
    return chosen


def _setup_reconciliation(
    svc: Service,
    settings: LedgerSettings,
    store: Store,
    ledger: Ledger,
    openings: Mapping[str, str],
    alarms: LedgerAlarms,
) -> None:
    """Reconcile with the exchange every interval, and once more at shutdown."""
    if not settings.reconciles:
        svc.log.warning("ledger.reconciliation_off", reason="no BTCTURK_API_KEY/SECRET or LEDGER_RECONCILE_INTERVAL=0")
        return
    key, secret = settings.btcturk_api_key, settings.btcturk_api_secret
    assert key is not None
    assert secret is not None
    account = ExchangeAccount.connect(
        settings.btcturk_base_url,
        key,
        secret.get_secret_value(),
        settings.btcturk_timeout,
    )
    svc.on_close(account.close)
    reconciler = Reconciler(
        store,
        account,
        settings.symbols,
        now_ns=svc.now_ns,
        lookback=settings.reconcile_lookback,
        grace=settings.reconcile_grace,
        tolerance=settings.reconcile_tolerance,
    )

    async def reconcile_assets(assets: tuple[str, ...]) -> tuple[str | None, dict[str, Decimal]]:
        return await reconciler.check_assets(assets)

    ledger.reconcile_assets = reconcile_assets

    async def reconcile_loop(stop: asyncio.Event) -> None:
        await recall(svc.js, alarms.reconcile)
        while not stop.is_set():
            await sleep_or_stop(stop, settings.reconcile_interval)
            if stop.is_set():
                break
            try:
                outcome = await reconciler.round()
                if outcome is not None:
                    await alarms.after_round(*outcome)
                comparison = reconciler.last_comparison
                if comparison is not None and comparison.status != "deferred":
                    # The first round that reads the exchange fixes the opening holdings not known at start.
                    exchange = {line.asset: line.exchange for line in comparison.balances}
                    recorded = await store.record_opening(openings, exchange, "reconciliation", svc.now_ns())
                    if recorded:
                        svc.log.info(
                            "ledger.opening_positions",
                            source="reconciliation",
                            **{k: str(v) for k, v in recorded.items()},
                        )
            except Exception:
                # Reconciliation watches the books; a fault in it must not stop the booking itself.
                svc.log.exception("ledger.reconcile_failed")

    svc.task("reconcile", reconcile_loop)

    async def final_round() -> None:
        # Runs after ingestion stopped (close hooks follow the tasks) and before the pools close (hooks run
        # newest first): the books as they were left, against the exchange, recorded for `btcbot report`.
        try:
            outcome = await asyncio.wait_for(reconciler.round(final=True), settings.db_timeout * 2)
        except TimeoutError:
            svc.log.warning("ledger.final_reconcile_timeout")
            return
        if outcome is not None:
            svc.log.info("ledger.final_reconcile", status=outcome[0], mismatches=len(outcome[1]))

    svc.on_close(final_round)
