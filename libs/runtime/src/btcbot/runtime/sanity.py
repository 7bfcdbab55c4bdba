"""Sanity checks every consumer applies before a handler sees a message: pure, no I/O.

A message's own clock (`ts_ns`) is the sender's word; the time JetStream stored it is the server's. A message
dated further ahead of its storage time than the allowed skew cannot be trusted to order anything (a release
dated an hour ahead would outrank every later kill), so it is refused as FUTURE_DATED. Comparing with the
storage time, not with "now", gives the same answer live, at a restart's rebuild and in a replay.

Money fields of data and events must be finite numbers below an absurdity ceiling, and positive where a zero
or a negative means nothing (prices, quantities, book levels, fills); fees and taxes only finite. A message
that breaks this is refused as INVALID_MONEY naming the field. Commands (OrderIntent, SubmitOrder) are not
checked here: their domain answers them (risk denies BAD_PRICE/BAD_QUANTITY, execution rejects against the
symbol's exchange rules), because whoever sent a command waits for its answer.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal, InvalidOperation

from btcbot.contracts.messages import (
    BookSnapshot,
    Message,
    OrderAccepted,
    OrderCanceled,
    OrderFilled,
    PortfolioSnapshot,
    TradeTick,
)

FUTURE_DATED = "FUTURE_DATED"
INVALID_MONEY = "INVALID_MONEY"

# No price, quantity or amount we trade reaches 10^18 (a whole year of a large exchange's volume in TRY is far
# below it); a value at or above it is a forged or corrupted message (10^400 BTC), never money.
MAX_ADJUSTED_EXPONENT = 17


def is_future_dated(ts_ns: int, stored_ns: int, max_skew_ns: int) -> bool:
    """True when a message claims a creation time more than `max_skew_ns` after it was stored."""
    return ts_ns - stored_ns > max_skew_ns


def claimed_ns(message: Message) -> int:
    """The latest time a message claims for itself: `ts_ns`, and for market data also the times freshness is
    judged by (a book whose exchange time is an hour ahead would look fresh for an hour). A fill's exchange time
    is the exchange's record of a trade that happened, never a freshness claim, so it is not counted."""
    if isinstance(message, BookSnapshot):
        return max(message.ts_ns, message.exchange_ts_ns, message.received_ts_ns)
    if isinstance(message, TradeTick):
        return max(message.ts_ns, message.exchange_ts_ns)
    return message.ts_ns


def _finite(value: Decimal) -> bool:
    return value.is_finite() and value.adjusted() <= MAX_ADJUSTED_EXPONENT


def _bad_positive(name: str, value: Decimal) -> str | None:
    if _finite(value) and value > 0:
        return None
    return f"{name}={value}"


def _bad_finite(name: str, value: Decimal) -> str | None:
    return None if _finite(value) else f"{name}={value}"


def _bad_nonnegative(name: str, value: Decimal) -> str | None:
    if _finite(value) and value >= 0:
        return None
    return f"{name}={value}"


_ZERO = Decimal(0)
_CEILING = Decimal(10) ** (MAX_ADJUSTED_EXPONENT + 1)


def _positive(value: Decimal) -> bool:
    try:
        return _ZERO < value < _CEILING
    except InvalidOperation:  # NaN and sNaN do not compare
        return False


def _book(m: BookSnapshot) -> str | None:
    # The hot path (every book, every consumer): one chained comparison per number; names only for a failure.
    for side, levels in (("bids", m.bids), ("asks", m.asks)):
        for level in levels:
            if not (_positive(level.price) and _positive(level.quantity)):
                i = levels.index(level)
                return _bad_positive(f"{side}[{i}].price", level.price) or f"{side}[{i}].quantity={level.quantity}"
    return None


def _trade(m: TradeTick) -> str | None:
    return _bad_positive("price", m.price) or _bad_positive("quantity", m.quantity)


def _accepted(m: OrderAccepted) -> str | None:
    price = None if m.price is None else _bad_positive("price", m.price)
    return price or _bad_positive("quantity", m.quantity)


def _canceled(m: OrderCanceled) -> str | None:
    return _bad_nonnegative("filled_quantity", m.filled_quantity)


def _filled(m: OrderFilled) -> str | None:
    return (
        _bad_positive("price", m.price)
        or _bad_positive("quantity", m.quantity)
        or _bad_finite("fee", m.fee)
        or _bad_finite("tax", m.tax)
    )


def _portfolio(m: PortfolioSnapshot) -> str | None:
    for name in ("exposure", "realized_pnl", "unrealized_pnl", "fees", "equity", "peak_equity", "drawdown",
                 "bot_pnl", "bot_peak_pnl", "bot_drawdown", "day_pnl", "day_fees"):  # fmt: skip
        bad = _bad_finite(name, getattr(m, name))
        if bad:
            return bad
    for b in m.balances:
        bad = _bad_finite(f"balances[{b.asset}].total", b.total) or _bad_finite(f"balances[{b.asset}].locked", b.locked)
        if bad:
            return bad
    for p in m.positions:
        bad = (
            _bad_finite(f"positions[{p.symbol}].quantity", p.quantity)
            or _bad_finite(f"positions[{p.symbol}].avg_cost", p.avg_cost)
            or _bad_finite(f"positions[{p.symbol}].realized_pnl", p.realized_pnl)
            or _bad_finite(f"positions[{p.symbol}].unrealized_pnl", p.unrealized_pnl)
            or _bad_finite(f"positions[{p.symbol}].fees", p.fees)
            or _bad_nonnegative(f"positions[{p.symbol}].opening_quantity", p.opening_quantity)
            or (None if p.mark is None else _bad_positive(f"positions[{p.symbol}].mark", p.mark))
        )
        if bad:
            return bad
    return None


_CHECKS: dict[type[Message], Callable[[Message], str | None]] = {
    BookSnapshot: _book,  # type: ignore[dict-item]
    TradeTick: _trade,  # type: ignore[dict-item]
    OrderAccepted: _accepted,  # type: ignore[dict-item]
    OrderCanceled: _canceled,  # type: ignore[dict-item]
    OrderFilled: _filled,  # type: ignore[dict-item]
    PortfolioSnapshot: _portfolio,  # type: ignore[dict-item]
}


def money_problem(message: Message) -> str | None:
    """The first money field of `message` that is not sane, as "field=value", or None (one dict lookup if none)."""
    check = _CHECKS.get(type(message))
    return None if check is None else check(message)
