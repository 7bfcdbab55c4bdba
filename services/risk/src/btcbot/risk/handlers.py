"""Decode, check, publish: intents become SubmitOrder or OrderDenied; control and portfolio update state."""

from __future__ import annotations

import base64
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import msgspec

from btcbot.contracts import ids, subjects
from btcbot.contracts.codec import Codec, encode
from btcbot.contracts.messages import (
    Alarm,
    BookSnapshot,
    CancelOrder,
    KillSwitch,
    Message,
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
from btcbot.contracts.rejects import is_min_total_reject
from btcbot.contracts.signing import BAD_SIGNATURE, Signer, key_id_of, verify
from btcbot.risk.control import ControlMessage, RiskState
from btcbot.risk.limits import Approved, Denied, RiskLimits, Verdict, check
from btcbot.risk.modes import AutoState, BudgetLimits
from btcbot.risk.pretrade import holdings
from btcbot.runtime import reservations as res
from btcbot.runtime.bus import Delivery, Publisher
from btcbot.runtime.errors import Poison, Retry
from btcbot.runtime.idempotency import IdempotencyStoreProtocol
from btcbot.runtime.metrics import INTENT_TO_VERDICT, instruments, observe_stage
from btcbot.runtime.sanity import FUTURE_DATED, is_future_dated

CONTROL_UNREADABLE = "CONTROL_UNREADABLE"
ALARM_SOURCE = "risk"
ALARM_KIND = "repeated_failures"
_control: Codec[ControlMessage] = Codec(ControlMessage)


class RawControl(Message, frozen=True, kw_only=True, tag="risk-raw-control"):
    """A control payload as stored, undecoded: risk decodes it itself so that an unreadable one fails closed.

    Never published; it only carries the bytes from the consumer loop to `on_control`.
    """

    data: bytes


class _Stamp(msgspec.Struct):
    id: str = ""
    ts_ns: int = 0


_stamp = msgspec.msgpack.Decoder(_Stamp)


class RawControlCodec(Codec[RawControl]):
    """Hands the handler the raw bytes of a control message (decoding cannot fail here).

    The id and creation time are read when they can be, so the kit's checks on them (FUTURE_DATED) still apply.
    """

    def __init__(self) -> None:
        super().__init__(RawControl)

    def decode(self, data: bytes) -> RawControl:
        """Wrap the bytes."""
        try:
            stamp = _stamp.decode(data)
        except (msgspec.DecodeError, msgspec.ValidationError):
            stamp = _Stamp()
        return RawControl(id=stamp.id, ts_ns=stamp.ts_ns, data=data)


class OpenOrders(Protocol):
    """Where risk learns which orders rest at the exchange (the reservation store), for cancel-on-kill."""

    async def open_orders(self) -> list[tuple[str, str]]:
        """(client_order_id, symbol) of every order approved and not yet terminal."""
        ...


ExecutionEvent = OrderAccepted | OrderRejected | OrderCanceled | OrderFilled
# Verdicts are kept as long as an intent can be redelivered or replayed into the same durable.
VERDICT_TTL_S = 7 * 24 * 3600.0
_verdicts: Codec[SubmitOrder | OrderDenied] = Codec(SubmitOrder | OrderDenied)


def _reason_text(reasons: tuple[str, ...], alarms: tuple[str, ...]) -> str:
    """Words for an automatic change: its codes, and which alarms hold it."""
    text = ", ".join(reasons) or "budget clear"
    return f"{text} ({', '.join(alarms)})" if "ALARM" in reasons and alarms else text


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
        book_ts_ns=intent.book_ts_ns,
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
        budget: BudgetLimits | None = None,
        open_orders: OpenOrders | None = None,
        failure_alarm_after: int = 5,
        max_skew_ns: int = 5_000_000_000,
        reservations: res.ReservationsProtocol | None = None,
        reserve_limits: res.ReserveLimits | None = None,
        signer: Signer | None = None,
        control_keys: Mapping[str, bytes] | None = None,
    ) -> None:
        """`signer`: risk's key; every SubmitOrder and automatic ModeChanged is signed with it (the service
        refuses to start without one; None only in handler tests). `control_keys`: the keys a control.mode,
        control.kill or control.auto message must be signed with (the operator's and risk's own); a message
        without a valid signature is unreadable (fail closed). None skips the check (handler tests only)."""
        self._signer = signer
        self._control_keys = control_keys
        self._state = state
        # None: the automatic budget is not evaluated here (published automatic modes still apply at rebuild).
        self._budget = budget
        self._open_orders = open_orders
        self._failure_alarm_after = failure_alarm_after
        self._max_skew_ns = max_skew_ns
        self._failures = 0
        # What this replica last published on its alarm subject; None: the stream's last alarm (in state) says.
        self._alarm_raised: bool | None = None
        self._cancelled_kills: set[int] = set()
        # The automatic budget is evaluated only once control state was rebuilt from the stream (start-up gate).
        self.rebuilt = False
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
        """Check an intent and publish SubmitOrder or OrderDenied; repeated failures raise an alarm."""
        try:
            await self._on_intent(intent)
        except Poison:
            raise
        except Exception as exc:
            self._failures += 1
            if self._failures >= self._failure_alarm_after and not self._alarm_active():
                await self._publish_alarm(True, f"{self._failures} intents failed in a row; last: {exc!r}")
            raise
        self._failures = 0
        if self._alarm_active():
            # Any replica handling intents again clears it (also one raised by a replica that died since).
            await self._publish_alarm(False, "intents are handled again")

    def _alarm_active(self) -> bool:
        if self._alarm_raised is not None:
            return self._alarm_raised
        alarm = self._state.alarms.get(subjects.alarm(ALARM_SOURCE, ALARM_KIND))
        return alarm is not None and alarm.active

    async def _publish_alarm(self, active: bool, detail: str) -> None:
        now = self._clock()
        alarm = Alarm(
            id=ids.alarm_id(ALARM_SOURCE, ALARM_KIND, active, f"{self._owner}:{now}"),
            ts_ns=now,
            source=ALARM_SOURCE,
            kind=ALARM_KIND,
            active=active,
            detail=detail,
        )
        try:
            await self._bus.publish(subjects.alarm(ALARM_SOURCE, ALARM_KIND), alarm)
        except Exception as exc:  # the alarm is best effort: never mask the failure that caused it
            self._log.error("risk.alarm_publish_failed", active=active, error=repr(exc))
            return
        self._alarm_raised = active
        self._log.warning("risk.alarm", kind=ALARM_KIND, active=active, detail=detail)

    async def _on_intent(self, intent: OrderIntent) -> None:
        remembered = self._verdicts.get(intent.id)
        fresh = remembered is None
        if remembered is None:
            remembered = await self._verdict(intent)
            self._verdicts[intent.id] = remembered
            while len(self._verdicts) > self._memory:
                self._verdicts.popitem(last=False)
        subject, message = remembered
        await self._bus.publish(subject, message)
        if fresh:
            observe_stage(INTENT_TO_VERDICT, intent.ts_ns, self._clock())
            if isinstance(message, OrderDenied):
                instruments().denials.add(1, {"symbol": intent.symbol, "reason": message.reason})
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
        if isinstance(first, SubmitOrder):
            first = self._repeatable(first)
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

    def _signed(self, order: SubmitOrder) -> SubmitOrder:
        return self._signer.sign(order) if self._signer is not None else order

    def _repeatable(self, order: SubmitOrder) -> SubmitOrder:
        """A SubmitOrder read back from Redis, signed by a key execution still accepts.

        Stored by this or another replica, possibly under another key (another replica's during a rotation, one
        since retired) or before orders were signed: those are re-signed with our current key. A signature by our
        key that does not match the content means the stored verdict was altered: never re-signed, the intent is
        dead-lettered.
        """
        if self._signer is None:
            return order
        problem = verify(order, self._signer.keys())
        if problem is None:
            return order
        if problem == BAD_SIGNATURE:
            raise Poison(f"stored verdict of {order.intent_id} has a signature that does not match it")
        self._log.warning(
            "risk.verdict_resigned", intent_id=order.intent_id, problem=problem, old_key_id=key_id_of(order),
            key_id=self._signer.key_id,
        )  # fmt: skip
        return self._signer.sign(order)

    async def _decide(self, intent: OrderIntent) -> tuple[str, SubmitOrder | OrderDenied]:
        now = self._clock()
        verdict = check(intent, self._state.view(), self._limits, now)
        if isinstance(verdict, Approved) and self._reservations is not None:
            verdict = await self._reserve(intent, verdict, now)
        if isinstance(verdict, Approved):
            return subjects.submit(intent.symbol), self._signed(to_submit(intent, verdict.checks, now))
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

    async def on_control(self, raw: RawControl, delivery: Delivery) -> None:
        """Apply a control message in stream order; an unreadable one fails closed and is dead-lettered."""
        problem = await self.apply_raw(delivery.subject, delivery.sequence, raw.data)
        if problem is not None:
            code = FUTURE_DATED if problem.startswith(FUTURE_DATED) else CONTROL_UNREADABLE
            raise Poison(f"{code}: {delivery.subject}: {problem}")
        await self.evaluate_auto()

    async def apply_raw(self, subject: str, seq: int, data: bytes, *, rebuild: bool = False) -> str | None:
        """Decode and apply the message stored at `seq` on `subject`; returns why it is unreadable, else None."""
        state = self._state
        if not state.is_new(subject, seq):
            # Redelivered or replayed: the state already holds this or a later message. A kill whose cancels
            # failed is the exception: finish them.
            if seq == state.applied_seq(subject) and not rebuild:
                await self._finish_kill(subject, seq, data)
            return None
        try:
            message = _control.decode(data)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            state.apply_unreadable(subject, seq, f"undecodable: {exc}")
            self._log.error("risk.control_unreadable", subject=subject, seq=seq, error=str(exc), rebuild=rebuild)
            return f"undecodable: {exc}"
        unsigned = self._signature_problem(subject, message)
        if unsigned is not None:
            state.apply_unreadable(subject, seq, unsigned)
            self._log.error("risk.control_unsigned", subject=subject, seq=seq, error=unsigned, rebuild=rebuild)
            return unsigned
        if not rebuild and is_future_dated(message.ts_ns, self._clock(), self._max_skew_ns):
            # Dated ahead of now, so ahead of when it was stored: not trusted (the kit dead-letters these too;
            # at a rebuild the kit's reader already skipped them). The message in force stays.
            self._log.error("risk.control_future_dated", subject=subject, seq=seq, ts_ns=message.ts_ns)
            return f"{FUTURE_DATED}: dated {(message.ts_ns - self._clock()) / 1e9:.1f}s ahead"
        if subject == subjects.CONTROL_AUTO and not rebuild:
            # Each replica runs the budget itself; the stream's automatic mode is adopted at start-up only.
            state.note_seq(subject, seq)
            return None
        state.apply_control(subject, seq, message)
        if subject == subjects.alarm(ALARM_SOURCE, ALARM_KIND):
            self._alarm_raised = None  # the stream's word is newer than ours
        if subject in state.unreadable:
            self._log.error("risk.control_unreadable", subject=subject, seq=seq, error=state.unreadable[subject])
            return state.unreadable[subject]
        self._log_control(subject, seq, message, rebuild)
        if not rebuild:
            await self._finish_kill(subject, seq, data, message)
        return None

    def _signature_problem(self, subject: str, message: ControlMessage) -> str | None:
        """Why a control message's signature is not acceptable (None: it is, or it needs none).

        Alarms are not signed: only their producer's identity may publish them and they only make trading stricter.
        """
        if self._control_keys is None or isinstance(message, Alarm):
            return None
        problem = verify(message, self._control_keys)
        if problem is None:
            return None
        return f"signature {problem} (key id {key_id_of(message)!r})"

    def _log_control(self, subject: str, seq: int, message: ControlMessage, rebuild: bool) -> None:
        if isinstance(message, KillSwitch):
            self._log.warning(
                "risk.kill_switch",
                engaged=message.engaged,
                reason=message.reason,
                operator=message.operator,
                seq=seq,
                rebuild=rebuild,
            )
        elif isinstance(message, Alarm):
            self._log.warning(
                "risk.alarm_seen", subject=subject, active=message.active, detail=message.detail, rebuild=rebuild
            )
        else:
            self._log.warning(
                "risk.mode",
                subject=subject,
                mode=message.mode,
                reason=message.reason,
                operator=message.operator,
                reasons=list(message.reasons),
                seq=seq,
                rebuild=rebuild,
            )

    async def _finish_kill(self, subject: str, seq: int, data: bytes, message: ControlMessage | None = None) -> None:
        """With `cancel_resting`, an engaged kill switch cancels every open order (once per kill message)."""
        if subject != subjects.CONTROL_KILL or seq in self._cancelled_kills:
            return
        if message is None:
            try:
                message = _control.decode(data)
            except (msgspec.DecodeError, msgspec.ValidationError):
                return
            if self._signature_problem(subject, message) is not None:
                return
        if not (isinstance(message, KillSwitch) and message.engaged and message.cancel_resting):
            return
        if self._open_orders is None:
            self._log.error("risk.cancel_resting_unavailable", reason="no open-order source wired")
            self._cancelled_kills.add(seq)
            return
        # A failure here naks the kill message; the redelivery (same sequence) finishes the cancels.
        orders = await self._open_orders.open_orders()
        now = self._clock()
        for client_order_id, symbol in orders:
            await self._bus.publish(
                subjects.cancel(symbol),
                CancelOrder(
                    id=ids.cancel_command_id(client_order_id, "KILL_SWITCH"),
                    ts_ns=now,
                    client_order_id=client_order_id,
                    symbol=symbol,
                    reason="KILL_SWITCH",
                    requested_by=f"risk:{self._owner}",
                ),
            )
        self._cancelled_kills.add(seq)
        self._log.warning("risk.kill_cancelled_resting", orders=len(orders))

    async def evaluate_auto(self) -> AutoState | None:
        """Run the automatic budget; publish and log a change (one id per change, so replicas dedupe)."""
        if self._budget is None or not self.rebuilt:
            return None
        before = self._state.auto
        changed = self._state.evaluate(self._budget, self._clock())
        if changed is None:
            return None
        snapshot = self._state.snapshot
        cause = f"{snapshot.id if snapshot else 'none'}:{self._state.alarm_seq()}:{'+'.join(changed.reasons)}"
        event: ModeChanged = ModeChanged(
            id=ids.auto_mode_id(changed.mode, cause),
            ts_ns=changed.since_ns,
            mode=changed.mode,
            reason=_reason_text(changed.reasons, self._state.active_alarms()),
            operator=f"risk:{self._owner}",
            source="auto",
            reasons=changed.reasons,
        )
        if self._signer is not None:
            event = self._signer.sign(event)
        level = "warning" if changed.mode != before.mode else "info"
        getattr(self._log, level)(
            "risk.auto_mode",
            mode=changed.mode,
            previous=before.mode,
            reasons=list(changed.reasons),
            alarms=list(self._state.active_alarms()),
        )
        try:
            await self._bus.publish(subjects.CONTROL_AUTO, event)
        except Exception as exc:  # the local state already holds; the next change is published anyway
            self._log.error("risk.auto_mode_publish_failed", error=repr(exc))
        return changed

    async def on_book(self, book: BookSnapshot, delivery: Delivery) -> None:
        """Track how fresh each symbol's market is."""
        self._state.on_book(book)

    async def on_portfolio(self, snapshot: PortfolioSnapshot, delivery: Delivery) -> None:
        """Take positions from this account's ledger snapshots, and run the budget on them."""
        if self._state.on_portfolio(snapshot):
            await self.evaluate_auto()


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
