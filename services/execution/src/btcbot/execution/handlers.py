"""Order handlers: claim, lock, ask or tell the exchange, run the state machine, publish, record.

Exactly-once placement rests on three records kept in this order: the claim (taken before any exchange
call), the phase "sending" (written before the POST) and "sent" (after the answer). A redelivered command
whose claim exists never posts again unless its record proves nothing was sent; otherwise the exchange is
asked by client order id and only the missing events are emitted. Events are published before the record
is updated, so a crash in between republishes the same deterministic ids, which JetStream drops.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Literal, Protocol

import structlog
from opentelemetry import trace

from btcbot.btcturk.errors import BtcTurkError, NotFound, OutcomeUnknown, RateLimited, Rejected
from btcbot.contracts import ids, subjects
from btcbot.contracts.messages import (
    CancelOrder,
    Message,
    OrderAccepted,
    OrderCanceled,
    OrderFilled,
    OrderRejected,
    SubmitOrder,
)
from btcbot.contracts.signing import UNSIGNED, verify
from btcbot.execution import orders
from btcbot.execution.exchange import Exchange
from btcbot.execution.journal import Journal
from btcbot.execution.orders import IllegalTransition, Status
from btcbot.execution.reconcile import ExchangeStatus, Verdict, reconcile
from btcbot.execution.record import CorruptRecord, Phase, Record
from btcbot.execution.rules import RULES_NOT_LOADED, ExchangeRules, refusal
from btcbot.runtime.bus import Delivery, Publisher
from btcbot.runtime.errors import Poison, Retry, StaleToken
from btcbot.runtime.locks import Lease
from btcbot.runtime.metrics import VERDICT_TO_REQUEST, instruments, observe_stage, seconds_between
from btcbot.runtime.telemetry import current_traceparent

_tracer = trace.get_tracer("btcbot.execution")
_KINDS: dict[type[Message], str] = {
    OrderAccepted: "accepted",
    OrderRejected: "rejected",
    OrderCanceled: "canceled",
    OrderFilled: "filled",
}

# What to do with an order whose POST proved never to have arrived (see Execution.resolve).
Missing = Literal["place", "reject", "unsent"]


class Locks(Protocol):
    """The fenced lock (``btcbot.runtime.locks.FencedLock``)."""

    async def acquire(self, name: str, owner: str, ttl_s: float, wait_s: float = 0.0) -> Lease | None:
        """Take the lock or return None."""

    async def validate(self, lease: Lease) -> None:
        """Raise StaleToken unless the lease is current."""

    async def release(self, lease: Lease) -> None:
        """Release a lease still held."""


@dataclass(frozen=True)
class Policy:
    """Timing and patience of the handlers."""

    lock_ttl_s: float = 15.0
    lock_wait_s: float = 2.0
    lookups: int = 3  # times an order stuck in "sending" is looked for before it counts as never sent
    lookup_delay_s: float = 2.0
    max_order_age_s: float = 120.0  # 0 disables; an older command is rejected instead of placed late
    cancel_confirm_delay_s: float = 1.0
    rules_wait_s: float = 2.0  # retry delay of a command that arrives before the exchange rules are loaded
    rules_wait_max_s: float = 8.0  # ... and its age at which it is rejected RULES_NOT_LOADED (before max_deliver)


class Execution:
    """The execution engine's I/O shell: one instance per process, shared by handlers and the fill poller."""

    def __init__(
        self,
        *,
        bus: Publisher,
        journal: Journal,
        locks: Locks,
        exchange: Exchange,
        account: str,
        owner: str,
        clock: Callable[[], int],
        policy: Policy | None = None,
        log: structlog.stdlib.BoundLogger | None = None,
        rules: ExchangeRules | None = None,
        order_keys: Mapping[str, bytes] | None = None,
    ) -> None:
        """`rules`: the symbols' exchange rules every order is checked against before it is sent (the service
        always wires them; None skips the check, for handler tests whose fakes have no exchangeinfo).
        `order_keys`: the keys a SubmitOrder must be signed with (risk's); None accepts unsigned orders, which
        the service does only with EXECUTION_ACCEPT_UNSIGNED=true."""
        self.bus = bus
        self.journal = journal
        self.locks = locks
        self.exchange = exchange
        self.account = account
        self.owner = owner
        self.clock = clock
        self.policy = policy or Policy()
        self.rules = rules
        self.order_keys = order_keys
        self.log: structlog.stdlib.BoundLogger = log or structlog.stdlib.get_logger("btcbot.execution")
        instruments()  # created now, not on the first order (keeps the submit path's cost flat)

    # ---- entry points ------------------------------------------------------------------------

    async def on_order(self, message: SubmitOrder | CancelOrder, delivery: Delivery) -> None:
        """Handler of the execution-orders consumer."""
        try:
            if isinstance(message, SubmitOrder):
                if self.order_keys is not None and (problem := verify(message, self.order_keys)) is not None:
                    await self.refuse_unsigned(message, problem)
                    return
                await self.on_submit(message, delivery)
            else:
                await self.on_cancel(message, delivery)
        except IllegalTransition as exc:
            # Our record and the exchange disagree in a way no retry fixes: park it for a human.
            self.log.error("reconcile.conflict", client_order_id=message.client_order_id, error=str(exc))
            raise Poison(f"reconcile conflict: {exc}") from exc
        except CorruptRecord as exc:
            self.log.error("record.corrupt", client_order_id=message.client_order_id, error=str(exc))
            raise Poison(f"corrupt order record: {exc}") from exc

    async def refuse_unsigned(self, cmd: SubmitOrder, problem: str) -> None:
        """Reject an order whose signature is missing or wrong: before any claim, lock or exchange call.

        The event's id is not the order's usual `rejected:<coid>`: a forged command may name a real order's client
        order id, and its rejection must not take the place (in JetStream's duplicate window) of the real one's.
        """
        digest = hashlib.sha256(f"{cmd.id}|{cmd.signature}".encode()).hexdigest()[:16]
        event = OrderRejected(
            id=f"{ids.rejected_id(cmd.client_order_id)}:{UNSIGNED}:{digest}",
            ts_ns=self.clock(),
            client_order_id=cmd.client_order_id,
            intent_id=cmd.intent_id,
            strategy=cmd.strategy,
            symbol=cmd.symbol,
            reason=UNSIGNED,
            detail=f"signature {problem}"
            + (f" (key id {cmd.signature.rpartition(':')[0]!r})" if ":" in cmd.signature else ""),
        )
        await self.bus.publish(subjects.execution("rejected", cmd.symbol), event)
        instruments().orders.add(1, {"symbol": cmd.symbol, "outcome": "rejected"})
        self.log.error(
            "submit.unsigned",
            alert=True,
            client_order_id=cmd.client_order_id,
            symbol=cmd.symbol,
            problem=problem,
            command_id=cmd.id,
        )

    async def on_submit(self, cmd: SubmitOrder, delivery: Delivery) -> None:
        """Place an order exactly once, or find out what became of it."""
        coid = cmd.client_order_id
        log = self.log.bind(client_order_id=coid, symbol=cmd.symbol, deliveries=delivery.deliveries)
        first = await self.journal.claim(coid)
        log.info("submit.claim", taken=first, owner=self.owner)
        async with self.locked(cmd.symbol, log) as lease:
            record = await self.journal.load(coid)
            if record is None:
                # First claim, or a claim whose owner died before writing the order: nothing was sent.
                record = Record(orders.from_submit(cmd), Phase.CLAIMED, created_ns=cmd.ts_ns)
                await self.journal.save(record)
                await self.journal.remember_trace(coid, current_traceparent())
            await self._drive(record, cmd.ts_ns, lease, log, book_ts_ns=cmd.book_ts_ns)

    async def on_cancel(self, cmd: CancelOrder, delivery: Delivery) -> None:
        """Cancel an order we placed and emit OrderCanceled once the exchange confirms it."""
        coid = cmd.client_order_id
        log = self.log.bind(client_order_id=coid, symbol=cmd.symbol, deliveries=delivery.deliveries)
        async with self.locked(cmd.symbol, log) as lease:
            record = await self.journal.load(coid)
            if record is None:
                log.warning("cancel.unknown_order")
                return
            if record.phase == Phase.CLAIMED and not record.order.is_terminal:
                # Never sent (the submit is waiting for a retry): it must now never be placed.
                log.info("cancel.before_send")
                step = orders.reject(record.order, "CANCELED", f"canceled before sending: {cmd.reason}",
                                     self.clock())  # fmt: skip
                await self.commit(Record(step.order, Phase.SENT), step.events, log)
                return
            if record.phase == Phase.SENDING:
                record = await self.resolve(record, None, lease, log, why="cancel requested", missing="reject")
            order = record.order
            if order.is_terminal:
                log.info("cancel.already_final", status=order.status.value)
                return
            if order.status == Status.SUBMITTING or not order.exchange_order_id:
                raise Retry("order outcome not known yet; cancel later", self.policy.lookup_delay_s)
            if order.status == Status.CANCEL_PENDING:
                # A DELETE went out before: it may have been lost, so check first and re-send if still open.
                if await self._confirm_cancel(coid, cmd.reason, log):
                    return
                record = await self._reload(coid)
                log.info("cancel.resend")
            await self._cancel_at_exchange(record, lease, log)
            if not await self._confirm_cancel(coid, cmd.reason, log):
                raise Retry("cancel not confirmed yet", self.policy.cancel_confirm_delay_s)

    # ---- submit ------------------------------------------------------------------------------

    async def _drive(
        self,
        record: Record,
        sent_ns: int | None,
        lease: Lease,
        log: structlog.stdlib.BoundLogger,
        *,
        book_ts_ns: int = 0,
    ) -> Record:
        """Move a claimed order forward from whatever phase it is in."""
        order = record.order
        if record.phase == Phase.CLAIMED:
            if order.is_terminal:
                log.info("submit.already_final", status=order.status.value)
                return record
            return await self._place(record, sent_ns, lease, log, book_ts_ns)
        if record.phase == Phase.SENDING:
            return await self.resolve(record, sent_ns, lease, log, why="redelivered while sending")
        if order.is_terminal:
            log.info("submit.already_final", status=order.status.value)
            return record
        # Sent: the exchange answered before; catch up on whatever happened since.
        return await self.sync(record, log)

    async def _place(
        self,
        record: Record,
        sent_ns: int | None,
        lease: Lease,
        log: structlog.stdlib.BoundLogger,
        book_ts_ns: int = 0,
    ) -> Record:
        order = record.order
        now = self.clock()
        age_s = (now - sent_ns) / 1e9 if sent_ns is not None else 0.0
        if self.policy.max_order_age_s and age_s > self.policy.max_order_age_s:
            log.warning("submit.expired", age_s=round(age_s, 3))
            step = orders.reject(order, "EXPIRED", f"command {age_s:.1f}s old, not placed", now)
            return await self.commit(Record(step.order, Phase.SENT), step.events, log)
        if self.rules is not None:
            if self.rules.current is None:
                # Never send blind: wait for exchangeinfo (the record stays "claimed"; nothing was sent), and
                # answer a command that waited too long with a rejection rather than let it be dead-lettered.
                log.warning("submit.rules_not_loaded", age_s=round(age_s, 3))
                if age_s >= self.policy.rules_wait_max_s:
                    step = orders.reject(order, RULES_NOT_LOADED, f"exchange rules not loaded for {age_s:.1f}s", now)
                    return await self.commit(Record(step.order, Phase.SENT), step.events, log)
                raise Retry("exchange rules not loaded yet; not sending blind", self.policy.rules_wait_s)
            refused = refusal(order, self.rules.current)
            if refused is not None:
                log.warning("submit.refused", reason=refused.reason, detail=refused.detail)
                step = orders.reject(order, refused.reason, f"refused before sending: {refused.detail}", now)
                return await self.commit(Record(step.order, Phase.SENT), step.events, log)
        sending = Record(orders.submitting(order).order, Phase.SENDING)
        await self.journal.save(sending)
        try:
            await self.locks.validate(lease)
        except StaleToken as exc:
            # Refused before the POST: nothing was sent, so the record goes back to "claimed".
            await self.journal.save(record)
            log.warning("submit.stale_token", token=lease.token)
            raise Retry(f"lost the order lock: {exc}") from exc
        log.info("submit.post", token=lease.token, side=order.side, order_type=order.order_type,
                 price=str(order.price), quantity=str(order.quantity))  # fmt: skip
        try:
            exchange_order_id = await self._submit_measured(sending.order, sent_ns, book_ts_ns)
        except OutcomeUnknown as exc:
            log.warning("submit.outcome_unknown", error=str(exc))
            return await self.resolve(sending, sent_ns, lease, log, why="response lost")
        except Rejected as exc:
            log.info("submit.rejected", code=exc.message_code, error=str(exc))
            step = orders.reject(sending.order, exc.message_code, exc.message, self.clock())
            return await self.commit(Record(step.order, Phase.SENT), step.events, log)
        except BtcTurkError as exc:
            # Retryable (429, 5xx, not sent) or refused before processing (401): nothing was placed.
            await self.journal.save(record)
            log.warning("submit.not_sent", error=str(exc), retryable=exc.retryable)
            delay = exc.retry_after if isinstance(exc, RateLimited) else None
            raise Retry(f"exchange: {exc}", delay) from exc
        step = orders.accept(sending.order, exchange_order_id, self.clock())
        log.info("submit.accepted", exchange_order_id=exchange_order_id)
        result = await self.commit(Record(step.order, Phase.SENT), step.events, log)
        await self.journal.index(result.order)
        return result

    async def _submit_measured(self, order: orders.Order, sent_ns: int | None, book_ts_ns: int) -> str:
        """The POST, with the figures of the moment the request leaves: tick-to-order, verdict-to-request, call time."""
        inst = instruments()
        leaving_ns = self.clock()
        tick_to_order = seconds_between(book_ts_ns, leaving_ns)
        if tick_to_order is not None:
            inst.tick_to_order.record(tick_to_order, {"symbol": order.symbol})
        if sent_ns is not None:
            observe_stage(VERDICT_TO_REQUEST, sent_ns, leaving_ns)
        started = time.perf_counter()
        try:
            with _tracer.start_as_current_span(
                "exchange.submit", kind=trace.SpanKind.CLIENT, attributes={"btcbot.symbol": order.symbol}
            ):
                return await self.exchange.submit(order)
        except OutcomeUnknown:
            inst.orders.add(1, {"symbol": order.symbol, "outcome": "unknown"})
            raise
        finally:
            inst.submit_seconds.record(time.perf_counter() - started)

    async def resolve(
        self,
        record: Record,
        sent_ns: int | None,
        lease: Lease,
        log: structlog.stdlib.BoundLogger,
        *,
        why: str,
        missing: Missing = "place",
    ) -> Record:
        """The POST may or may not have arrived: ask the exchange by client order id, never resend blindly.

        When the exchange still has no such order after ``policy.lookups`` looks, the POST never arrived, and
        ``missing`` says what then: place it now, reject it (a cancel came first), or mark it unsent so the
        SubmitOrder's next delivery places it (the sweep, which never places orders itself).
        """
        order = record.order
        seen = await self.exchange.find(order.symbol, order.client_order_id)
        if seen is None:
            lookups = record.lookups + 1
            if lookups <= self.policy.lookups:
                await self.journal.save(replace(record, lookups=lookups))
                log.warning("reconcile.not_found", why=why, lookups=lookups, of=self.policy.lookups)
                raise Retry(f"order {order.client_order_id} not at the exchange yet ({why})",
                            self.policy.lookup_delay_s)  # fmt: skip
            # Looked long enough: the POST never arrived. Back to "claimed", then place it for real.
            log.warning("reconcile.never_arrived", lookups=record.lookups, then=missing)
            if missing == "reject":
                step = orders.reject(order, "CANCELED", "canceled before the exchange had it", self.clock())
                return await self.commit(Record(step.order, Phase.SENT), step.events, log)
            claimed = Record(replace(order, status=Status.PENDING), Phase.CLAIMED)
            await self.journal.save(claimed)
            if missing == "unsent":
                return claimed
            return await self._place(claimed, sent_ns, lease, log)
        trades = await self.exchange.order_trades(seen.exchange_order_id)
        result = reconcile(order, seen, trades, self.clock())
        log.info("reconcile.found", why=why, exchange_order_id=seen.exchange_order_id,
                 exchange_status=seen.status.value, verdict=result.verdict.value,
                 events=[m.id for m in result.events])  # fmt: skip
        committed = await self.commit(Record(result.order, Phase.SENT), result.events, log)
        await self.journal.index(committed.order)
        return committed

    async def sync(self, record: Record, log: structlog.stdlib.BoundLogger) -> Record:
        """Catch a sent order up with the exchange (fills, cancel, close)."""
        order = record.order
        seen = await self.exchange.get(order.exchange_order_id) if order.exchange_order_id else None
        if seen is None:
            seen = await self.exchange.find(order.symbol, order.client_order_id)
        if seen is None:
            log.error("reconcile.sent_order_missing", exchange_order_id=order.exchange_order_id)
            return record
        trades = await self.exchange.order_trades(seen.exchange_order_id)
        result = reconcile(order, seen, trades, self.clock())
        log.info("reconcile.synced", verdict=result.verdict.value, events=[m.id for m in result.events],
                 status=result.order.status.value)  # fmt: skip
        return await self.commit(Record(result.order, Phase.SENT), result.events, log)

    # ---- cancel ------------------------------------------------------------------------------

    async def _cancel_at_exchange(self, record: Record, lease: Lease, log: structlog.stdlib.BoundLogger) -> None:
        order = record.order
        pending = Record(orders.request_cancel(order).order, record.phase, record.lookups)
        await self.journal.save(pending)
        await self.locks.validate(lease)
        log.info("cancel.delete", exchange_order_id=order.exchange_order_id, token=lease.token)
        try:
            await self.exchange.cancel(order.exchange_order_id)
        except NotFound:
            log.info("cancel.not_open")  # already gone: the confirmation below reads what happened
        except Rejected as exc:
            # ORDER_COULD_NOT_BE_CANCELED (closed already) or ORDER_CANCEL_BLOCKED (maintenance): the order
            # rests on as far as we know; the read-back below settles which.
            log.info("cancel.refused", code=exc.message_code)
            await self.journal.save(replace(pending, order=orders.cancel_refused(pending.order).order))
        except OutcomeUnknown as exc:
            log.warning("cancel.outcome_unknown", error=str(exc))
        except BtcTurkError as exc:
            await self.journal.save(record)
            log.warning("cancel.not_sent", error=str(exc))
            raise Retry(f"exchange: {exc}", exc.retry_after if isinstance(exc, RateLimited) else None) from exc

    async def _confirm_cancel(self, coid: str, reason: str, log: structlog.stdlib.BoundLogger) -> bool:
        """Read the order back; True once it is final (canceled, or filled after all) and its events are out."""
        record = await self._reload(coid)
        order = record.order
        seen = await self.exchange.get(order.exchange_order_id)
        if seen is None:
            raise Retry("exchange does not show the order yet", self.policy.cancel_confirm_delay_s)
        trades = await self.exchange.order_trades(seen.exchange_order_id)
        result = reconcile(order, seen, trades, self.clock(), reason=reason)
        await self.commit(Record(result.order, Phase.SENT), result.events, log)
        if result.verdict == Verdict.INCOMPLETE:
            raise Retry("exchange reports fills not visible yet", self.policy.cancel_confirm_delay_s)
        done = seen.status != ExchangeStatus.OPEN
        log.info("cancel.result", confirmed=done, status=result.order.status.value,
                 events=[m.id for m in result.events])  # fmt: skip
        return done

    async def _reload(self, coid: str) -> Record:
        record = await self.journal.load(coid)
        if record is None:  # written under the same lock moments ago; only an expired claim gets here
            raise Retry(f"order record {coid} vanished")
        return record

    # ---- shared ------------------------------------------------------------------------------

    async def commit(self, record: Record, events: tuple[Message, ...], log: structlog.stdlib.BoundLogger) -> Record:
        """Publish the events, then record the state they lead to."""
        for event in events:
            kind = _KINDS[type(event)]
            await self.bus.publish(subjects.execution(kind, record.order.symbol), event)
            instruments().orders.add(1, {"symbol": record.order.symbol, "outcome": kind})
            log.info("event.published", kind=type(event).__name__, id=event.id)
        await self.journal.save(record)
        return record

    def locked(self, symbol: str, log: structlog.stdlib.BoundLogger, wait_s: float | None = None) -> _Held:
        """``async with``: the per account+symbol order lock, or Retry when it stays busy."""
        return _Held(self, f"orders:{self.account}:{symbol}", log, wait_s)

    async def cancel_resting(
        self, record: Record, lease: Lease, log: structlog.stdlib.BoundLogger, reason: str
    ) -> bool:
        """Cancel a resting order under a held lease; True once the exchange confirms it is gone."""
        await self._cancel_at_exchange(record, lease, log)
        return await self._confirm_cancel(record.order.client_order_id, reason, log)


class _Held:
    """``async with``: hold the per account+symbol order lock, or ask for a retry."""

    def __init__(
        self, execution: Execution, name: str, log: structlog.stdlib.BoundLogger, wait_s: float | None = None
    ) -> None:
        self._execution = execution
        self._name = name
        self._log = log
        self._wait_s = wait_s
        self._lease: Lease | None = None

    async def __aenter__(self) -> Lease:
        policy = self._execution.policy
        wait_s = policy.lock_wait_s if self._wait_s is None else self._wait_s
        lease = await self._execution.locks.acquire(self._name, self._execution.owner, policy.lock_ttl_s, wait_s)
        if lease is None:
            self._log.info("lock.busy", lock=self._name)
            raise Retry(f"lock {self._name} busy", policy.lock_wait_s)
        self._log.debug("lock.taken", lock=self._name, token=lease.token)
        self._lease = lease
        return lease

    async def __aexit__(self, *exc: object) -> None:
        if self._lease is not None:
            await self._execution.locks.release(self._lease)
