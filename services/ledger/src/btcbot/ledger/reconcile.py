"""Comparing the ledger with the exchange: balances per asset and our trades. Pure: no I/O, time passed in.

A difference only counts when it cannot be a fill in flight:
- a trade the exchange has and the ledger lacks is "in flight" while younger than `grace`; while any is,
  the round is deferred and balances are not compared (they would differ by exactly those fills);
- every other difference must be seen in two consecutive rounds with the same values (`confirm`), so a
  fill that landed between reading the exchange and reading the ledger never raises a mismatch.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Literal

ZERO = Decimal(0)

Kind = Literal["balance", "missing_fill", "unknown_fill", "fill_differs"]
Status = Literal["match", "mismatch", "deferred"]


@dataclass(frozen=True)
class TradeView:
    """One of our trades as either side reports it (fee and tax unsigned)."""

    symbol: str
    trade_id: str
    side: str
    price: Decimal
    quantity: Decimal
    fee: Decimal
    tax: Decimal
    ts_ns: int
    exchange_order_id: str = ""

    @property
    def key(self) -> tuple[str, str, str]:
        """One order's side of a trade: a self-match lists one trade id twice, once per order."""
        return (self.symbol, self.trade_id, self.exchange_order_id)


@dataclass(frozen=True)
class Difference:
    """One disagreement between the ledger and the exchange."""

    kind: Kind
    asset: str | None = None
    symbol: str | None = None
    trade_id: str | None = None
    ledger: Decimal | None = None
    exchange: Decimal | None = None
    detail: Mapping[str, str] = field(default_factory=dict)
    exchange_order_id: str | None = None

    @property
    def key(self) -> tuple[str, str, str, str, str]:
        """What identifies the difference across rounds."""
        return (self.kind, self.asset or "", self.symbol or "", self.trade_id or "", self.exchange_order_id or "")

    @property
    def same_as(self) -> tuple[object, ...]:
        """Identity plus values: a difference persists only if these are equal in both rounds."""
        return (*self.key, self.ledger, self.exchange, tuple(sorted(self.detail.items())))


@dataclass(frozen=True)
class Comparison:
    """One round's view: the differences seen, and whether the ledger had caught up with the exchange."""

    status: Status
    differences: tuple[Difference, ...]
    in_flight: tuple[tuple[str, str, str], ...]
    assets: int
    trades: int
    balances: tuple[BalanceLine, ...] = ()
    trades_checked: bool = True


@dataclass(frozen=True)
class BalanceLine:
    """Ledger against exchange for one asset."""

    asset: str
    ledger: Decimal
    exchange: Decimal

    @property
    def difference(self) -> Decimal:
        """Exchange minus ledger."""
        return self.exchange - self.ledger

    def matches(self, tolerance: Decimal = ZERO) -> bool:
        """True when the two agree within `tolerance`."""
        return abs(self.difference) <= tolerance


def balance_lines(ledger: Mapping[str, Decimal], exchange: Mapping[str, Decimal]) -> list[BalanceLine]:
    """Both sides per asset (an asset only one side knows counts as zero on the other), sorted by asset."""
    assets = sorted(set(ledger) | set(exchange))
    return [BalanceLine(a, ledger.get(a, ZERO), exchange.get(a, ZERO)) for a in assets]


def _trade_fields(trade: TradeView) -> dict[str, Decimal | str]:
    return {
        "side": trade.side,
        "price": trade.price,
        "quantity": trade.quantity,
        "charge": trade.fee + trade.tax,
    }


def compare(
    *,
    ledger_balances: Mapping[str, Decimal],
    exchange_balances: Mapping[str, Decimal],
    ledger_trades: Iterable[TradeView],
    exchange_trades: Iterable[TradeView] | None,
    now_ns: int,
    window_start_ns: int,
    grace_ns: int,
    tolerance: Decimal = ZERO,
) -> Comparison:
    """Compare one snapshot of both sides; trades are compared inside [window_start, now - grace].

    `exchange_trades` None means the exchange would not list them this round (rate limited): balances are
    still compared, and the two-round rule keeps a fill in flight from counting.
    """
    ours = {t.key: t for t in ledger_trades} if exchange_trades is not None else {}
    theirs = {t.key: t for t in exchange_trades} if exchange_trades is not None else {}
    settled = now_ns - grace_ns
    differences: list[Difference] = []
    in_flight: list[tuple[str, str, str]] = []
    for key, trade in sorted(theirs.items()):
        mine = ours.get(key)
        if mine is None:
            if trade.ts_ns > settled:
                in_flight.append(key)
            else:
                differences.append(
                    Difference(
                        "missing_fill",
                        symbol=trade.symbol,
                        trade_id=trade.trade_id,
                        exchange_order_id=trade.exchange_order_id,
                        exchange=trade.quantity,
                    )
                )
            continue
        a, b = _trade_fields(mine), _trade_fields(trade)
        changed = {name: f"ledger={a[name]} exchange={b[name]}" for name in a if a[name] != b[name]}
        if changed:
            differences.append(
                Difference(
                    "fill_differs",
                    symbol=trade.symbol,
                    trade_id=trade.trade_id,
                    exchange_order_id=trade.exchange_order_id,
                    detail=changed,
                )
            )
    for key, trade in sorted(ours.items()):
        # Only inside the window both sides were asked about, and old enough to be listed by the exchange.
        if key not in theirs and window_start_ns <= trade.ts_ns <= settled:
            differences.append(
                Difference(
                    "unknown_fill",
                    symbol=trade.symbol,
                    trade_id=trade.trade_id,
                    exchange_order_id=trade.exchange_order_id,
                    ledger=trade.quantity,
                )
            )
    lines = balance_lines(ledger_balances, exchange_balances)
    if not in_flight:
        differences.extend(
            Difference("balance", asset=line.asset, ledger=line.ledger, exchange=line.exchange)
            for line in lines
            if not line.matches(tolerance)
        )
    status: Status = "deferred" if in_flight else ("mismatch" if differences else "match")
    return Comparison(
        status, tuple(differences), tuple(in_flight), len(lines), len(theirs), tuple(lines), exchange_trades is not None
    )


def confirm(previous: Iterable[Difference], current: Iterable[Difference]) -> list[Difference]:
    """The differences of this round that the previous round saw with the same values."""
    before = {d.same_as for d in previous}
    return [d for d in current if d.same_as in before]
