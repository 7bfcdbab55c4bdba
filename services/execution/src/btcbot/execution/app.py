"""Wiring: exchange client, Redis stores, the order handler, the fill poller, the user feed and the sweeper."""

from __future__ import annotations

from btcbot.btcturk.breaker import BreakerState
from btcbot.btcturk.errors import BtcTurkError
from btcbot.btcturk.models import SymbolInfo
from btcbot.btcturk.rest import BtcTurkClient
from btcbot.btcturk.ws import BtcTurkWebSocket
from btcbot.contracts import streams
from btcbot.contracts.codec import Codec
from btcbot.contracts.messages import CancelOrder, SubmitOrder
from btcbot.execution.exchange import BtcTurkExchange
from btcbot.execution.handlers import Execution, Policy
from btcbot.execution.journal import Journal, RedisActiveOrders, account_prefix
from btcbot.execution.poller import FillPoller
from btcbot.execution.rules import ExchangeRules
from btcbot.execution.settings import ExecutionSettings, arming, order_keys
from btcbot.execution.tasks import AlarmPublisher, Sweeper
from btcbot.execution.userfeed import UserFeed
from btcbot.execution.watch import ExchangeWatch, WatchedExchange
from btcbot.runtime.alarms import recall
from btcbot.runtime.idempotency import IdempotencyStore
from btcbot.runtime.locks import FencedLock
from btcbot.runtime.rulefeed import keep_rules
from btcbot.runtime.service import Service


async def setup(svc: Service, settings: ExecutionSettings) -> None:
    """Build the execution engine and register its consumer and the fill poller."""
    mode = arming(settings)  # raises SettingsError (exit 2) for any half-armed combination
    ws_key, ws_secret = settings.ws_credentials()  # SettingsError for a half-set override
    keys = order_keys(settings)  # SettingsError: no key and unsigned orders not accepted deliberately
    if keys is None:
        svc.log.warning("execution.unsigned_orders_accepted", setting="EXECUTION_ACCEPT_UNSIGNED")
    else:
        svc.log.info("execution.order_keys", key_ids=sorted(keys))
    svc.log.warning(
        "execution.armed" if mode == "live" else "execution.dry_run",
        mode=mode,
        base_url=settings.btcturk_base_url,
        account=settings.account,
        symbols=list(settings.symbols),
    )
    watch = ExchangeWatch(int(settings.breaker_alarm_after * 1e9), settings.failure_alarm_after)
    client = BtcTurkClient(
        settings.btcturk_base_url,
        settings.btcturk_api_key,
        settings.btcturk_api_secret.get_secret_value(),
        timeout=settings.btcturk_timeout,
        on_breaker_state_change=lambda group, _old, new: watch.breaker_changed(
            group, new == BreakerState.CLOSED, svc.now_ns()
        ),
    )
    svc.dependency("exchange", client.no_breaker_open)
    svc.on_close(client.aclose)
    redis = await svc.redis()
    rules = ExchangeRules()

    async def fetch_rules() -> tuple[SymbolInfo, ...]:
        return (await client.exchange_info()).symbols

    svc.task(
        "rules",
        lambda stop: keep_rules(
            stop, fetch_rules, rules, svc.log, service="execution", every=settings.rules_refresh, errors=(BtcTurkError,)
        ),
    )
    # Not ready (and nothing is sent: submits wait) until exchangeinfo was read once.
    svc.readiness("rules", lambda: rules.current is not None)
    prefix = account_prefix(settings.key_prefix, settings.account)
    execution = Execution(
        bus=svc.bus,
        journal=Journal(
            IdempotencyStore(redis, prefix, ack=svc.redis_ack),
            settings.instance,
            settings.claim_ttl,
            active=RedisActiveOrders(redis, prefix),
            clock=svc.now_ns,
        ),
        locks=FencedLock(redis, prefix, ack=svc.redis_ack),
        exchange=WatchedExchange(BtcTurkExchange(client), watch, svc.now_ns),
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
        rules=rules,
        order_keys=keys,
    )
    alarms = AlarmPublisher(watch, svc.bus, svc.now_ns, svc.log, recall=lambda latch: recall(svc.js, latch))
    svc.task("alarms", alarms.run)
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
    if settings.user_feed == "ws":
        # Readiness does not wait for the socket: while it is down the poller runs at full rate.
        socket = BtcTurkWebSocket(settings.btcturk_ws_url, public_key=ws_key, private_key=ws_secret)
        svc.on_close(socket.aclose)
        feed = UserFeed(
            execution,
            poller,
            socket,
            ws_interval_s=settings.fill_poll_interval_ws,
            poll_interval_s=settings.fill_poll_interval,
        )
        svc.task("user-feed", feed.run)
    svc.log.info("execution.user_feed", mode=settings.user_feed, ws_url=settings.btcturk_ws_url,
                 poll_interval_s=settings.fill_poll_interval,
                 ws_poll_interval_s=settings.fill_poll_interval_ws)  # fmt: skip
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
