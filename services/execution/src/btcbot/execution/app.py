"""Wiring: exchange client, Redis stores, the order handler, the fill poller and the sweeper."""

from __future__ import annotations

from btcbot.btcturk.rest import BtcTurkClient
from btcbot.contracts import streams
from btcbot.contracts.codec import Codec
from btcbot.contracts.messages import CancelOrder, SubmitOrder
from btcbot.execution.exchange import BtcTurkExchange
from btcbot.execution.handlers import Execution, Policy
from btcbot.execution.journal import Journal, RedisActiveOrders
from btcbot.execution.poller import FillPoller
from btcbot.execution.settings import ExecutionSettings, arming
from btcbot.execution.tasks import Sweeper
from btcbot.runtime.idempotency import IdempotencyStore
from btcbot.runtime.locks import FencedLock
from btcbot.runtime.service import Service


async def setup(svc: Service, settings: ExecutionSettings) -> None:
    """Build the execution engine and register its consumer and the fill poller."""
    mode = arming(settings)  # raises SettingsError (exit 2) for any half-armed combination
    svc.log.warning(
        "execution.armed" if mode == "live" else "execution.dry_run",
        mode=mode,
        base_url=settings.btcturk_base_url,
        account=settings.account,
        symbols=list(settings.symbols),
    )
    client = BtcTurkClient(
        settings.btcturk_base_url,
        settings.btcturk_api_key,
        settings.btcturk_api_secret.get_secret_value(),
        timeout=settings.btcturk_timeout,
    )
    svc.on_close(client.aclose)
    redis = await svc.redis()
    prefix = f"{settings.key_prefix}:{settings.account}"
    execution = Execution(
        bus=svc.bus,
        journal=Journal(
            IdempotencyStore(redis, prefix),
            settings.instance,
            settings.claim_ttl,
            active=RedisActiveOrders(redis, prefix),
            clock=svc.now_ns,
        ),
        locks=FencedLock(redis, prefix),
        exchange=BtcTurkExchange(client),
        account=settings.account,
        owner=settings.instance,
        clock=svc.now_ns,
        policy=Policy(
            lock_ttl_s=settings.lock_ttl,
            lock_wait_s=settings.lock_wait,
            lookups=settings.unknown_lookups,
            lookup_delay_s=settings.lookup_delay,
            max_order_age_s=settings.max_order_age,
        ),
        log=svc.log,
    )
    codec: Codec[SubmitOrder | CancelOrder] = Codec(SubmitOrder | CancelOrder)
    svc.consume(streams.EXECUTION_ORDERS, codec, execution.on_order)
    poller = FillPoller(
        execution,
        settings.symbols,
        interval_s=settings.fill_poll_interval,
        lookback_s=settings.fill_lookback,
    )
    svc.task("fill-poller", poller.run)
    svc.readiness("fill-poller", lambda: poller.healthy)
    sweeper = Sweeper(
        execution,
        settings.symbols,
        interval_s=settings.sweep_interval,
        settle_s=settings.sweep_settle,
        lookback_s=settings.fill_lookback,
        unknown_orders=settings.unknown_orders,
        order_ttl_s=settings.order_ttl,
    )
    svc.task("sweeper", sweeper.run)
    # Not ready until the start-up reconciliation with the exchange is done.
    svc.readiness("reconciled", lambda: sweeper.started)
