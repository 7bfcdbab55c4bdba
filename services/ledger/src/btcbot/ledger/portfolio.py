"""Marks from books and the PortfolioSnapshot built from ledger state: pure, no I/O.

Snapshot ids are deterministic from their cause, so a retried publish is dropped by JetStream:
- after an applied message: `portfolio:{account}:{message id}`;
- after marks moved: `portfolio:{account}:{last applied message id}:marks:{digest of the book ids used}`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal

from btcbot.contracts.messages import Balance, BookSnapshot, PortfolioSnapshot, Position
from btcbot.ledger.positions import ZERO, BotPnl, PositionState, Valuation

TWO = Decimal(2)


@dataclass(frozen=True)
class Mark:
    """The latest mid price of a symbol and the book it came from."""

    mid: Decimal
    book_id: str
    exchange_ts_ns: int
    sequence: int


def mark_of(book: BookSnapshot) -> Mark | None:
    """Mid of the best bid and ask; None for a stale, one-sided or crossed book."""
    if book.stale or not book.bids or not book.asks:
        return None
    bid = max(level.price for level in book.bids)
    ask = min(level.price for level in book.asks)
    if bid <= 0 or ask < bid:
        return None
    return Mark((bid + ask) / TWO, book.id, book.exchange_ts_ns, book.sequence)


def newer(current: Mark | None, candidate: Mark) -> bool:
    """True when `candidate` is a later book than `current` (redeliveries and reordering are ignored)."""
    if current is None:
        return True
    return (candidate.exchange_ts_ns, candidate.sequence) > (current.exchange_ts_ns, current.sequence)


def marks_digest(marks: Mapping[str, Mark]) -> str:
    """A short stable digest of the books a valuation used."""
    joined = "|".join(f"{symbol}={marks[symbol].book_id}" for symbol in sorted(marks))
    return hashlib.blake2b(joined.encode(), digest_size=8).hexdigest()


def change_snapshot_id(account: str, message_id: str) -> str:
    """Id of the snapshot published after applying one message."""
    return f"portfolio:{account}:{message_id}"


def marks_snapshot_id(account: str, last_message_id: str, marks: Mapping[str, Mark]) -> str:
    """Id of the snapshot published because marks moved since the last applied message."""
    return f"portfolio:{account}:{last_message_id or 'none'}:marks:{marks_digest(marks)}"


def heartbeat_snapshot_id(account: str, exec_seq: int, now_ns: int, interval_ns: int) -> str:
    """Id of a periodic snapshot: one per interval tick and watermark, so replicas publishing the same state at
    the same tick are deduplicated, while every tick still yields a fresh message."""
    tick = now_ns // max(1, interval_ns)
    return f"portfolio:{account}:heartbeat:{exec_seq}:{tick}"


def build_snapshot(
    *,
    snapshot_id: str,
    ts_ns: int,
    account: str,
    quote_asset: str,
    positions: Mapping[str, PositionState],
    balances: Mapping[str, Decimal],
    valuation: Valuation,
    peak: Decimal,
    drawdown: Decimal,
    fills: int,
    last_fill_id: str,
    halted: tuple[str, ...] = (),
    exec_seq: int = 0,
    exec_seqs_above: tuple[int, ...] = (),
    bot: BotPnl | None = None,
) -> PortfolioSnapshot:
    """The PortfolioSnapshot message for a ledger state valued at marks."""
    return PortfolioSnapshot(
        id=snapshot_id,
        ts_ns=ts_ns,
        account=account,
        quote_asset=quote_asset,
        balances=tuple(Balance(asset=asset, total=balances[asset]) for asset in sorted(balances)),
        positions=tuple(
            Position(
                symbol=symbol,
                quantity=p.quantity,
                avg_cost=p.avg_cost,
                realized_pnl=p.realized_pnl,
                unrealized_pnl=valuation.unrealized.get(symbol, ZERO),
                mark=valuation.marks.get(symbol),
                fees=p.fees,
                opening_quantity=p.opening,
            )
            for symbol, p in sorted(positions.items())
        ),
        exposure=valuation.exposure,
        realized_pnl=sum((p.realized_pnl for p in positions.values()), ZERO),
        unrealized_pnl=valuation.unrealized_total,
        fees=sum((p.fees for p in positions.values()), ZERO),
        equity=valuation.equity,
        peak_equity=peak,
        drawdown=drawdown,
        halted=tuple(sorted(halted)),
        fills=fills,
        last_fill_id=last_fill_id,
        exec_seq=exec_seq,
        exec_seqs_above=exec_seqs_above,
        bot_pnl=bot.pnl if bot else ZERO,
        bot_peak_pnl=bot.peak if bot else ZERO,
        bot_drawdown=bot.drawdown if bot else ZERO,
        day_pnl=bot.day_pnl if bot else ZERO,
        day_fees=bot.day_fees if bot else ZERO,
        missing_marks=valuation.missing_marks,
    )
