"""The user WebSocket feed: fills and order events pushed by the exchange, booked through the poller's path.

A logged-in socket reports our fills (423) and our orders entering and leaving the book (451/452) as they
happen. Each fill goes through :meth:`FillPoller.book_held` under the symbol's order lock, the very path the
REST poller uses, so a trade the socket reports and the next poll finds again is one ``OrderFilled``; order
events go through the handlers' ``sync`` (read the order back) and the state machine's ``accept``
(``userevents.plan`` decides which). Work that cannot be done now (the lock is busy, Redis or the exchange
is down, the order record is not written yet) is retried a few times, then left to the poller and the sweep.

While the socket is up and logged in, the poller only polls every ``ws_interval_s`` as a safety net; while it
is down (or login is refused) it polls every ``poll_interval_s``. Readiness does not depend on the socket.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Protocol

import structlog

from btcbot.btcturk.errors import AuthError, BtcTurkError
from btcbot.btcturk.wsmodels import Connected, Disconnected, OrderEvent, OrderMatch, UserTradeEvent, WsMessage
from btcbot.execution import orders
from btcbot.execution.exchange import to_fill
from btcbot.execution.handlers import Execution
from btcbot.execution.orders import Fill, IllegalTransition, Status
from btcbot.execution.poller import FillPoller
from btcbot.execution.record import CorruptRecord, Phase, Record
from btcbot.execution.userevents import MatchWatch, OrderSeen, order_seen, plan
from btcbot.runtime.errors import Retry
from btcbot.runtime.locks import Lease
from btcbot.runtime.metrics import instruments
from btcbot.runtime.telemetry import continue_trace

NS_PER_S = 1_000_000_000


class UserSocket(Protocol):
    """The part of :class:`btcbot.btcturk.ws.BtcTurkWebSocket` the feed uses (a seam for tests)."""

    def messages(self) -> AsyncIterator[WsMessage]:
        """Typed messages, reconnecting on its own; raises AuthError when login is refused."""

    async def aclose(self) -> None:
        """Close the socket and end :meth:`messages`."""


@dataclass
class _Item:
    work: Fill | OrderSeen
    attempts: int = 0


@dataclass
class _Backlog:
    items: list[_Item] = field(default_factory=list)
    not_before_ns: int = 0


class UserFeed:
    """Reads the user socket and books what it reports; switches the poller between fast and slow."""

    def __init__(
        self,
        execution: Execution,
        poller: FillPoller,
        socket: UserSocket,
        *,
        ws_interval_s: float,
        poll_interval_s: float,
        retry_delay_s: float = 0.5,
        max_attempts: int = 8,
        match_grace_s: float = 3.0,
        relogin_delay_s: float = 60.0,
    ) -> None:
        self.execution = execution
        self.poller = poller
        self.socket = socket
        self.symbols = frozenset(poller.symbols)
        self.ws_interval_s = ws_interval_s
        self.poll_interval_s = poll_interval_s
        self.retry_delay_s = retry_delay_s
        self.max_attempts = max_attempts
        self.relogin_delay_s = relogin_delay_s
        self.connected = False
        self.fills_booked = 0
        self.orders_settled = 0
        self._watch = MatchWatch(int(match_grace_s * NS_PER_S))
        self._check_s = max(match_grace_s / 2, 0.05)
        self._pending: dict[str, _Backlog] = {}
        self._ready = asyncio.Event()
        self.log: structlog.stdlib.BoundLogger = execution.log.bind(task="user-feed")

    async def run(self, stop: asyncio.Event) -> None:
        """Read and book until ``stop`` is set; work already taken is finished before returning."""
        self.log.info("userfeed.starting", symbols=sorted(self.symbols), poll_interval_s=self.poll_interval_s,
                      ws_poll_interval_s=self.ws_interval_s)  # fmt: skip
        reader = asyncio.create_task(self._read(stop))
        booker = asyncio.create_task(self._book_loop(stop))
        closer = asyncio.create_task(self._close_on(stop))
        try:
            done, _ = await asyncio.wait({reader, booker}, return_when=asyncio.FIRST_COMPLETED)
            if booker in done:
                booker.result()  # only a bug ends the booking loop before stop: let it crash the service
            await reader
            self._ready.set()
            await booker  # the pass in progress ends, then the loop sees stop
        finally:
            self._down("stopped", connection=None)
            for task in (reader, booker, closer):
                if not task.done():
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task

    # ---- reading -----------------------------------------------------------------------------

    async def _read(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                async for message in self.socket.messages():
                    self.on_message(message)
                return  # the socket was closed: we are stopping
            except AuthError as exc:
                # Polling carries on at full rate; a refused key rarely heals, so try again only now and then.
                self._down(f"login refused: {exc}", connection=None)
                self.log.error("userfeed.login_refused", error=str(exc), retry_in_s=self.relogin_delay_s)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.relogin_delay_s)

    async def _close_on(self, stop: asyncio.Event) -> None:
        await stop.wait()
        await self.socket.aclose()

    def on_message(self, message: WsMessage) -> None:
        """Take one socket message: connection state, or work for the booking loop."""
        now = self.execution.clock()
        if isinstance(message, Connected):
            self._up(message.connection)
            if message.connection > 1:
                instruments().ws_reconnects.add(1, {"service": "execution"})
        elif isinstance(message, Disconnected):
            self._down(message.reason, connection=message.connection)
        elif isinstance(message, UserTradeEvent):
            trade = message.trade
            if trade.pair in self.symbols:
                fill = to_fill(trade)
                self._watch.filled(trade.pair, fill.exchange_order_id, fill.quantity, now)
                self._queue(trade.pair, fill)
        elif isinstance(message, OrderMatch):
            if message.pair in self.symbols:
                self._watch.matched(message.pair, str(message.order_id), message.amount, now)
        elif isinstance(message, OrderEvent):
            seen = order_seen(message)
            if seen is not None and seen.symbol in self.symbols:
                self._queue(seen.symbol, seen)

    def _up(self, connection: int) -> None:
        self.connected = True
        self.log.info("userfeed.connected", connection=connection, poll_interval_s=self.ws_interval_s)
        self.poller.set_interval(self.ws_interval_s)
        # Events before the login are never replayed: one poll now covers the gap since the last one.
        self.poller.nudge()

    def _down(self, reason: str, *, connection: int | None) -> None:
        if self.connected:
            self.log.warning("userfeed.disconnected", connection=connection, reason=reason,
                             poll_interval_s=self.poll_interval_s, fills_booked=self.fills_booked)  # fmt: skip
        self.connected = False
        self.poller.set_interval(self.poll_interval_s)

    def _queue(self, symbol: str, work: Fill | OrderSeen) -> None:
        self._pending.setdefault(symbol, _Backlog()).items.append(_Item(work))
        self._ready.set()

    # ---- booking -----------------------------------------------------------------------------

    async def _book_loop(self, stop: asyncio.Event) -> None:
        while True:
            await self._wait(self._next_wait())
            if self._watch.overdue(self.execution.clock()):
                self.log.warning("userfeed.matches_unreported", action="poll now")
                self.poller.nudge()
            await self.drain()
            if stop.is_set():
                return

    async def drain(self) -> None:
        """Book every symbol's due work once (work that must wait stays queued)."""
        now = self.execution.clock()
        for symbol in sorted(self._pending):
            backlog = self._pending[symbol]
            if backlog.not_before_ns <= now:
                del self._pending[symbol]
                await self._settle(symbol, backlog.items)

    @property
    def pending(self) -> int:
        """Items waiting for the booking loop."""
        return sum(len(b.items) for b in self._pending.values())

    def _next_wait(self) -> float:
        if not self._pending:
            return self._check_s
        soonest = min(b.not_before_ns for b in self._pending.values())
        return min(self._check_s, max(0.0, (soonest - self.execution.clock()) / NS_PER_S))

    async def _wait(self, timeout_s: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._ready.wait(), timeout_s)
        self._ready.clear()

    async def _settle(self, symbol: str, items: list[_Item]) -> None:
        log = self.log.bind(symbol=symbol)
        try:
            async with self.execution.locked(symbol, log) as lease:
                left = await self._apply(symbol, items, lease, log)
        except (Retry, BtcTurkError) as exc:
            # The lock is busy, Redis or the exchange is unreachable: nothing is lost by trying again later.
            log.info("userfeed.deferred", items=len(items), error=str(exc))
            left = items
        self._requeue(symbol, left, log)

    async def _apply(
        self, symbol: str, items: list[_Item], lease: Lease, log: structlog.stdlib.BoundLogger
    ) -> list[_Item]:
        """Book the fills, then settle the order events; returns the items to try again."""
        fills = [i.work for i in items if isinstance(i.work, Fill)]
        left: list[_Item] = []
        if fills:
            fresh = await self.poller.unseen(symbol, fills)
            if fresh:
                result = await self.poller.book_held(symbol, fresh, source="ws")
                self.fills_booked += result.published
                # Unknown orders (the record or index not written yet) and refusals stay unbooked.
                still = set(await self.poller.unseen(symbol, fresh))
                left = [i for i in items if isinstance(i.work, Fill) and i.work in still]
        for item in items:
            if isinstance(item.work, OrderSeen) and not await self._order(item.work, lease, log):
                left.append(item)
        return left

    async def _order(self, seen: OrderSeen, lease: Lease, log: structlog.stdlib.BoundLogger) -> bool:
        """Apply a 451/452 to its order's record; True once nothing is left to do for it."""
        ex = self.execution
        journal = ex.journal
        xid = seen.exchange_order_id
        log = log.bind(exchange_order_id=xid, event="delete" if seen.gone else "insert")
        try:
            record = await journal.load(seen.client_order_id) if seen.client_order_id else None
            if record is None:
                coid = await journal.client_order_id(seen.symbol, xid)
                record = await journal.load(coid) if coid else None
            if record is None:
                return False  # not ours, or its record is being written: asked again, then left to the sweep
            steps = plan(record.order, seen)
            if steps.nothing:
                return True
            coid = record.order.client_order_id
            log = log.bind(client_order_id=coid)
            with continue_trace(await journal.trace(coid), f"order {'gone' if seen.gone else 'seen'} {seen.symbol}",
                                exchange_order_id=xid):  # fmt: skip
                if steps.accept:
                    record = await self._accept(record, xid, log)
                if steps.sync:
                    record = await ex.sync(record, log)
                    if not record.order.is_terminal:
                        return False  # the exchange does not show it gone yet
            self.orders_settled += 1
            log.info("userfeed.order_settled", status=record.order.status.value)
            return True
        except (IllegalTransition, CorruptRecord) as exc:
            # Our record and the exchange disagree: no retry fixes that; the sweep and a human will see it.
            log.error("userfeed.order_conflict", error=str(exc))
            return True

    async def _accept(self, record: Record, xid: str, log: structlog.stdlib.BoundLogger) -> Record:
        order = record.order
        if order.status == Status.PENDING:
            # Given up as never arrived, yet the exchange has it: accepting it now stops a second placement.
            log.warning("userfeed.unsent_order_exists")
            order = orders.submitting(order).order
        step = orders.accept(order, xid, self.execution.clock())
        committed = await self.execution.commit(Record(step.order, Phase.SENT, record.lookups), step.events, log)
        await self.execution.journal.index(committed.order)
        log.info("userfeed.accepted")
        return committed

    def _requeue(self, symbol: str, left: list[_Item], log: structlog.stdlib.BoundLogger) -> None:
        keep: list[_Item] = []
        for item in left:
            item.attempts += 1
            if item.attempts < self.max_attempts:
                keep.append(item)
                continue
            work = item.work
            if isinstance(work, Fill):
                log.warning("userfeed.left_to_poller", trade_id=work.trade_id, exchange_order_id=work.exchange_order_id)
            else:
                log.warning("userfeed.left_to_sweep", exchange_order_id=work.exchange_order_id, gone=work.gone)
        if not keep:
            return
        backlog = self._pending.setdefault(symbol, _Backlog())
        backlog.items[:0] = keep  # before anything that arrived meanwhile: fills stay in exchange order
        delay_ns = int(self.retry_delay_s * max(i.attempts for i in keep) * NS_PER_S)
        backlog.not_before_ns = self.execution.clock() + delay_ns
