"""Decode, check, publish: intents become SubmitOrder or OrderDenied; control and portfolio update state."""

from __future__ import annotations

import base64
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from btcbot.contracts import ids, subjects
from btcbot.contracts.codec import Codec, encode
from btcbot.contracts.messages import (
    BookSnapshot,
    KillSwitch,
    ModeChanged,
    OrderAccepted,
    OrderCanceled,
    OrderDenied,
    OrderFilled,
    OrderIntent,
    OrderRejected,
    PortfolioSnapshot,
    SubmitOrder,
)
from btcbot.risk.control import RiskState
from btcbot.risk.limits import Approved, Denied, RiskLimits, Verdict, check
from btcbot.risk.pretrade import holdings, is_min_total_reject
from btcbot.runtime import reservations as res
from btcbot.runtime.bus import Delivery, Publisher
from btcbot.runtime.errors import Poison, Retry
from btcbot.runtime.idempotency import IdempotencyStoreProtocol

ControlMessage = ModeChanged | KillSwitch
ExecutionEvent = OrderAccepted | OrderRejected | OrderCanceled | OrderFilled
# Verdicts are kept as long as an intent can be redelivered or replayed into the same durable.
VERDICT_TTL_S = 7 * 24 * 3600.0
_verdicts: Codec[SubmitOrder | OrderDenied] = Codec(SubmitOrder | OrderDenied)


def to_submit(intent: OrderIntent, checks: tuple[str, ...], now_ns: int) -> SubmitOrder:
    """The SubmitOrder command an approved intent becomes."""
    client_order_id = ids.client_order_id(intent.id)
    return SubmitOrder(
        id=ids.submit_id(client_order_id),
        ts_ns=now_ns,
        client_order_id=client_order_id,
        intent_id=intent.id,
        strategy=intent.strategy,
        symbol=intent.symbol,
        side=intent.side,
        order_type=intent.order_type,
        price=intent.price,
        quantity=intent.quantity,
        checks=checks,
    )


def to_denied(intent: OrderIntent, reason: str, detail: str, now_ns: int) -> OrderDenied:
    """The OrderDenied event of a refused intent."""
    return OrderDenied(
        id=ids.denied_id(intent.id),
        ts_ns=now_ns,
        intent_id=intent.id,
        strategy=intent.strategy,
        symbol=intent.symbol,
        reason=reason,
        detail=detail,
    )


class RiskHandlers:
    """The risk consumers, sharing one state."""

    def __init__(
        self,
        state: RiskState,
        limits: RiskLimits,
        bus: Publisher,
        clock: Callable[[], int],
        log: Any,
        memory: int = 10_000,
        verdicts: IdempotencyStoreProtocol | None = None,
        owner: str = "risk",
        reservations: res.ReservationsProtocol | None = None,
        reserve_limits: res.ReserveLimits | None = None,
    ) -> None:
        self._state = state
        # Shared across replicas: the first verdict on an intent, whichever replica reached it.
        self._shared = verdicts
        self._owner = owner
        self._limits = limits
        self._bus = bus
        self._clock = clock
        self._log = log
        self._memory = memory
        # A redelivered intent (publish failed, or the ack was lost) must get the verdict it got the first
        # time: the switches may have moved since, and an intent must never be both approved and denied.
        self._verdicts: OrderedDict[str, tuple[str, SubmitOrder | OrderDenied]] = OrderedDict()
        # Shared across replicas: every approval reserves its order here first (None: no in-flight limits).
        self._reservations = reservations
        self._reserve_limits = reserve_limits or res.ReserveLimits()

    async def on_intent(self, intent: OrderIntent, delivery: Delivery) -> None:
        """Check an intent and publish SubmitOrder or OrderDenied."""
        remembered = self._verdicts.get(intent.id)
        if remembered is None:
            remembered = await self._verdict(intent)
            self._verdicts[intent.id] = remembered
            while len(self._verdicts) > self._memory:
                self._verdicts.popitem(last=False)
        subject, message = remembered
        await self._bus.publish(subject, message)
        if isinstance(message, SubmitOrder):
            self._log.info(
                "risk.approved",
                intent_id=intent.id,
                client_order_id=message.client_order_id,
                symbol=intent.symbol,
                side=intent.side,
                price=str(intent.price),
                quantity=str(intent.quantity),
            )
        else:
            self._log.info(
                "risk.denied",
                intent_id=intent.id,
                symbol=intent.symbol,
                reason=message.reason,
                detail=message.detail,
            )

    async def _verdict(self, intent: OrderIntent) -> tuple[str, SubmitOrder | OrderDenied]:
        """The intent's one verdict: approved only with a reservation; a denial never keeps one."""
        first = await self._stored_verdict(intent) if self._shared is not None else None
        if first is None:
            first = await self._first_verdict(intent, await self._decide(intent))
        if isinstance(first[1], OrderDenied) and self._shared is not None and self._reservations is not None:
            # We (or a replica racing us, or an earlier life that crashed before its claim) may have reserved for
            # an intent whose first verdict is a denial: no SubmitOrder for it is ever published, so release.
            await self._reservations.release_denied(ids.client_order_id(intent.id))
        return first

    async def _stored_verdict(self, intent: OrderIntent) -> tuple[str, SubmitOrder | OrderDenied] | None:
        assert self._shared is not None
        stored = await self._shared.get(f"risk:verdict:{intent.id}")
        if stored is None or "verdict" not in stored:
            return None
        first = _verdicts.decode(base64.b64decode(stored["verdict"]))
        subject = subjects.submit(intent.symbol) if isinstance(first, SubmitOrder) else subjects.denied(intent.symbol)
        return subject, first

    async def _first_verdict(
        self, intent: OrderIntent, mine: tuple[str, SubmitOrder | OrderDenied]
    ) -> tuple[str, SubmitOrder | OrderDenied]:
        """Record our verdict unless another replica (or an earlier life) recorded one first; return the first."""
        if self._shared is None:
            return mine
        key = f"risk:verdict:{intent.id}"
        encoded = base64.b64encode(encode(mine[1])).decode()
        # Redis down raises DependencyUnavailable: the intent is retried later, never decided twice.
        if await self._shared.claim(key, self._owner, VERDICT_TTL_S, fields={"verdict": encoded}):
            return mine
        first = await self._stored_verdict(intent)
        if first is None:
            raise Retry(f"verdict of {intent.id} claimed but not readable yet", delay=1.0)
        return first

    async def _decide(self, intent: OrderIntent) -> tuple[str, SubmitOrder | OrderDenied]:
        now = self._clock()
        verdict = check(intent, self._state.view(), self._limits, now)
        if isinstance(verdict, Approved) and self._reservations is not None:
            verdict = await self._reserve(intent, verdict, now)
        if isinstance(verdict, Approved):
            return subjects.submit(intent.symbol), to_submit(intent, verdict.checks, now)
        return subjects.denied(intent.symbol), to_denied(intent, verdict.reason, verdict.detail, now)

    def _reserve_request(self, intent: OrderIntent, now: int) -> res.ReserveRequest | None:
        """The reservation an approved limit order asks for, against our latest snapshot (None: too large)."""
        assert intent.price is not None  # a limit order passed check()
        held = holdings(self._state.snapshot, intent.symbol)
        return res.request(
            ids.client_order_id(intent.id),
            intent.symbol,
            intent.side,
            intent.quantity,
            intent.price,
            now,
            snap_seq=held.snap_seq,
            position=held.position,
            symbol_value=held.symbol_value,
            exposure=held.exposure,
            cash=held.cash,
        )

    async def _reserve(self, intent: OrderIntent, passed: Approved, now: int) -> Verdict:
        """Reserve the order against the in-flight limits (atomic across replicas) or say which one it breaks."""
        assert self._reservations is not None
        req = self._reserve_request(intent, now)
        if req is None:
            return Denied("ORDER_TOO_LARGE", f"{intent.quantity} at {intent.price} is beyond what risk can count")
        # Redis down raises DependencyUnavailable: the intent waits, it is never approved without a reservation.
        answer = await self._reservations.reserve(req, self._reserve_limits)
        if answer.outcome == "stale":
            raise Retry(
                f"portfolio snapshot at exec seq {answer.have} is older than one already used ({answer.need})", 1.0
            )
        if answer.outcome == "denied":
            return Denied(answer.reason, _detail(answer, intent))
        return Approved((*passed.checks, *res.CHECKS))

    async def on_execution(self, event: ExecutionEvent, delivery: Delivery) -> None:
        """Order outcomes release reservations; minimum-total rejects count towards a symbol's cooldown."""
        store = self._reservations
        if store is None:
            return
        amounts = (
            (event.filled_quantity,)
            if isinstance(event, OrderCanceled)
            else (event.quantity, event.price)
            if isinstance(event, OrderFilled)
            else ()
        )
        if not all(a.is_finite() and a >= 0 for a in amounts):
            raise Poison(f"{type(event).__name__} {event.id} has a non-finite or negative amount: {amounts}")
        if isinstance(event, OrderAccepted):
            await store.accepted(event.client_order_id)
        elif isinstance(event, OrderRejected):
            await store.rejected(event.client_order_id)
            if is_min_total_reject(event):
                limits = self._reserve_limits
                until = await store.min_total_reject(
                    event.symbol,
                    event.id,
                    event.ts_ns // 1_000_000,
                    limits.min_total_window_ms,
                    limits.min_total_rejects,
                    limits.min_total_cooldown_ms,
                )
                self._log.warning("risk.min_total_reject", symbol=event.symbol, cooldown_until_ms=until)
        elif isinstance(event, OrderCanceled):
            filled = res.clamp(res.to_units(event.filled_quantity, res.QTY_SCALE, up=True))
            await store.canceled(event.client_order_id, filled, delivery.sequence)
        else:
            await store.filled(
                event.client_order_id,
                event.symbol,
                event.side,
                event.trade_id,
                res.clamp(res.to_units(event.quantity, res.QTY_SCALE, up=True)),
                res.clamp(res.to_units(event.quantity * event.price, res.QUOTE_SCALE, up=True)),
                delivery.sequence,
            )

    async def on_control(self, message: ControlMessage, delivery: Delivery) -> None:
        """Apply a mode change or kill switch (the newest wins)."""
        if isinstance(message, ModeChanged):
            if self._state.on_mode(message):
                self._log.warning("risk.mode", mode=message.mode, reason=message.reason, operator=message.operator)
        elif self._state.on_kill(message):
            self._log.warning(
                "risk.kill_switch", engaged=message.engaged, reason=message.reason, operator=message.operator
            )

    async def on_book(self, book: BookSnapshot, delivery: Delivery) -> None:
        """Track how fresh each symbol's market is."""
        self._state.on_book(book)

    async def on_portfolio(self, snapshot: PortfolioSnapshot, delivery: Delivery) -> None:
        """Take positions from this account's ledger snapshots."""
        self._state.on_portfolio(snapshot)


def _detail(answer: res.ReserveAnswer, intent: OrderIntent) -> str:
    """Words for an in-flight denial (the script answers in units)."""
    have, need = answer.have, answer.need

    def quote(units: int) -> str:
        return str(res.from_units(units, res.QUOTE_SCALE))

    def qty(units: int) -> str:
        return str(res.from_units(units, res.QTY_SCALE))

    words = {
        res.MIN_TOTAL_COOLDOWN: f"{intent.symbol} had repeated minimum-total rejects; {need - have} ms to go",
        res.OUTCOME_UNKNOWN: f"{have} approved {intent.symbol} order(s) have no known outcome yet",
        res.OPEN_ORDERS_SYMBOL: f"{have} open {intent.symbol} order(s), limit {need}",
        res.OPEN_ORDERS_TOTAL: f"{have} open orders, limit {need}",
        res.COOLDOWN: f"{intent.symbol} {intent.side} approved {have} ms ago, cooldown {need} ms",
        res.OVERSELL: f"sell {qty(need)} > {qty(have)} held and not already being sold",
        res.CASH_RESERVE: f"buy of {quote(need)} > {quote(have)} cash free beyond the reserve and buys in flight",
        res.SYMBOL_EXPOSURE: f"buy of {quote(need)} > {quote(have)} left under the {intent.symbol} exposure cap",
        res.EXPOSURE_BUDGET: f"buy of {quote(need)} > {quote(have)} left in the exposure budget",
    }
    return words.get(answer.reason, f"{answer.reason}: {have} vs {need}")
