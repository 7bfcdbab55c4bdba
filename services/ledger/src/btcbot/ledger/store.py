"""The Postgres edge of the ledger: each message applied exactly once, in one transaction with all its effects.

Exactly once: the first statement of every transaction inserts the message id into `applied_messages`;
a redelivery finds it there and commits nothing else. A fill is also unique per (symbol, exchange trade
id), so the same trade under another message id is a no-op too. Concurrent appliers (replicas) block
on those unique keys until the first commits, then see a conflict.

Positions follow `positions.py`: a fill that comes after every fill of its symbol (in canonical order) is
applied incrementally; an out-of-order fill makes the symbol's position and daily PnL be rebuilt from
its full set of fills, so the stored state is always the pure model's function of the set.

Oversell: the fill is still recorded (it happened at the exchange) and balances still move, but the
symbol's position is frozen (`positions.halted_reason`) and an alert row is written. Each later fill of
that symbol triggers a rebuild from the full set; when the set is consistent again (typically the buy
that was delivered late), the position resumes and the alert is resolved. See `app.py` for why this is
neither a Poison nor a Retry.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any, Literal

import asyncpg
import msgspec

from btcbot.contracts.messages import OrderAccepted, OrderCanceled, OrderFilled, OrderRejected
from btcbot.ledger.positions import (
    ZERO,
    Fill,
    FillOutcome,
    Oversell,
    PositionState,
    apply_fill,
    balance_deltas,
    daily_pnl,
    drawdown,
    fill_from_event,
    replay,
    trade_sort_key,
)

# Serializes equity snapshot writes, so the running peak is computed from the latest row.
_EQUITY_LOCK_KEY = 0x6274636571747920  # 'btceqty '
# Serializes the one-time seeding of opening balances across replicas.
_SEED_LOCK_KEY = 0x6274637365656420  # 'btcseed '

_TRANSIENT: tuple[type[BaseException], ...] = (
    OSError,  # refused, reset, unreachable, and TimeoutError
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,  # pool closing, connection lost mid-query
    asyncpg.exceptions.OperatorInterventionError,  # admin shutdown, cannot connect now
    asyncpg.exceptions.InsufficientResourcesError,  # too many connections, disk full
    asyncpg.exceptions.TransactionRollbackError,  # serialization failure, deadlock
)

OrderEvent = OrderAccepted | OrderRejected | OrderCanceled


class StoreUnavailable(Exception):  # noqa: N818  (reads as a state: "the store is unavailable")
    """Postgres could not be reached or the transaction must be retried; nothing was committed."""


@dataclass(frozen=True)
class Origin:
    """Where an applied message came from (kept in `applied_messages` for audit)."""

    subject: str
    stream: str = ""
    sequence: int = 0


FillStatus = Literal["applied", "duplicate", "duplicate_trade", "halted"]


@dataclass(frozen=True)
class FillResult:
    """What applying one OrderFilled did."""

    status: FillStatus
    unknown_order: bool = False
    oversell: Oversell | None = None
    resumed: bool = False
    rebuilt: bool = False

    @property
    def changed(self) -> bool:
        """True when balances or positions moved (a snapshot is due)."""
        return self.status in ("applied", "halted")


@dataclass(frozen=True)
class LedgerState:
    """What a portfolio snapshot is built from."""

    positions: dict[str, PositionState]
    balances: dict[str, Decimal]
    halted: dict[str, str]
    peak: Decimal | None
    last_drawdown: Decimal
    fills: int = 0
    last_message_id: str = ""
    last_fill_id: str = ""


def _ts(ts_ns: int) -> datetime:
    return datetime.fromtimestamp(ts_ns / 1_000_000_000, tz=UTC)


def _position(row: Mapping[str, Any]) -> PositionState:
    last = None
    if row["last_ts_ns"] is not None:
        last = trade_sort_key(row["last_ts_ns"], row["last_trade_id"])
    return PositionState(
        symbol=row["symbol"],
        quantity=row["quantity"],
        cost=row["cost"],
        realized_pnl=row["realized_pnl"],
        fees=row["fees"],
        fills=row["fills"],
        last_key=last,
    )


def _fill(row: Mapping[str, Any]) -> Fill:
    return Fill(
        symbol=row["symbol"],
        trade_id=row["trade_id"],
        side=row["side"],
        price=row["price"],
        quantity=row["quantity"],
        fee=row["fee"],
        fee_asset=row["fee_asset"],
        tax=row["tax"],
        ts_ns=row["ts_ns"],
        base_asset=row["base_asset"],
        quote_asset=row["quote_asset"],
    )


class Store:
    """The ledger's tables behind a connection pool; every public method is one transaction."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool
        self.healthy = True

    @classmethod
    async def open(cls, dsn: str, *, min_size: int = 1, max_size: int = 4, timeout: float = 5.0) -> Store:
        """Connect a pool to `dsn`; raises StoreUnavailable when Postgres does not answer."""
        try:
            pool = await asyncpg.create_pool(
                dsn, min_size=min_size, max_size=max_size, timeout=timeout, command_timeout=timeout
            )
        except _TRANSIENT as exc:
            raise StoreUnavailable(f"postgres unreachable: {type(exc).__name__}: {exc}") from exc
        return cls(pool)

    async def close(self) -> None:
        """Close the pool (waits for connections in use)."""
        await self._pool.close()

    @asynccontextmanager
    async def _tx(self, *, isolation: str | None = None, readonly: bool = False) -> AsyncIterator[asyncpg.Connection]:
        try:
            async with self._pool.acquire() as conn, conn.transaction(isolation=isolation, readonly=readonly):
                yield conn
        except _TRANSIENT as exc:
            if isinstance(exc, ValueError):  # asyncpg's client-side DataError: a bad argument, not an outage
                raise
            self.healthy = False
            raise StoreUnavailable(f"postgres: {type(exc).__name__}: {exc}") from exc
        self.healthy = True

    async def ping(self) -> bool:
        """One round trip; updates and returns `healthy`."""
        try:
            async with self._tx() as conn:
                await conn.fetchval("SELECT 1")
        except StoreUnavailable:
            return False
        return True

    async def seed_balances(self, amounts: Mapping[str, Decimal], now_ns: int) -> bool:
        """Insert opening balances if the balances table is empty; True if this call seeded them."""
        if not amounts:
            return False
        async with self._tx() as conn:
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _SEED_LOCK_KEY)
            if await conn.fetchval("SELECT EXISTS (SELECT 1 FROM balances)"):
                return False
            await conn.executemany(
                "INSERT INTO balances (asset, total, updated) VALUES ($1, $2, $3)",
                [(asset, amount, _ts(now_ns)) for asset, amount in sorted(amounts.items())],
            )
            return True

    async def _claim(self, conn: asyncpg.Connection, message_id: str, origin: Origin, now: datetime) -> bool:
        claimed = await conn.fetchval(
            "INSERT INTO applied_messages (message_id, subject, stream, stream_seq, applied_at)"
            " VALUES ($1, $2, $3, $4, $5) ON CONFLICT (message_id) DO NOTHING RETURNING true",
            message_id,
            origin.subject,
            origin.stream,
            origin.sequence,
            now,
        )
        return bool(claimed)

    async def _record_event(
        self, conn: asyncpg.Connection, event: OrderEvent | OrderFilled, kind: str, now: datetime
    ) -> None:
        await conn.execute(
            "INSERT INTO order_events (message_id, client_order_id, type, payload, ts)"
            " VALUES ($1, $2, $3, $4, $5) ON CONFLICT (message_id) DO NOTHING",
            event.id,
            event.client_order_id,
            kind,
            msgspec.json.encode(event).decode(),
            now,
        )

    async def _refresh_order(self, conn: asyncpg.Connection, client_order_id: str, now: datetime) -> None:
        # Filled quantity and status follow from the recorded fills, whatever order the events came in.
        await conn.execute(
            """
            UPDATE orders o SET
                filled_quantity = f.q,
                status = CASE
                    WHEN o.status IN ('rejected', 'canceled') THEN o.status
                    WHEN o.quantity IS NOT NULL AND f.q >= o.quantity THEN 'filled'
                    WHEN f.q > 0 THEN 'partially_filled'
                    ELSE o.status END,
                updated_at = $2
            FROM (SELECT coalesce(sum(quantity), 0) AS q FROM fills WHERE client_order_id = $1) f
            WHERE o.client_order_id = $1
            """,
            client_order_id,
            now,
        )

    async def apply_order_event(self, event: OrderEvent, origin: Origin, now_ns: int) -> bool:
        """Record an accepted, rejected or canceled order; False if the message was already applied."""
        now = _ts(now_ns)
        async with self._tx() as conn:
            if not await self._claim(conn, event.id, origin, now):
                return False
            if isinstance(event, OrderAccepted):
                await self._record_event(conn, event, "accepted", now)
                await conn.execute(
                    """
                    INSERT INTO orders (client_order_id, exchange_order_id, symbol, side, type, price, quantity,
                                        status, strategy, intent_id, created_at, updated_at)
                    VALUES ($1, $2, $3, $4, $5, $6, $7, 'accepted', $8, $9, $10, $10)
                    ON CONFLICT (client_order_id) DO UPDATE SET
                        exchange_order_id = coalesce(orders.exchange_order_id, EXCLUDED.exchange_order_id),
                        side = coalesce(orders.side, EXCLUDED.side),
                        type = coalesce(orders.type, EXCLUDED.type),
                        price = coalesce(orders.price, EXCLUDED.price),
                        quantity = coalesce(orders.quantity, EXCLUDED.quantity),
                        strategy = coalesce(orders.strategy, EXCLUDED.strategy),
                        intent_id = coalesce(orders.intent_id, EXCLUDED.intent_id),
                        updated_at = EXCLUDED.updated_at
                    """,
                    event.client_order_id,
                    event.exchange_order_id,
                    event.symbol,
                    event.side,
                    event.order_type,
                    event.price,
                    event.quantity,
                    event.strategy,
                    event.intent_id,
                    now,
                )
                # Fills that arrived before their order are no longer unknown.
                await conn.execute(
                    "UPDATE fills SET flagged_unknown_order = false"
                    " WHERE client_order_id = $1 AND flagged_unknown_order",
                    event.client_order_id,
                )
            elif isinstance(event, OrderRejected):
                await self._record_event(conn, event, "rejected", now)
                await conn.execute(
                    """
                    INSERT INTO orders (client_order_id, symbol, status, strategy, intent_id, reason,
                                        created_at, updated_at)
                    VALUES ($1, $2, 'rejected', $3, $4, $5, $6, $6)
                    ON CONFLICT (client_order_id) DO UPDATE SET
                        status = 'rejected', reason = EXCLUDED.reason, updated_at = EXCLUDED.updated_at
                    """,
                    event.client_order_id,
                    event.symbol,
                    event.strategy,
                    event.intent_id,
                    f"{event.reason}: {event.detail}" if event.detail else event.reason,
                    now,
                )
            else:
                await self._record_event(conn, event, "canceled", now)
                await conn.execute(
                    """
                    INSERT INTO orders (client_order_id, exchange_order_id, symbol, status, reason,
                                        created_at, updated_at)
                    VALUES ($1, $2, $3, 'canceled', $4, $5, $5)
                    ON CONFLICT (client_order_id) DO UPDATE SET
                        status = CASE WHEN orders.status = 'filled' THEN orders.status ELSE 'canceled' END,
                        exchange_order_id = coalesce(orders.exchange_order_id, EXCLUDED.exchange_order_id),
                        reason = EXCLUDED.reason,
                        updated_at = EXCLUDED.updated_at
                    """,
                    event.client_order_id,
                    event.exchange_order_id,
                    event.symbol,
                    event.reason,
                    now,
                )
            await self._refresh_order(conn, event.client_order_id, now)
            return True

    async def apply_fill(self, event: OrderFilled, origin: Origin, now_ns: int) -> FillResult:
        """Record a fill and move the order, balances, position and daily PnL, all in one transaction."""
        fill = fill_from_event(event)
        now = _ts(now_ns)
        async with self._tx() as conn:
            if not await self._claim(conn, event.id, origin, now):
                return FillResult("duplicate")
            await self._record_event(conn, event, "filled", now)
            known = await conn.fetchval(
                "SELECT true FROM orders WHERE client_order_id = $1 FOR UPDATE", event.client_order_id
            )
            inserted = await conn.fetchval(
                """
                INSERT INTO fills (symbol, trade_id, message_id, client_order_id, exchange_order_id, strategy,
                                   side, price, quantity, fee, fee_asset, tax, base_asset, quote_asset,
                                   ts_ns, ts, flagged_unknown_order, recorded_at)
                VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18)
                ON CONFLICT (symbol, trade_id) DO NOTHING
                RETURNING true
                """,
                fill.symbol,
                fill.trade_id,
                event.id,
                event.client_order_id,
                event.exchange_order_id,
                event.strategy,
                fill.side,
                fill.price,
                fill.quantity,
                fill.fee,
                fill.fee_asset,
                fill.tax,
                fill.base_asset,
                fill.quote_asset,
                fill.ts_ns,
                _ts(fill.ts_ns),
                not known,
                now,
            )
            if not inserted:
                return FillResult("duplicate_trade")
            if known:
                await self._refresh_order(conn, event.client_order_id, now)
            result = await self._move_position(conn, fill, event.id, now)
            # Balances are the exchange's facts: they move even while the position is halted.
            # Sorted, so concurrent transactions lock balance rows in the same order (no deadlock).
            for asset, delta in sorted(balance_deltas(fill).items()):
                await conn.execute(
                    "INSERT INTO balances (asset, total, updated) VALUES ($1, $2, $3)"
                    " ON CONFLICT (asset) DO UPDATE SET total = balances.total + EXCLUDED.total,"
                    " updated = EXCLUDED.updated",
                    asset,
                    delta,
                    now,
                )
            return FillResult(
                result.status,
                unknown_order=not known,
                oversell=result.oversell,
                resumed=result.resumed,
                rebuilt=result.rebuilt,
            )

    async def _move_position(self, conn: asyncpg.Connection, fill: Fill, message_id: str, now: datetime) -> FillResult:
        await conn.execute(
            "INSERT INTO positions (symbol, updated) VALUES ($1, $2) ON CONFLICT (symbol) DO NOTHING",
            fill.symbol,
            now,
        )
        row = await conn.fetchrow("SELECT * FROM positions WHERE symbol = $1 FOR UPDATE", fill.symbol)
        assert row is not None
        position = _position(row)
        halted = row["halted_reason"]
        if halted is None and position.follows(fill):
            try:
                outcome = apply_fill(position, fill)
            except Oversell as exc:
                await self._halt(conn, exc, message_id, now)
                return FillResult("halted", oversell=exc)
            await self._write_position(conn, outcome.position, now)
            await self._add_daily(conn, [outcome])
            return FillResult("applied")
        # Out of order, or halted: rebuild the symbol from its whole set of fills.
        rows = await conn.fetch("SELECT * FROM fills WHERE symbol = $1", fill.symbol)
        try:
            rebuilt = replay(_fill(r) for r in rows)
        except Oversell as exc:
            if halted is None:
                await self._halt(conn, exc, message_id, now)
            else:
                await conn.execute(
                    "UPDATE positions SET fills = $2, updated = $3 WHERE symbol = $1", fill.symbol, len(rows), now
                )
            return FillResult("halted", oversell=exc, rebuilt=True)
        await self._write_position(conn, rebuilt.positions[fill.symbol], now)
        await conn.execute("DELETE FROM daily_pnl WHERE symbol = $1", fill.symbol)
        await self._add_daily(conn, rebuilt.outcomes)
        if halted is not None:
            await conn.execute(
                "UPDATE ledger_alerts SET resolved_at = $2"
                " WHERE symbol = $1 AND kind = 'oversell' AND resolved_at IS NULL",
                fill.symbol,
                now,
            )
        return FillResult("applied", resumed=halted is not None, rebuilt=True)

    async def _halt(self, conn: asyncpg.Connection, exc: Oversell, message_id: str, now: datetime) -> None:
        await conn.execute(
            "UPDATE positions SET halted_reason = $2, fills = fills + 1, updated = $3 WHERE symbol = $1",
            exc.symbol,
            f"oversell: {exc}",
            now,
        )
        await conn.execute(
            "INSERT INTO ledger_alerts (ts, kind, symbol, message_id, detail) VALUES ($1, 'oversell', $2, $3, $4)",
            now,
            exc.symbol,
            message_id,
            json.dumps(
                {"trade_id": exc.trade_id, "held": str(exc.held), "delivered": str(exc.delivered), "error": str(exc)}
            ),
        )

    async def _write_position(self, conn: asyncpg.Connection, position: PositionState, now: datetime) -> None:
        last_ts, last_trade = None, None
        if position.last_key is not None:
            last_ts, last_trade = position.last_key[0], position.last_key[2]
        await conn.execute(
            """
            UPDATE positions SET quantity = $2, cost = $3, avg_cost = $4, realized_pnl = $5, fees = $6,
                                 fills = $7, last_ts_ns = $8, last_trade_id = $9, halted_reason = NULL,
                                 updated = $10
            WHERE symbol = $1
            """,
            position.symbol,
            position.quantity,
            position.cost,
            position.avg_cost,
            position.realized_pnl,
            position.fees,
            position.fills,
            last_ts,
            last_trade,
            now,
        )

    async def _add_daily(self, conn: asyncpg.Connection, outcomes: list[FillOutcome] | tuple[FillOutcome, ...]) -> None:
        totals: dict[tuple[date, str], tuple[Decimal, Decimal]] = daily_pnl(outcomes)
        await conn.executemany(
            "INSERT INTO daily_pnl (day, symbol, realized, fees) VALUES ($1, $2, $3, $4)"
            " ON CONFLICT (day, symbol) DO UPDATE SET realized = daily_pnl.realized + EXCLUDED.realized,"
            " fees = daily_pnl.fees + EXCLUDED.fees",
            [(day, symbol, realized, fees) for (day, symbol), (realized, fees) in sorted(totals.items())],
        )

    async def state(self) -> LedgerState:
        """Positions, balances, halts and the last recorded peak, read in one snapshot."""
        async with self._tx(isolation="repeatable_read", readonly=True) as conn:
            positions = await conn.fetch("SELECT * FROM positions ORDER BY symbol")
            balances = await conn.fetch("SELECT asset, total FROM balances ORDER BY asset")
            last = await conn.fetchrow("SELECT peak, drawdown FROM equity_snapshots ORDER BY id DESC LIMIT 1")
            last_message = await conn.fetchval(
                "SELECT message_id FROM applied_messages ORDER BY applied_at DESC, message_id DESC LIMIT 1"
            )
            last_fill = await conn.fetchval(
                "SELECT message_id FROM fills ORDER BY recorded_at DESC, message_id DESC LIMIT 1"
            )
        return LedgerState(
            positions={r["symbol"]: _position(r) for r in positions},
            balances={r["asset"]: r["total"] for r in balances},
            halted={r["symbol"]: r["halted_reason"] for r in positions if r["halted_reason"] is not None},
            peak=last["peak"] if last else None,
            last_drawdown=last["drawdown"] if last else ZERO,
            fills=sum(r["fills"] for r in positions),
            last_message_id=last_message or "",
            last_fill_id=last_fill or "",
        )

    async def record_equity(self, equity: Decimal, cause: str, now_ns: int) -> tuple[Decimal, Decimal]:
        """Append an equity point; returns (peak, drawdown) including it."""
        async with self._tx() as conn:
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _EQUITY_LOCK_KEY)
            previous = await conn.fetchval("SELECT peak FROM equity_snapshots ORDER BY id DESC LIMIT 1")
            peak = equity if previous is None else max(previous, equity)
            down = drawdown(peak, equity)
            await conn.execute(
                "INSERT INTO equity_snapshots (ts, equity, peak, drawdown, cause) VALUES ($1, $2, $3, $4, $5)",
                _ts(now_ns),
                equity,
                peak,
                down,
                cause,
            )
        return peak, down
