"""Wiring: control state rebuilt from the CONTROL stream before any consumer binds, exchange rules loaded and
refreshed in the background, the automatic budget on a tick, and the consumers sharing one state."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Callable, Iterable
from typing import Any, Protocol

import msgspec

from btcbot.btcturk.errors import BtcTurkError
from btcbot.btcturk.rest import BtcTurkClient
from btcbot.contracts import subjects
from btcbot.contracts.codec import Codec
from btcbot.contracts.messages import (
    BookSnapshot,
    OrderAccepted,
    OrderCanceled,
    OrderFilled,
    OrderIntent,
    OrderRejected,
    PortfolioSnapshot,
)
from btcbot.contracts.streams import (
    CONTROL,
    PORTFOLIO,
    RISK_BOOKS,
    RISK_CONTROL,
    RISK_EXECUTION,
    RISK_INTENTS,
    RISK_PORTFOLIO,
)
from btcbot.risk.control import RiskState
from btcbot.risk.handlers import ExecutionEvent, OpenOrders, RawControlCodec, RiskHandlers
from btcbot.risk.metrics import report_control
from btcbot.risk.rules import ExchangeSymbol, rules_from_exchange
from btcbot.risk.settings import RiskSettings
from btcbot.runtime.errors import SettingsError
from btcbot.runtime.idempotency import IdempotencyStore, IdempotencyStoreProtocol
from btcbot.runtime.latest import LastMessage, last_per_subject
from btcbot.runtime.reservations import RedisReservations, ReservationsProtocol
from btcbot.runtime.rulefeed import keep_rules
from btcbot.runtime.service import Service

_NS = 1_000_000_000
_portfolio: Codec[PortfolioSnapshot] = Codec(PortfolioSnapshot)


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


class StateRules:
    """Risk's state as the kit's rule feed fills it (the rules carry the time they were loaded)."""

    def __init__(self, state: RiskState, clock: Callable[[], int]) -> None:
        self._state = state
        self._clock = clock

    @property
    def loaded(self) -> bool:
        """True once rules were loaded."""
        return self._state.rules is not None

    def load(self, symbols: Iterable[ExchangeSymbol]) -> int:
        """Replace the state's rules with a fresh exchangeinfo's."""
        rules = rules_from_exchange(symbols)
        self._state.set_rules(rules, self._clock())
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

    async def fetch() -> tuple[ExchangeSymbol, ...]:
        return (await client.exchange_info()).symbols

    await keep_rules(
        stop,
        fetch,
        StateRules(state, svc.now_ns),
        svc.log,
        service="risk",
        every=every,
        retry_max=retry_max,
        errors=(BtcTurkError,),
        rng=rng,
    )


async def first_load(client: RulesClient, state: RiskState, svc: Service, timeout: float) -> None:
    """Try to load the rules before the consumers start, so the first intents are not denied for want of them."""
    try:
        count = await asyncio.wait_for(load_rules(client, state, svc.now_ns()), timeout)
    except (BtcTurkError, TimeoutError) as exc:
        # Not fatal: intents are denied RULES_NOT_LOADED until the refresh task gets them.
        svc.log.warning("risk.rules_failed", error_class=type(exc).__name__, error=str(exc), failures=1)
    else:
        svc.log.info("risk.rules_loaded", symbols=count)


async def rebuild(
    handlers: RiskHandlers, state: RiskState, control: dict[str, LastMessage], portfolio: LastMessage | None, log: Any
) -> None:
    """Apply the last trusted message of every control subject (and the newest portfolio) in stream order."""
    for subject, last in sorted(control.items(), key=lambda item: item[1].sequence):
        await handlers.apply_raw(subject, last.sequence, last.data, rebuild=True)
    if portfolio is not None:
        try:
            state.on_portfolio(_portfolio.decode(portfolio.data))
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            log.warning("risk.portfolio_unreadable", seq=portfolio.sequence, error=str(exc))
    handlers.rebuilt = True
    log.warning(
        "risk.control_rebuilt",
        kill_engaged=state.kill_engaged,
        mode=state.mode,
        auto_mode=state.auto.mode,
        auto_reasons=list(state.auto.reasons),
        alarms=list(state.active_alarms()),
        unreadable=sorted(state.unreadable),
        subjects=len(control),
        portfolio_seq=portfolio.sequence if portfolio else 0,
    )
    await handlers.evaluate_auto()


async def auto_tick(stop: asyncio.Event, handlers: RiskHandlers, every: float) -> None:
    """Re-run the budget on a clock: snapshot freshness and cooldowns are about time, not messages."""
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), every)
        await handlers.evaluate_auto()


def register(
    svc: Service,
    settings: RiskSettings,
    client: RulesClient,
    state: RiskState | None = None,
    verdicts: IdempotencyStoreProtocol | None = None,
    *,
    open_orders: OpenOrders | None = None,
    reservations: ReservationsProtocol | None = None,
) -> RiskState:
    """Register the start-up rebuild, consumers, the rules and budget tasks and readiness on `svc`."""
    signer = settings.signer()
    if signer is None:
        raise SettingsError("risk signs every order: BTCBOT_SIGNING_KEY_ID and BTCBOT_SIGNING_KEY are required")
    svc.log.info("risk.signing", key_id=signer.key_id, control_key_ids=sorted(settings.verification_keys()))
    state = state if state is not None else RiskState(settings.account)
    handlers = RiskHandlers(
        state,
        settings.limits(),
        svc.bus,
        svc.now_ns,
        svc.log,
        verdicts=verdicts,
        owner=settings.instance,
        budget=settings.budget() if settings.auto_mode else None,
        open_orders=open_orders if open_orders is not None else reservations,
        failure_alarm_after=settings.failure_alarm_after,
        max_skew_ns=int(settings.max_clock_skew * _NS),
        reservations=reservations,
        reserve_limits=settings.reserve_limits(),
        signer=signer,
        control_keys=settings.verification_keys(),
    )
    rng = random.Random()

    async def rules_task(stop: asyncio.Event) -> None:
        await refresh_rules(
            stop, client, state, svc, every=settings.rules_refresh, retry_max=settings.rules_retry_max, rng=rng
        )

    async def rebuild_control() -> None:
        skew = int(settings.max_clock_skew * _NS)
        control = await last_per_subject(svc.js, CONTROL.name, RISK_CONTROL.filter_subjects, skew)
        found = await last_per_subject(svc.js, PORTFOLIO.name, (subjects.portfolio(settings.account),), skew)
        await rebuild(handlers, state, control, next(iter(found.values()), None), svc.log)

    async def tick_task(stop: asyncio.Event) -> None:
        await auto_tick(stop, handlers, settings.mode_tick)

    async def control_metrics(stop: asyncio.Event) -> None:
        while not stop.is_set():
            report_control(state)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 1.0)

    svc.before_consumers("control-rebuild", rebuild_control)
    svc.task("control-metrics", control_metrics)
    svc.task("rules", rules_task)
    svc.task("auto-mode", tick_task)
    svc.readiness("rules", lambda: state.rules is not None)
    svc.consume(RISK_CONTROL, RawControlCodec(), handlers.on_control)
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
    svc.dependency("exchange", client.no_breaker_open)
    svc.on_close(client.aclose)
    state = RiskState(settings.account)
    await first_load(client, state, svc, timeout=settings.btcturk_timeout * 2)
    verdicts = None
    redis = await svc.redis()
    if settings.shared_verdicts:
        verdicts = IdempotencyStore(redis, f"{settings.key_prefix}:{settings.account}", ack=svc.redis_ack)
    # Always: no approval without a reservation (Redis down means intents wait).
    reservations = RedisReservations(redis, f"{settings.key_prefix}:{settings.account}", ack=svc.redis_ack)
    register(svc, settings, client, state, verdicts, reservations=reservations)
    svc.log.info(
        "risk.configured",
        max_order_notional=str(settings.max_order_notional),
        max_intent_age=settings.max_intent_age,
        base_url=settings.btcturk_base_url,
    )
