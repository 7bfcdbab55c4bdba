"""Pre-trade checks: an intent becomes Approved (with the names of the checks it passed) or Denied.

Checks run in a fixed order and the first failure decides; each failure is a stable reason code, never an
exception. Order matters: the switches an operator controls come first, then whether the symbol can be
traded at all, then the shape of the order, then the exchange's filters, then our own size limit.

    KILL_SWITCH, CONTROL_UNREADABLE, MODE, AUTO_MODE, SYMBOL_HALTED, STALE_INTENT, STALE_BOOK, RULES_NOT_LOADED,
    UNKNOWN_SYMBOL, SYMBOL_NOT_TRADING, ORDER_TYPE, BAD_QUANTITY, MISSING_PRICE, BAD_PRICE, REDUCE_ONLY, PRICE_RANGE,
    PRICE_TICK, PRICE_SCALE, QUANTITY_SCALE, MIN_NOTIONAL, MAX_ORDER_NOTIONAL
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation

from btcbot.contracts.messages import Mode, OrderIntent
from btcbot.risk.rules import SymbolRules

_ZERO = Decimal(0)


@dataclass(frozen=True)
class Approved:
    """The intent passed every check; `checks` names them in order."""

    checks: tuple[str, ...]


@dataclass(frozen=True)
class Denied:
    """The intent failed `reason` (a stable code); `detail` says why in words."""

    reason: str
    detail: str


Verdict = Approved | Denied


@dataclass(frozen=True)
class RiskLimits:
    """Our own limits on top of the exchange's rules."""

    max_order_notional: Decimal = Decimal(5000)
    max_intent_age_ns: int = 30_000_000_000
    # None: do not require a fresh book (for drills that publish intents without market data).
    max_book_age_ns: int | None = None


@dataclass(frozen=True)
class BookSeen:
    """The newest book risk saw for a symbol."""

    exchange_ts_ns: int
    stale: bool


@dataclass(frozen=True)
class RiskView:
    """What risk knows when it checks an intent: switches, positions and exchange rules."""

    mode: Mode = "NORMAL"
    kill_engaged: bool = False
    positions: Mapping[str, Decimal] = field(default_factory=dict)
    rules: Mapping[str, SymbolRules] | None = None
    halted: frozenset[str] = frozenset()
    books: Mapping[str, BookSeen] = field(default_factory=dict)
    # The automatic budget's mode and its reason codes (risk/modes.py); the stricter of it and `mode` applies.
    auto_mode: Mode = "NORMAL"
    auto_reasons: tuple[str, ...] = ()
    # Control subjects whose last message cannot be read: nothing is approved until they are readable again.
    unreadable: tuple[str, ...] = ()


def decimals(value: Decimal) -> int:
    """Number of significant decimals of a finite Decimal (trailing zeros do not count)."""
    _sign, digits, exponent = value.as_tuple()
    if not isinstance(exponent, int):
        raise ValueError(f"decimals() needs a finite value, got {value}")
    if exponent >= 0:
        return 0
    places = -exponent
    trailing = 0
    for digit in reversed(digits):
        if digit != 0 or trailing >= places:
            break
        trailing += 1
    return places - trailing


def on_tick(price: Decimal, tick: Decimal) -> bool:
    """True if `price` is a whole multiple of `tick`."""
    try:
        return price % tick == 0
    except InvalidOperation:
        # The quotient has more digits than the context holds: far off any sane tick grid.
        return False


def increases_exposure(side: str, quantity: Decimal, position: Decimal) -> bool:
    """True unless the order moves the position towards zero without crossing it."""
    if side == "buy":
        return not (position < 0 and quantity <= -position)
    return not (position > 0 and quantity <= position)


def check(intent: OrderIntent, view: RiskView, limits: RiskLimits, now_ns: int) -> Verdict:
    """Run every check on `intent` in order; the first failure is the verdict."""
    passed: list[str] = []

    def ok(name: str) -> None:
        passed.append(name)

    if view.kill_engaged:
        return Denied("KILL_SWITCH", "the kill switch is engaged")
    ok("KILL_SWITCH")
    if view.unreadable:
        return Denied("CONTROL_UNREADABLE", f"cannot read the last message of {', '.join(view.unreadable)}")
    ok("CONTROL_UNREADABLE")
    position = view.positions.get(intent.symbol, _ZERO)
    if view.mode == "OBSERVE_ONLY":
        return Denied("MODE", "mode is OBSERVE_ONLY: no orders")
    if view.mode == "REDUCE_ONLY" and increases_exposure(intent.side, intent.quantity, position):
        return Denied("MODE", f"mode is REDUCE_ONLY: {intent.side} {intent.quantity} vs position {position}")
    ok("MODE")
    auto = f"automatic {view.auto_mode} ({', '.join(view.auto_reasons)})"
    if view.auto_mode == "OBSERVE_ONLY":
        return Denied("AUTO_MODE", f"{auto}: no orders")
    if view.auto_mode == "REDUCE_ONLY" and increases_exposure(intent.side, intent.quantity, position):
        return Denied("AUTO_MODE", f"{auto}: {intent.side} {intent.quantity} vs position {position}")
    ok("AUTO_MODE")
    if intent.symbol in view.halted:
        return Denied("SYMBOL_HALTED", f"the ledger halted {intent.symbol} after an integrity error")
    ok("SYMBOL_HALTED")
    age_ns = now_ns - intent.ts_ns
    if age_ns > limits.max_intent_age_ns:
        return Denied("STALE_INTENT", f"intent is {age_ns / 1e9:.1f}s old")
    ok("STALE_INTENT")
    if limits.max_book_age_ns is not None:
        seen = view.books.get(intent.symbol)
        if seen is None:
            return Denied("STALE_BOOK", f"no book of {intent.symbol} seen yet")
        if seen.stale:
            return Denied("STALE_BOOK", f"marketdata marked the last {intent.symbol} book stale")
        book_age = now_ns - seen.exchange_ts_ns
        if book_age > limits.max_book_age_ns:
            return Denied("STALE_BOOK", f"last {intent.symbol} book is {book_age / 1e9:.1f}s old")
        ok("STALE_BOOK")
    if view.rules is None:
        return Denied("RULES_NOT_LOADED", "exchange symbol rules are not loaded yet")
    rules = view.rules.get(intent.symbol)
    if rules is None:
        return Denied("UNKNOWN_SYMBOL", f"{intent.symbol} is not listed by the exchange")
    ok("UNKNOWN_SYMBOL")
    if not rules.trading:
        return Denied("SYMBOL_NOT_TRADING", f"{intent.symbol} is not TRADING at the exchange")
    ok("SYMBOL_NOT_TRADING")
    # Market orders carry no price, so no notional limit could be checked: refuse them.
    if intent.order_type != "limit":
        return Denied("ORDER_TYPE", f"{intent.order_type} orders are not allowed; notional needs a price")
    ok("ORDER_TYPE")
    quantity = intent.quantity
    if not quantity.is_finite() or quantity <= 0:
        return Denied("BAD_QUANTITY", f"quantity {quantity} is not a positive number")
    ok("BAD_QUANTITY")
    price = intent.price
    if price is None:
        return Denied("MISSING_PRICE", "a limit order needs a price")
    ok("MISSING_PRICE")
    if not price.is_finite() or price <= 0:
        return Denied("BAD_PRICE", f"price {price} is not a positive number")
    ok("BAD_PRICE")
    if intent.reduce_only and increases_exposure(intent.side, quantity, position):
        return Denied("REDUCE_ONLY", f"reduce-only {intent.side} {quantity} vs position {position}")
    ok("REDUCE_ONLY")
    return _exchange_checks(intent.symbol, price, quantity, rules, limits, passed)


def _exchange_checks(
    symbol: str,
    price: Decimal,
    quantity: Decimal,
    rules: SymbolRules,
    limits: RiskLimits,
    passed: list[str],
) -> Verdict:
    if (rules.min_price is not None and price < rules.min_price) or (
        rules.max_price is not None and price > rules.max_price
    ):
        return Denied("PRICE_RANGE", f"price {price} outside [{rules.min_price}, {rules.max_price}]")
    passed.append("PRICE_RANGE")
    if rules.tick_size is not None:
        if not on_tick(price, rules.tick_size):
            return Denied("PRICE_TICK", f"price {price} is not a multiple of tick {rules.tick_size}")
        passed.append("PRICE_TICK")
    if decimals(price) > rules.price_scale:
        return Denied("PRICE_SCALE", f"price {price} has more than {rules.price_scale} decimals")
    passed.append("PRICE_SCALE")
    if decimals(quantity) > rules.quantity_scale:
        return Denied("QUANTITY_SCALE", f"quantity {quantity} has more than {rules.quantity_scale} decimals")
    passed.append("QUANTITY_SCALE")
    notional = price * quantity
    if rules.min_notional is not None:
        if notional < rules.min_notional:
            return Denied("MIN_NOTIONAL", f"{symbol} order value {notional} < {rules.min_notional}")
        passed.append("MIN_NOTIONAL")
    if notional > limits.max_order_notional:
        return Denied("MAX_ORDER_NOTIONAL", f"order value {notional} > {limits.max_order_notional}")
    passed.append("MAX_ORDER_NOTIONAL")
    return Approved(tuple(passed))
