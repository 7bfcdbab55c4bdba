"""Live progress while `btcbot up` runs: each entry and exit as it happens, a status line every few seconds.

Lines go to stderr (stdout's last line stays the JSON summary); `--quiet` silences them. The latest status is
also written to `<state dir>/progress.json` whatever `--quiet` says (`btcbot status` shows it).

`Tracker` is pure: it takes decoded messages and returns the lines to print. `Progress` is the IO around it: it
tails the INTENTS, ORDERS and EXECUTION streams over `up`'s own NATS connection, and every `interval` seconds reads
the books' per-subject counts, the durable consumers' lag, the last PortfolioSnapshot and the mode.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import msgspec

from btcbot.contracts import ids, subjects
from btcbot.contracts.codec import decode
from btcbot.contracts.messages import KillSwitch, ModeChanged, OrderFilled, OrderIntent, PortfolioSnapshot
from btcbot.contracts.streams import CONTROL, EXECUTION, INTENTS, LEDGER_EXECUTION, MARKET, ORDERS, PORTFOLIO
from btcbot.runtime.inspect import StreamTail, consumer_lags, last_message, subject_counts

ZERO = Decimal(0)
_HUNDRED = Decimal(100)
_MODE_RANK = {"NORMAL": 0, "REDUCE_ONLY": 1, "OBSERVE_ONLY": 2}
PROGRESS_FILE = "progress.json"


def price_text(price: Decimal) -> str:
    """A price as a trader reads it: thousands separated, no exponent (2150000 -> 2,150,000)."""
    return f"{price.normalize():,f}" if price == price.to_integral_value() else f"{price:,f}"


def quantity_text(quantity: Decimal) -> str:
    """A quantity without trailing zeros or an exponent (0.00120000 -> 0.0012)."""
    return format(quantity.normalize(), "f")


def reason_label(side: str, reason: str | None) -> str:
    """What the strategy said an order was for: the part of its reason before ':' (`entry`, `take profit`)."""
    label = (reason or "").split(":", 1)[0].strip()
    return label or ("entry" if side == "buy" else "exit")


@dataclass
class _Cost:
    quantity: Decimal = ZERO
    cost: Decimal = ZERO


@dataclass
class Tracker:
    """What the run did so far, from the messages seen; renders the trade and status lines."""

    quote_asset: str = "TRY"
    intents: int = 0
    orders: int = 0
    denied: int = 0
    intents_by_strategy: dict[str, int] = field(default_factory=dict)
    fills: int = 0
    buys: int = 0
    sells: int = 0
    reasons: dict[str, str] = field(default_factory=dict)
    costs: dict[str, _Cost] = field(default_factory=dict)
    portfolio: PortfolioSnapshot | None = None
    mode: str = "NORMAL"

    def on_intent(self, intent: OrderIntent) -> None:
        """Count an intent and remember its reason for the order's fills."""
        self.intents += 1
        self.intents_by_strategy[intent.strategy] = self.intents_by_strategy.get(intent.strategy, 0) + 1
        self.reasons[ids.client_order_id(intent.id)] = intent.reason

    def on_order_subject(self, subject: str) -> None:
        """Count a message of the ORDERS stream by its subject (submits and denials)."""
        if subject.startswith("order.submit."):
            self.orders += 1
        elif subject.startswith("order.denied."):
            self.denied += 1

    def on_fill(self, fill: OrderFilled) -> str:
        """Count a fill; the line that says it: `BUY 0.0012 BTCTRY @ 2,150,000 (entry)`."""
        self.fills += 1
        label = reason_label(fill.side, self.reasons.get(fill.client_order_id))
        held = self.costs.setdefault(fill.symbol, _Cost())
        detail = label
        if fill.side == "buy":
            self.buys += 1
            held.quantity += fill.quantity
            held.cost += fill.price * fill.quantity
        else:
            self.sells += 1
            if held.quantity > 0:
                avg = held.cost / held.quantity
                # Against the average price this run bought at (fees left out: the ledger's figure has them).
                detail = f"{label}, {(fill.price / avg - 1) * _HUNDRED:+.2f} %"
                sold = min(fill.quantity, held.quantity)
                held.cost -= avg * sold
                held.quantity -= sold
        side = fill.side.upper()
        return f"{side} {quantity_text(fill.quantity)} {fill.symbol} @ {price_text(fill.price)} ({detail})"

    def on_control(self, manual: str | None, auto: str | None, killed: bool) -> None:
        """The effective mode: the stricter of the operator's and the budget's, or KILLED."""
        modes = [m for m in (manual, auto) if m]
        self.mode = "KILLED" if killed else max(modes or ["NORMAL"], key=lambda m: _MODE_RANK.get(m, 3))

    def status(self, books_per_s: float, lag: int) -> dict[str, Any]:
        """The status as data (progress.json); `lag`: the largest backlog of any durable consumer."""
        p = self.portfolio
        return {
            "ts": time.time(),
            "books_per_s": round(books_per_s, 1),
            "intents": self.intents,
            "intents_by_strategy": dict(self.intents_by_strategy),
            "orders": self.orders,
            "denied": self.denied,
            "fills": self.fills,
            "buys": self.buys,
            "sells": self.sells,
            "bot_pnl": None if p is None else str(p.bot_pnl),
            "realized_pnl": None if p is None else str(p.realized_pnl),
            "quote_asset": self.quote_asset,
            "mode": self.mode,
            "consumer_lag": lag,
        }

    def status_line(self, status: Mapping[str, Any]) -> str:
        """One line: `books 4.2/s  intents 12  orders 11 (1 denied)  fills 9 (5 buy, 4 sell)  PnL +1.23 TRY ...`."""
        pnl = "n/a" if status["bot_pnl"] is None else f"{Decimal(status['bot_pnl']):+.2f} {self.quote_asset}"
        realized = "" if status["realized_pnl"] is None else f" (realized {Decimal(status['realized_pnl']):+.2f})"
        return (
            f"   books {status['books_per_s']}/s  intents {status['intents']}  orders {status['orders']}"
            f" ({status['denied']} denied)  fills {status['fills']} ({status['buys']} buy, {status['sells']} sell)"
            f"  PnL {pnl}{realized}  mode {status['mode']}  lag {status['consumer_lag']}"
        )


def _decoded(data: bytes) -> Any:
    try:
        return decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None


def write_progress(path: Path, status: Mapping[str, Any]) -> None:
    """Replace progress.json in one step (a reader never sees half a file)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(status))
    tmp.replace(path)


class Progress:
    """The watcher task `btcbot up` starts once its services are ready and stops after the drain."""

    def __init__(
        self,
        js: Any,
        start_seqs: Mapping[str, int],
        state_dir: Path,
        *,
        quiet: bool,
        interval: float = 5.0,
        say: Callable[[str], None],
        quote_asset: str = "TRY",
    ) -> None:
        """`start_seqs`: each stream's last sequence before the run (only what comes after it counts)."""
        self.tracker = Tracker(quote_asset=quote_asset)
        self._js = js
        self._start = dict(start_seqs)
        self._path = state_dir / PROGRESS_FILE
        self._quiet = quiet
        self._interval = interval
        self._say = say
        self._intents = StreamTail(js, INTENTS.name, "intent.*", self._start.get(INTENTS.name, 0))
        self._fills = StreamTail(js, EXECUTION.name, "exec.filled.*", self._start.get(EXECUTION.name, 0))
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self._orders = StreamTail(js, ORDERS.name, "order.>", self._start.get(ORDERS.name, 0))
        self._books_at: tuple[float, int] | None = None

    def start(self) -> Progress:
        """Run in the background until `stop`."""
        self._task = asyncio.create_task(self._run(), name="btcbot-up-progress")
        return self

    async def stop(self) -> None:
        """Print what is still unread, write the last status, and end (idempotent)."""
        task, self._task = self._task, None
        if task is None:
            return
        # Not a cancel: one cut between reading fills and printing them would lose those lines. The loop ends
        # between two rounds; a round stuck on NATS is cut after a while (its fills are then read below, or lost).
        self._stopping.set()
        with contextlib.suppress(TimeoutError, asyncio.CancelledError, Exception):
            await asyncio.wait_for(task, 15)
        with contextlib.suppress(Exception):
            await self._read_trades()
            await self._status()
        for tail in (self._intents, self._orders, self._fills):
            await tail.close()

    def _print(self, line: str) -> None:
        if not self._quiet:
            self._say(line)

    async def _run(self) -> None:
        with contextlib.suppress(Exception):  # the first rate needs a count to start from
            self._books_at = (
                time.monotonic(),
                sum((await subject_counts(self._js, MARKET.name, "md.book.*")).values()),
            )
        next_status = time.monotonic() + self._interval
        while not self._stopping.is_set():
            pause = 1.0
            try:
                await self._read_trades()
                if time.monotonic() >= next_status:
                    next_status = time.monotonic() + self._interval
                    await self._status()
            except Exception as exc:  # progress must never take the run down: say why and go on
                self._print(f"   progress: {type(exc).__name__}: {exc}")
                pause = self._interval
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), pause)

    async def _read_trades(self) -> None:
        # Fills first, then intents and orders up to now: every intent a fill came from is then known.
        fills = await self._fills.poll()
        for stored in await self._intents.poll():
            intent = _decoded(stored.data)
            if isinstance(intent, OrderIntent):
                self.tracker.on_intent(intent)
        for stored in await self._orders.poll():
            self.tracker.on_order_subject(stored.subject)
        for stored in fills:
            fill = _decoded(stored.data)
            if isinstance(fill, OrderFilled):
                self._print("   " + self.tracker.on_fill(fill))

    async def _status(self) -> None:
        js = self._js
        books = sum((await subject_counts(js, MARKET.name, "md.book.*")).values())
        now = time.monotonic()
        rate = 0.0
        if self._books_at is not None:
            then, count = self._books_at
            rate = max(books - count, 0) / max(now - then, 1e-6)
        self._books_at = (now, books)
        snapshot = await last_message(js, PORTFOLIO.name, "portfolio.*")
        if snapshot is not None and isinstance(p := _decoded(snapshot.data), PortfolioSnapshot):
            self.tracker.portfolio = p
        await self._read_mode()
        lags = await consumer_lags(js, (INTENTS.name, ORDERS.name, EXECUTION.name, MARKET.name))
        status = self.tracker.status(rate, max(lags.values(), default=0))
        status["ledger_lag"] = lags.get(LEDGER_EXECUTION.durable, 0)
        line = self.tracker.status_line(status)
        write_progress(self._path, {**status, "line": line.strip()})
        self._print(line)

    async def _read_mode(self) -> None:
        found: dict[str, Any] = {}
        for subject in (subjects.CONTROL_MODE, subjects.CONTROL_AUTO, subjects.CONTROL_KILL):
            stored = await last_message(self._js, CONTROL.name, subject)
            found[subject] = None if stored is None else _decoded(stored.data)
        manual, auto, kill = found[subjects.CONTROL_MODE], found[subjects.CONTROL_AUTO], found[subjects.CONTROL_KILL]
        self.tracker.on_control(
            manual.mode if isinstance(manual, ModeChanged) else None,
            auto.mode if isinstance(auto, ModeChanged) else None,
            isinstance(kill, KillSwitch) and kill.engaged,
        )
