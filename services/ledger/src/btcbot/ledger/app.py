"""Ledger wiring: migrate, open the store, seed opening balances, register consumers and the revaluation loop."""

from __future__ import annotations

import asyncio
import contextlib

from btcbot.contracts import streams
from btcbot.contracts.codec import Codec
from btcbot.contracts.messages import BookSnapshot, OrderAccepted, OrderCanceled, OrderFilled, OrderRejected
from btcbot.ledger.handlers import ExecutionEvent, Ledger
from btcbot.ledger.migrations import migrate
from btcbot.ledger.settings import LedgerSettings
from btcbot.ledger.store import Store
from btcbot.runtime.service import Service

_UNHEALTHY_PING_INTERVAL = 2.0


async def setup(svc: Service, settings: LedgerSettings) -> None:
    """Bring the schema up to date, then consume execution events and books."""
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
    if await store.seed_balances(settings.opening_balances, svc.now_ns()):
        seeded = {asset: str(amount) for asset, amount in settings.opening_balances.items()}
        svc.log.info("ledger.opening_balances_seeded", balances=seeded)

    ledger = Ledger(
        store=store,
        bus=svc.bus,
        account=settings.account,
        quote_asset=settings.quote_asset,
        now_ns=svc.now_ns,
        log=svc.log,
    )
    execution: Codec[ExecutionEvent] = Codec(OrderAccepted | OrderRejected | OrderCanceled | OrderFilled)
    svc.consume(streams.LEDGER_EXECUTION, execution, ledger.on_execution)
    svc.consume(streams.LEDGER_MARKS, Codec(BookSnapshot), ledger.on_book)
    svc.readiness("postgres", lambda: store.healthy)

    async def revalue_loop(stop: asyncio.Event) -> None:
        while not stop.is_set():
            if not store.healthy:
                await store.ping()
            if store.healthy:
                await ledger.revalue()
            interval = settings.revalue_interval if store.healthy else _UNHEALTHY_PING_INTERVAL
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), interval)

    svc.task("revalue", revalue_loop)
