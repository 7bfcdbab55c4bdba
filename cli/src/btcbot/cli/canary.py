"""`btcbot canary`, the pure part: the hard cap, the arming rule, the order a canary places and what its events say.

Nothing here touches the network, the clock or the environment (the shell is `canary_run.py`). Steps, in order:
cap, arming, doctor, mode, book, rules, intent, verdict, exchange, fill, ledger; the first failure stops the run.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

import httpx

from btcbot.btcturk.models import SymbolInfo
from btcbot.btcturk.rules import price_step, round_price, round_quantity
from btcbot.contracts.messages import (
    BookSnapshot,
    Message,
    OrderAccepted,
    OrderCanceled,
    OrderDenied,
    OrderFilled,
    OrderRejected,
    Side,
    SubmitOrder,
)

# The hard cap when CANARY_MAX_NOTIONAL is not set: a canary proves the path, it never trades size.
DEFAULT_MAX_NOTIONAL = Decimal(1000)
# The same arming rule as execution (execution/settings.py `arming`): live needs all three.
LIVE_ACK_PHRASE = "I understand this places real orders"
LIVE_HOST = "api.btcturk.com"
STRATEGY = "canary"

# Exit codes: 0 every step passed; 1 a step failed; 2 refused before anything was sent (cap, arming, usage).
EXIT_OK, EXIT_FAILED, EXIT_REFUSED = 0, 1, 2


@dataclass(frozen=True)
class Step:
    """One line of the canary's report."""

    name: str
    ok: bool
    detail: str

    def line(self) -> str:
        """`OK   book: ...` or `FAIL verdict: ...`."""
        return f"{'OK  ' if self.ok else 'FAIL'} {self.name}: {self.detail}"


@dataclass
class Report:
    """The steps so far and what the run learned; `summary()` is the final JSON line."""

    symbol: str
    notional: Decimal
    target: str = "simulator"
    steps: list[Step] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)
    refused: bool = False

    def add(self, step: Step) -> bool:
        """Record a step; returns whether it passed."""
        self.steps.append(step)
        return step.ok

    @property
    def ok(self) -> bool:
        """Every step passed (and there was at least one)."""
        return bool(self.steps) and all(s.ok for s in self.steps)

    def exit_code(self) -> int:
        """0 all passed, 2 refused before sending, 1 any other failure."""
        if self.ok:
            return EXIT_OK
        return EXIT_REFUSED if self.refused else EXIT_FAILED

    def summary(self) -> dict[str, Any]:
        """One JSON-friendly object: the outcome, the failed step if any, and the facts gathered."""
        failed = next((s for s in self.steps if not s.ok), None)
        return {
            "ok": self.ok,
            "symbol": self.symbol,
            "notional": str(self.notional),
            "target": self.target,
            "failed_step": failed.name if failed else None,
            "steps": [{"name": s.name, "ok": s.ok, "detail": s.detail} for s in self.steps],
            **self.facts,
        }

    def json(self) -> str:
        """The final line."""
        return json.dumps(self.summary(), sort_keys=False, default=str)


def parse_cap(env: Mapping[str, str]) -> Decimal:
    """CANARY_MAX_NOTIONAL (quote asset), default 1000; ValueError when it is not a positive number."""
    text = (env.get("CANARY_MAX_NOTIONAL") or "").strip()
    if not text:
        return DEFAULT_MAX_NOTIONAL
    try:
        cap = Decimal(text)
    except ArithmeticError:
        raise ValueError(f"CANARY_MAX_NOTIONAL must be a number, not {text!r}") from None
    if not cap.is_finite() or cap <= 0:
        raise ValueError(f"CANARY_MAX_NOTIONAL must be positive, not {text!r}")
    return cap


def cap_step(notional: Decimal, cap: Decimal) -> Step:
    """The requested notional against the hard cap: above it, nothing is sent."""
    if not notional.is_finite() or notional <= 0:
        return Step("cap", False, f"--notional must be positive, not {notional}")
    if notional > cap:
        return Step(
            "cap", False, f"notional {notional} is above the hard cap {cap} (CANARY_MAX_NOTIONAL); nothing sent"
        )
    return Step("cap", True, f"notional {notional} within the hard cap {cap}")


def _host(url: str) -> str:
    """The host httpx would connect to (non-ASCII refused: homoglyph hosts must not pass for a simulator)."""
    if not url.isascii():
        raise ValueError(f"BTCTURK_BASE_URL must be plain ASCII, got {url!r}")
    try:
        return httpx.URL(url).raw_host.decode("ascii").lower().rstrip(".")
    except (httpx.InvalidURL, UnicodeError) as exc:
        raise ValueError(f"cannot parse BTCTURK_BASE_URL {url!r}: {exc}") from None


def arming_step(base_url: str, env: Mapping[str, str]) -> Step:
    """Simulator unless the exchange URL is BTCTurk's; there, only with execution's own arming (all three):
    EXECUTION_LIVE=true, EXECUTION_LIVE_ACK=<the phrase>, and https://api.btcturk.com."""
    try:
        real = _host(base_url) == LIVE_HOST
    except ValueError as exc:
        return Step("arming", False, str(exc))
    live = (env.get("EXECUTION_LIVE") or "").strip().lower() in ("1", "true", "yes", "on")
    if not real:
        if live:
            return Step("arming", False, f"EXECUTION_LIVE=true but {base_url} is not the real exchange")
        return Step("arming", True, f"simulator at {base_url}")
    if not live:
        return Step("arming", False, f"{base_url} is the real exchange and EXECUTION_LIVE is not true; not armed")
    if env.get("EXECUTION_LIVE_ACK", "") != LIVE_ACK_PHRASE:
        return Step("arming", False, f'live needs EXECUTION_LIVE_ACK="{LIVE_ACK_PHRASE}"')
    if urlsplit(base_url).scheme != "https":
        return Step("arming", False, f"live needs https://{LIVE_HOST}, not {base_url}")
    return Step("arming", True, f"LIVE at {base_url} (armed)")


def mode_step(status: Mapping[str, Any], side: Side) -> Step:
    """The control state risk rebuilds (`btcbot control status`): trading must be on for this order, so a canary
    never sends an intent that is bound to be denied. Risk's verdict stays the authority."""
    if status.get("unreadable"):
        return Step("mode", False, f"unreadable control messages: {sorted(status['unreadable'])}")
    if status.get("kill_engaged"):
        return Step("mode", False, "the kill switch is engaged")
    if status.get("active_alarms"):
        return Step("mode", False, f"active alarms: {sorted(status['active_alarms'])}")
    modes = {str(status.get("mode", "NORMAL")), str(status.get("auto_mode", "NORMAL"))}
    if "OBSERVE_ONLY" in modes or (side == "buy" and "REDUCE_ONLY" in modes):
        reasons = ",".join(status.get("auto_reasons") or ()) or "-"
        return Step(
            "mode",
            False,
            f"mode {status.get('mode')}, automatic {status.get('auto_mode')} ({reasons}): a {side} would be denied",
        )
    return Step("mode", True, f"mode {status.get('mode', 'NORMAL')}, automatic {status.get('auto_mode', 'NORMAL')}")


@dataclass(frozen=True)
class OrderPlan:
    """The one order a canary places: a limit order at the touch, so it can fill at once."""

    side: Side
    price: Decimal
    quantity: Decimal

    @property
    def notional(self) -> Decimal:
        """Price times quantity, in the quote asset."""
        return self.price * self.quantity


def plan_order(book: BookSnapshot, info: SymbolInfo, notional: Decimal, side: Side) -> OrderPlan | str:
    """A marketable limit order of at most `notional`: a buy at the best ask, a sell at the best bid.

    Returns the reason when no such order exists (empty side, pair not trading, below the exchange minimum).
    """
    if not info.trading:
        return f"{info.name} is not trading ({info.status})"
    levels = book.asks if side == "buy" else book.bids
    if not levels:
        return f"the book of {book.symbol} has no {'asks' if side == 'buy' else 'bids'}"
    touch = levels[0].price
    # Round towards the other side by at most one step, so the order still crosses (buy up, sell down).
    price = round_price(info, touch, up=side == "buy")
    quantity = round_quantity(info, notional / price)
    while quantity > 0 and price * quantity > notional:  # rounding the price up may push it over by a step
        quantity = round_quantity(info, quantity - Decimal(1).scaleb(-info.numerator_scale))
    if quantity <= 0:
        return f"notional {notional} buys less than one quantity step at {price}"
    if info.min_exchange_value is not None and price * quantity < info.min_exchange_value:
        return f"{price * quantity} is below the exchange minimum {info.min_exchange_value} for {info.name}"
    if price_step(info) <= 0:  # pragma: no cover - a step is never zero; guards a malformed exchangeinfo
        return "malformed price step"
    return OrderPlan(side, price, quantity)


@dataclass
class Outcome:
    """What the pipeline said about the canary's intent and order, folded from its events in any order."""

    intent_id: str
    client_order_id: str
    submitted: SubmitOrder | None = None
    denied: OrderDenied | None = None
    accepted: OrderAccepted | None = None
    rejected: OrderRejected | None = None
    canceled: OrderCanceled | None = None
    fills: dict[str, OrderFilled] = field(default_factory=dict)

    def add(self, message: Message) -> None:
        """Fold one event in; events about other intents and orders are ignored, repeats count once."""
        if isinstance(message, SubmitOrder) and message.intent_id == self.intent_id:
            self.submitted = message
        elif isinstance(message, OrderDenied) and message.intent_id == self.intent_id:
            self.denied = message
        elif getattr(message, "client_order_id", None) != self.client_order_id:
            return
        elif isinstance(message, OrderAccepted):
            self.accepted = message
        elif isinstance(message, OrderRejected):
            self.rejected = message
        elif isinstance(message, OrderCanceled):
            self.canceled = message
        elif isinstance(message, OrderFilled):
            self.fills[message.id] = message

    def add_all(self, messages: Iterable[Message]) -> None:
        """Fold several events in."""
        for message in messages:
            self.add(message)

    @property
    def filled_quantity(self) -> Decimal:
        """Sum of the fills seen."""
        return sum((f.quantity for f in self.fills.values()), Decimal(0))

    def verdict(self) -> Step | None:
        """Risk's answer (None: not yet)."""
        if self.denied is not None:
            return Step("verdict", False, f"risk denied {self.denied.reason}: {self.denied.detail}")
        if self.submitted is not None:
            checks = ",".join(self.submitted.checks)
            return Step("verdict", True, f"risk approved {self.client_order_id} (checks {checks or 'none'})")
        return None

    def exchange(self) -> Step | None:
        """Execution's answer from the exchange (None: not yet). A fill implies acceptance."""
        if self.rejected is not None:
            return Step("exchange", False, f"rejected {self.rejected.reason}: {self.rejected.detail}")
        if self.accepted is not None or self.fills:
            order = (
                self.accepted.exchange_order_id if self.accepted else next(iter(self.fills.values())).exchange_order_id
            )
            return Step("exchange", True, f"accepted as exchange order {order}")
        return None

    def done(self, quantity: Decimal) -> bool:
        """The order is finished: filled in full, or canceled (with whatever filled before)."""
        return self.filled_quantity >= quantity or self.canceled is not None

    def fill_step(self, quantity: Decimal, ttl: float) -> Step:
        """Filled (in full or in part before the cancel) passes; nothing filled within the TTL fails."""
        got = self.filled_quantity
        if got >= quantity:
            return Step("fill", True, f"filled {got} in {len(self.fills)} fill(s)")
        if got > 0:
            return Step("fill", True, f"filled {got} of {quantity} in {len(self.fills)} fill(s); rest canceled")
        if self.canceled is not None:
            return Step("fill", False, f"nothing filled within {ttl:g}s; canceled ({self.canceled.reason})")
        return Step("fill", False, f"nothing filled within {ttl:g}s and no cancel confirmed")


def ledger_step(booked_count: int, booked_quantity: Decimal, outcome: Outcome) -> Step:
    """The ledger's rows for the canary's client order id against the fills execution published."""
    want_count, want_quantity = len(outcome.fills), outcome.filled_quantity
    if booked_count == want_count and booked_quantity == want_quantity:
        return Step("ledger", True, f"booked {booked_count} fill(s), quantity {booked_quantity}")
    return Step(
        "ledger",
        False,
        f"booked {booked_count} fill(s) / {booked_quantity}; execution published {want_count} / {want_quantity}",
    )
