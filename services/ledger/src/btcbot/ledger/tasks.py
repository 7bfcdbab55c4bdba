"""The ledger's asyncio machinery: the batcher that commits many messages per transaction, the consumer loop
that feeds it, and the reconciler's rounds.

Why a loop of our own: the kit's consumer loop hands messages to the handler one at a time and waits for
each, so a handler can never see a second message before the first returns. `run_batched` fetches a batch
and runs the kit's own per-message processing (`Consumer.process`: decode, span, ack / nak / dead letter)
for all of them concurrently; their handlers meet in the `Batcher`, which applies them in one transaction
and only then lets every handler return, so each message is still acked after the commit that carries it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Sequence
from decimal import Decimal
from typing import Any, Generic, TypeVar

from btcbot.btcturk.errors import BtcTurkError
from btcbot.ledger.exchange import ExchangeAccount
from btcbot.ledger.metrics import ledger_instruments
from btcbot.ledger.reconcile import Comparison, Difference, TradeView, compare, confirm
from btcbot.ledger.store import Store, StoreUnavailable
from btcbot.runtime.alarms import AlarmLatch, raise_or_clear
from btcbot.runtime.bus import Publisher
from btcbot.runtime.consumer import Consumer
from btcbot.runtime.errors import Retry
from btcbot.runtime.logging import get_logger
from btcbot.runtime.metrics import instruments

T = TypeVar("T")
R = TypeVar("R")

log = get_logger("btcbot.ledger.tasks")

# Bound on one exchange read of a reconciliation round (the client's own timeouts and retries sit inside it).
_EXCHANGE_TIMEOUT = 10.0


class Batcher(Generic[T, R]):
    """Collects items from concurrent callers and applies them together: at `max_items`, or `linger` s after
    the first one arrived, whichever comes first. Batches are applied one at a time, in arrival order.

    If a batch fails with a Retry (the database is down) every caller gets it. Any other error of a batch of
    several is retried item by item, so one bad item cannot fail (and eventually dead-letter) its neighbours.
    """

    def __init__(self, apply: Callable[[Sequence[T]], Awaitable[list[R]]], max_items: int, linger: float) -> None:
        if max_items < 1:
            raise ValueError("max_items must be at least 1")
        self._apply = apply
        self.max_items = max_items
        self.linger = linger
        self._pending: list[tuple[T, asyncio.Future[R]]] = []
        self._lock = asyncio.Lock()
        self._timer: asyncio.Task[None] | None = None
        self._flushes: set[asyncio.Task[None]] = set()
        self.batches = 0

    async def submit(self, item: T) -> R:
        """Queue an item; returns its result once the transaction holding it has committed."""
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._pending.append((item, future))
        if len(self._pending) >= self.max_items:
            self._flush_now()
        elif self._timer is None:
            self._timer = asyncio.create_task(self._after_linger())
        return await future

    def _flush_now(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        task = asyncio.create_task(self._flush())
        self._flushes.add(task)
        task.add_done_callback(self._flushes.discard)

    async def _after_linger(self) -> None:
        await asyncio.sleep(self.linger)
        self._timer = None
        await self._flush()

    async def _flush(self) -> None:
        async with self._lock:
            batch, self._pending = self._pending[: self.max_items], self._pending[self.max_items :]
            if self._pending and self._timer is None:
                # What arrived meanwhile goes in the next batch (it waits for this one to commit).
                self._timer = asyncio.create_task(self._after_linger())
            live = [(item, future) for item, future in batch if not future.cancelled()]
            if not live:
                return
            self.batches += 1
            await self._run([item for item, _ in live], [future for _, future in live])

    async def _run(self, items: list[T], futures: list[asyncio.Future[R]]) -> None:
        try:
            results = await self._apply(items)
        except Retry as exc:
            _fail(futures, exc)
            return
        except Exception as exc:
            if len(items) == 1:
                _fail(futures, exc)
                return
            log.warning("ledger.batch_failed_retrying_singly", size=len(items), error=f"{type(exc).__name__}: {exc}")
            for item, future in zip(items, futures, strict=True):
                await self._run([item], [future])
            return
        for future, result in zip(futures, results, strict=True):
            if not future.done():
                future.set_result(result)

    async def close(self) -> None:
        """Apply what is queued (callers still waiting get their results) and stop the timer."""
        if self._pending:
            self._flush_now()
        if self._flushes:
            await asyncio.gather(*self._flushes, return_exceptions=True)


def _fail(futures: list[asyncio.Future[Any]], exc: BaseException) -> None:
    for future in futures:
        if not future.done():
            future.set_exception(exc)


async def run_batched(consumer: Consumer[Any], js: Any, stop: asyncio.Event, fetch: int) -> None:
    """Fetch up to `fetch` messages at a time and process them concurrently (each acked after its commit)."""
    sub = await js.pull_subscribe_bind(consumer.spec.durable, stream=consumer.spec.stream)
    try:
        while not stop.is_set():
            try:
                msgs = await sub.fetch(batch=fetch, timeout=1.0)
            except TimeoutError:  # nats-py's fetch timeout is a TimeoutError too: nothing to do
                continue
            except Exception as exc:  # disconnected or reconnecting: the client recovers by itself
                log.warning("consumer.fetch_failed", consumer=consumer.spec.durable, error=repr(exc))
                await sleep_or_stop(stop, 1.0)
                continue
            consumer.in_flight += len(msgs)
            try:
                outcomes = await asyncio.gather(*(consumer.process(m) for m in msgs), return_exceptions=True)
            finally:
                consumer.in_flight -= len(msgs)
            for outcome in outcomes:
                if isinstance(outcome, BaseException):
                    # As in the kit's loop: an error outside the handler is a bug; crash and be restarted.
                    raise outcome
    finally:
        with contextlib.suppress(Exception):
            await sub.unsubscribe()


async def sleep_or_stop(stop: asyncio.Event, seconds: float) -> None:
    """Wait `seconds` or until stop is set."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)


class Reconciler:
    """One reconciliation round at a time: read both sides, compare, confirm against the previous round,
    record the round, and report confirmed mismatches as an error log, a row and a metric."""

    def __init__(
        self,
        store: Store,
        exchange: ExchangeAccount,
        symbols: Sequence[str],
        *,
        now_ns: Callable[[], int],
        lookback: float,
        grace: float,
        tolerance: Decimal = Decimal(0),
    ) -> None:
        self.store = store
        self.exchange = exchange
        self.symbols = tuple(symbols)
        self.now_ns = now_ns
        self.lookback_ns = int(lookback * 1e9)
        self.grace_ns = int(grace * 1e9)
        self.tolerance = tolerance
        self.previous: tuple[Difference, ...] = ()
        self.last_comparison: Comparison | None = None

    async def round(self, *, final: bool = False) -> tuple[str, list[Difference]] | None:
        """Run one round; returns (status, confirmed mismatches), or None when a side could not be read.

        `final` is the round at shutdown, after ingestion stopped: nothing more is in flight on our side, so
        every difference it sees is reported at once instead of waiting for a second round. The round's
        duration goes to btcbot_reconcile_seconds, its confirmed mismatches to btcbot_reconcile_mismatches.
        """
        started = time.perf_counter()
        outcome = await self._round(final=final)
        inst = instruments()
        inst.reconcile_seconds.record(time.perf_counter() - started)
        if outcome is not None:
            inst.reconcile_mismatches.set(len(outcome[1]))
        return outcome

    async def _round(self, *, final: bool) -> tuple[str, list[Difference]] | None:
        now = self.now_ns()
        since_ns = now - self.lookback_ns
        try:
            # The exchange first: a fill the ledger books meanwhile shows as a one-round difference only.
            exchange_balances = await asyncio.wait_for(self.exchange.balances(), _EXCHANGE_TIMEOUT)
        except (BtcTurkError, TimeoutError) as exc:
            log.warning("ledger.reconcile_exchange_unavailable", error=f"{type(exc).__name__}: {exc}")
            return None
        if exchange_balances is None:
            log.info("ledger.reconcile_skipped", reason="balances endpoint rate limited")
            return None
        exchange_trades: list[TradeView] | None
        try:
            exchange_trades = await asyncio.wait_for(
                self.exchange.trades(self.symbols, since_ns // 1_000_000), _EXCHANGE_TIMEOUT
            )
        except (BtcTurkError, TimeoutError) as exc:
            log.info("ledger.reconcile_trades_skipped", error=f"{type(exc).__name__}: {exc}")
            exchange_trades = None
        try:
            if exchange_trades is not None:
                # The exchange lists these trades as ours: quarantined fills that match them are real, book them.
                released = await self.store.release_reconciled(exchange_trades, now)
                if released:
                    log.warning("ledger.quarantine_released", fills=released, resolution="reconciled")
            ledger_balances, ledger_trades = await self.store.reconciliation_view(since_ns)
            comparison = compare(
                ledger_balances=ledger_balances,
                exchange_balances=exchange_balances,
                ledger_trades=ledger_trades,
                exchange_trades=exchange_trades,
                now_ns=now,
                window_start_ns=since_ns,
                grace_ns=self.grace_ns,
                tolerance=self.tolerance,
            )
            confirmed = list(comparison.differences) if final else confirm(self.previous, comparison.differences)
            status = "deferred" if comparison.status == "deferred" else ("mismatch" if confirmed else "match")
            await self.store.record_reconciliation(
                comparison, status, confirmed, now, tolerance=self.tolerance, final=final
            )
        except StoreUnavailable as exc:
            log.warning("ledger.reconcile_store_unavailable", error=str(exc))
            return None
        self.previous = comparison.differences
        self.last_comparison = comparison
        instruments = ledger_instruments()
        instruments.reconcile_rounds.add(1, {"status": status})
        for difference in confirmed:
            instruments.reconcile_mismatches.add(1, {"kind": difference.kind})
            log.error(
                "ledger.reconcile_mismatch",
                alert=True,
                kind=difference.kind,
                asset=difference.asset,
                symbol=difference.symbol,
                trade_id=difference.trade_id,
                exchange_order_id=difference.exchange_order_id,
                ledger=None if difference.ledger is None else str(difference.ledger),
                exchange=None if difference.exchange is None else str(difference.exchange),
                detail=dict(difference.detail),
            )
        if status == "deferred":
            log.info("ledger.reconcile_deferred", in_flight=len(comparison.in_flight))
        elif status == "match" and comparison.differences:
            log.info("ledger.reconcile_unconfirmed", differences=len(comparison.differences))
        return status, confirmed

    async def check_assets(self, assets: Sequence[str]) -> tuple[str | None, dict[str, Decimal]]:
        """Run a round now and check `assets` against the exchange (for a halt resume).

        Returns (None, exchange balances) when every asset matches within the tolerance and no fill is in
        flight, else (why not, what was seen). Fails closed: a side that cannot be read is a refusal.
        """
        outcome = await self.round()
        comparison = self.last_comparison
        if outcome is None or comparison is None:
            return "the exchange or the ledger could not be read for a reconciliation", {}
        if comparison.status == "deferred":
            return f"fills still in flight at the exchange: {len(comparison.in_flight)}", {}
        lines = {line.asset: line for line in comparison.balances}
        exchange = {asset: line.exchange for asset, line in lines.items()}
        for asset in assets:
            line = lines.get(asset)
            if line is not None and not line.matches(self.tolerance):
                return f"{asset}: ledger {line.ledger} != exchange {line.exchange}", exchange
        return None, exchange


class LedgerAlarms:
    """The ledger's alarms of the kill chain (see btcbot.runtime.alarms), published once per transition.

    - `ledger.reconcile_mismatch`: raised by a round whose mismatches are confirmed (seen in two rounds), cleared
      by a round that matches; a deferred round (fills in flight) says nothing.
    - `ledger.quarantine`: raised while a fill has waited in quarantine longer than `quarantine_after_ns`
      (0: off), cleared once none has.
    """

    def __init__(self, bus: Publisher, now_ns: Callable[[], int], *, quarantine_after_ns: int) -> None:
        self.bus = bus
        self.now_ns = now_ns
        self.quarantine_after_ns = quarantine_after_ns
        self.reconcile = AlarmLatch("ledger", "reconcile_mismatch")
        self.quarantine = AlarmLatch("ledger", "quarantine")

    async def after_round(self, status: str, confirmed: Sequence[Difference]) -> None:
        """Raise or clear the reconciliation alarm from a round's outcome."""
        if status not in ("match", "mismatch"):
            return
        now = self.now_ns()
        kinds = sorted({d.kind for d in confirmed})
        detail = f"{len(confirmed)} confirmed differences: {', '.join(kinds)}" if confirmed else "books match"
        try:
            await raise_or_clear(self.bus, self.reconcile, log, status == "mismatch", cause=str(now), now_ns=now,
                                 detail=detail)  # fmt: skip
        except Exception as exc:  # NATS away: the next round tries again
            log.warning("alarm.publish_failed", kind="reconcile_mismatch", error=f"{type(exc).__name__}: {exc}")

    async def check_quarantine(self, store: Store) -> None:
        """Raise or clear the quarantine alarm from the oldest held fill's age."""
        if not self.quarantine_after_ns:
            return
        try:
            oldest = await store.oldest_quarantined_ns()
        except StoreUnavailable:
            return  # not known now: leave the alarm as it is
        now = self.now_ns()
        active = oldest is not None and now - oldest >= self.quarantine_after_ns
        cause = str(oldest) if active else f"ok:{now}"
        detail = f"a fill waits in quarantine since {oldest} ns" if active else "no fill waits in quarantine too long"
        try:
            await raise_or_clear(self.bus, self.quarantine, log, active, cause=cause, now_ns=now, detail=detail)
        except Exception as exc:
            log.warning("alarm.publish_failed", kind="quarantine", error=f"{type(exc).__name__}: {exc}")
