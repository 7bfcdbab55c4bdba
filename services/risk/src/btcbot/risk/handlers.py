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
    OrderDenied,
    OrderIntent,
    PortfolioSnapshot,
    SubmitOrder,
)
from btcbot.risk.control import RiskState
from btcbot.risk.limits import Approved, RiskLimits, check
from btcbot.runtime.bus import Delivery, Publisher
from btcbot.runtime.errors import Retry
from btcbot.runtime.idempotency import IdempotencyStoreProtocol

ControlMessage = ModeChanged | KillSwitch
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

    async def on_intent(self, intent: OrderIntent, delivery: Delivery) -> None:
        """Check an intent and publish SubmitOrder or OrderDenied."""
        remembered = self._verdicts.get(intent.id)
        if remembered is None:
            remembered = await self._first_verdict(intent, self._decide(intent))
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
        stored = await self._shared.get(key)
        if stored is None or "verdict" not in stored:
            raise Retry(f"verdict of {intent.id} claimed but not readable yet", delay=1.0)
        first = _verdicts.decode(base64.b64decode(stored["verdict"]))
        subject = subjects.submit(intent.symbol) if isinstance(first, SubmitOrder) else subjects.denied(intent.symbol)
        return subject, first

    def _decide(self, intent: OrderIntent) -> tuple[str, SubmitOrder | OrderDenied]:
        now = self._clock()
        verdict = check(intent, self._state.view(), self._limits, now)
        if isinstance(verdict, Approved):
            return subjects.submit(intent.symbol), to_submit(intent, verdict.checks, now)
        return subjects.denied(intent.symbol), to_denied(intent, verdict.reason, verdict.detail, now)

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
