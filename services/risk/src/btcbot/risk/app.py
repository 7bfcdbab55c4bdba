"""Wiring: exchange rules loaded and refreshed in the background, three consumers sharing one state."""

from __future__ import annotations

import asyncio
import contextlib
import random
from typing import Protocol

from btcbot.btcturk.errors import BtcTurkError
from btcbot.btcturk.rest import BtcTurkClient
from btcbot.contracts.codec import Codec
from btcbot.contracts.messages import (
    BookSnapshot,
    KillSwitch,
    ModeChanged,
    OrderAccepted,
    OrderCanceled,
    OrderFilled,
    OrderIntent,
    OrderRejected,
    PortfolioSnapshot,
)
from btcbot.contracts.streams import RISK_BOOKS, RISK_CONTROL, RISK_EXECUTION, RISK_INTENTS, RISK_PORTFOLIO
from btcbot.risk.control import RiskState
from btcbot.risk.handlers import ControlMessage, ExecutionEvent, RiskHandlers
from btcbot.risk.rules import ExchangeSymbol, rules_from_exchange
from btcbot.risk.settings import RiskSettings
from btcbot.runtime.backoff import Backoff
from btcbot.runtime.idempotency import IdempotencyStore, IdempotencyStoreProtocol
from btcbot.runtime.reservations import RedisReservations, ReservationsProtocol
from btcbot.runtime.service import Service


class ExchangeInfoLike(Protocol):
    """What risk reads of an exchangeinfo answer."""

    @property
    def symbols(self) -> tuple[ExchangeSymbol, ...]:
        """Every listed pair."""
        ...


class RulesClient(Protocol):
    """The part of the BTCTurk REST client risk uses."""

    async def exchange_info(self) -> ExchangeInfoLike:
        """``GET /api/v2/server/exchangeinfo``, parsed."""
        ...


async def load_rules(client: RulesClient, state: RiskState, now_ns: int) -> int:
    """Load exchange rules into `state`; returns how many symbols were loaded."""
    info = await client.exchange_info()
    rules = rules_from_exchange(info.symbols)
    state.set_rules(rules, now_ns)
    return len(rules)


async def refresh_rules(
    stop: asyncio.Event,
    client: RulesClient,
    state: RiskState,
    svc: Service,
    *,
    every: float,
    retry_max: float,
    rng: random.Random,
) -> None:
    """Keep the rules fresh: reload every `every` seconds (at once if none are loaded); back off on failure."""
    backoff = Backoff(1.0, max(1.0, retry_max), rng)
    if state.rules is not None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), every)
    while not stop.is_set():
        try:
            count = await load_rules(client, state, svc.now_ns())
        except BtcTurkError as exc:
            delay = backoff.failure()
            svc.log.warning(
                "risk.rules_failed",
                error_class=type(exc).__name__,
                error=str(exc),
                failures=backoff.failures,
                retry_in=round(delay, 3),
                loaded=state.rules is not None,
            )
        else:
            backoff.success()
            delay = every
            svc.log.info("risk.rules_loaded", symbols=count)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), delay)


async def first_load(client: RulesClient, state: RiskState, svc: Service, timeout: float) -> None:
    """Try to load the rules before the consumers start, so the first intents are not denied for want of them."""
    try:
        count = await asyncio.wait_for(load_rules(client, state, svc.now_ns()), timeout)
    except (BtcTurkError, TimeoutError) as exc:
        # Not fatal: intents are denied RULES_NOT_LOADED until the refresh task gets them.
        svc.log.warning("risk.rules_failed", error_class=type(exc).__name__, error=str(exc), failures=1)
    else:
        svc.log.info("risk.rules_loaded", symbols=count)


def register(
    svc: Service,
    settings: RiskSettings,
    client: RulesClient,
    state: RiskState | None = None,
    verdicts: IdempotencyStoreProtocol | None = None,
    reservations: ReservationsProtocol | None = None,
) -> RiskState:
    """Register consumers, the rules task and readiness on `svc` for a given exchange client."""
    state = state if state is not None else RiskState(settings.account)
    handlers = RiskHandlers(
        state,
        settings.limits(),
        svc.bus,
        svc.now_ns,
        svc.log,
        verdicts=verdicts,
        owner=settings.instance,
        reservations=reservations,
        reserve_limits=settings.reserve_limits(),
    )
    rng = random.Random()

    async def rules_task(stop: asyncio.Event) -> None:
        await refresh_rules(
            stop, client, state, svc, every=settings.rules_refresh, retry_max=settings.rules_retry_max, rng=rng
        )

    svc.task("rules", rules_task)
    svc.readiness("rules", lambda: state.rules is not None)
    control: Codec[ControlMessage] = Codec(ModeChanged | KillSwitch)
    svc.consume(RISK_CONTROL, control, handlers.on_control)
    svc.consume(RISK_PORTFOLIO, Codec(PortfolioSnapshot), handlers.on_portfolio)
    if settings.max_book_age > 0:
        svc.consume(RISK_BOOKS, Codec(BookSnapshot), handlers.on_book)
    if reservations is not None:
        # Shared by the replicas: each order event releases (or marks known) a reservation exactly once.
        outcomes: Codec[ExecutionEvent] = Codec(OrderAccepted | OrderRejected | OrderCanceled | OrderFilled)
        svc.consume(RISK_EXECUTION, outcomes, handlers.on_execution)
    svc.consume(RISK_INTENTS, Codec(OrderIntent), handlers.on_intent)
    return state


async def setup(svc: Service, settings: RiskSettings) -> None:
    """Build the exchange client and register everything."""
    client = BtcTurkClient(
        settings.btcturk_base_url,
        settings.btcturk_api_key,
        settings.btcturk_api_secret.get_secret_value(),
        timeout=settings.btcturk_timeout,
    )
    svc.on_close(client.aclose)
    state = RiskState(settings.account)
    await first_load(client, state, svc, timeout=settings.btcturk_timeout * 2)
    verdicts = None
    redis = await svc.redis()
    if settings.shared_verdicts:
        verdicts = IdempotencyStore(redis, f"{settings.key_prefix}:{settings.account}")
    # Always: no approval without a reservation (Redis down means intents wait).
    reservations = RedisReservations(redis, f"{settings.key_prefix}:{settings.account}")
    register(svc, settings, client, state, verdicts, reservations)
    svc.log.info(
        "risk.configured",
        max_order_notional=str(settings.max_order_notional),
        max_intent_age=settings.max_intent_age,
        base_url=settings.btcturk_base_url,
    )
