"""The Postgres edge of the ledger: each message applied exactly once, in one transaction with all its effects.

Exactly once: the first statement of every transaction inserts the message id into `applied_messages`;
a redelivery finds it there and commits nothing else. A fill is also unique per (symbol, exchange trade
id, exchange order id), so the same fill under another message id is a no-op too; the two sides of a
self-match (one trade id, two of our orders) are two fills. Concurrent appliers (replicas) block
on those unique keys until the first commits, then see a conflict.

Positions follow `positions.py`: a fill that comes after every fill of its symbol (in canonical order) is
applied incrementally; an out-of-order fill makes the symbol's position and daily PnL be rebuilt from
its full set of fills, so the stored state is always the pure model's function of the set.

Oversell: the fill is still recorded (it happened at the exchange) and balances still move, but the
symbol's position is frozen (`positions.halted_reason`) and an alert row is written. Each later fill of
that symbol triggers a rebuild from the full set; when the set is consistent again (typically the buy
that was delivered late), the position resumes and the alert is resolved. See `app.py` for why this is
neither a Poison nor a Retry.

Quarantine (`quarantine_unknown`, on in the service): a fill for an order the ledger does not know moves
nothing. It is kept in `quarantined_fills` with an alert row until its order's OrderAccepted arrives (then it is
booked like any fill, in that transaction), reconciliation finds the same trade at the exchange, or an operator
adopts it; a forged fill (10^400 BTC of an order nobody placed) so never reaches positions or balances.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Literal

import asyncpg
import msgspec

from btcbot.contracts.messages import OrderAccepted, OrderCanceled, OrderFilled, OrderRejected
from btcbot.contracts.signing import UNSIGNED
from btcbot.contracts.streams import EXECUTION
from btcbot.ledger.positions import (
    ZERO,
    Fill,
    FillOutcome,
    Oversell,
    PositionState,
    apply_fill,
    balance_deltas,
    daily_pnl,
    day_of,
    drawdown,
    fill_from_event,
    opening_position,
    opening_shortfall,
    replay,
    trade_sort_key,
    watermark,
)
from btcbot.ledger.reconcile import Comparison, Difference, TradeView

# Serializes equity snapshot writes, so the running peak is computed from the latest row.
_EQUITY_LOCK_KEY = 0x6274636571747920  # 'btceqty '
# Serializes the one-time seeding of opening balances across replicas.
_SEED_LOCK_KEY = 0x6274637365656420  # 'btcseed '
# Serializes changes of the stored configuration (the trading-day offset) across replicas.
_CONFIG_LOCK_KEY = 0x627463636F6E6667  # 'btcconfg'
# Key space (first int of the two-int advisory lock) of the per-order locks of apply_batch; the second is the
# client order id's hash. Two-int keys never collide with the one-bigint keys above.
_ORDER_LOCK_SPACE = 0x62746F72  # 'btor'

_TRANSIENT: tuple[type[BaseException], ...] = (
    OSError,  # refused, reset, unreachable, and TimeoutError
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,  # pool closing, connection lost mid-query
    asyncpg.exceptions.OperatorInterventionError,  # admin shutdown, cannot connect now
    asyncpg.exceptions.InsufficientResourcesError,  # too many connections, disk full
    asyncpg.exceptions.TransactionRollbackError,  # serialization failure, deadlock
    # A failover: DATABASE_URL still leads to the demoted server, now a read-only standby, until the name moves.
    asyncpg.exceptions.ReadOnlySQLTransactionError,
)

OrderEvent = OrderAccepted | OrderRejected | OrderCanceled
ExecutionEvent = OrderAccepted | OrderRejected | OrderCanceled | OrderFilled
# Quote units per unit of a third fee asset, and where the rate came from (the book id of the mark).
FeeRate = tuple[Decimal, str]


class StoreUnavailable(Exception):  # noqa: N818  (reads as a state: "the store is unavailable")
    """Postgres could not be reached or the transaction must be retried; nothing was committed."""


@dataclass(frozen=True)
class Origin:
    """Where an applied message came from (kept in `applied_messages` for audit)."""

    subject: str
    stream: str = ""
    sequence: int = 0


@dataclass(frozen=True)
class Incoming:
    """One execution event to apply, where it came from, and the fee rate taken from the marks at arrival."""

    event: ExecutionEvent
    origin: Origin
    fee_rate: FeeRate | None = None


FillStatus = Literal["applied", "duplicate", "duplicate_trade", "halted", "quarantined"]


@dataclass(frozen=True)
class FillResult:
    """What applying one execution event did (order events are only ever applied or duplicate)."""

    status: FillStatus
    unknown_order: bool = False
    oversell: Oversell | None = None
    resumed: bool = False
    rebuilt: bool = False
    # Quarantined fills booked because this event (an OrderAccepted) made their order known.
    released: int = 0

    @property
    def changed(self) -> bool:
        """True when balances, positions or the quarantine moved (a snapshot is due)."""
        return self.status in ("applied", "halted", "quarantined")


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
    quarantined: int = 0
    # The EXECUTION watermark of this state and the sequences above it already applied (positions.watermark).
    exec_seq: int = 0
    exec_seqs_above: tuple[int, ...] = ()
    # The bot's PnL peak so far, its PnL when the current trading day began, and today's fees (None: no record).
    bot_peak: Decimal | None = None
    day_start_bot_pnl: Decimal | None = None
    day_fees: Decimal = ZERO


def _ts(ts_ns: int) -> datetime:
    return datetime.fromtimestamp(ts_ns / 1_000_000_000, tz=UTC)


def _position(row: Mapping[str, Any]) -> PositionState:
    last = None
    if row["last_ts_ns"] is not None:
        last = trade_sort_key(
            row["last_ts_ns"], row["last_trade_id"], row["last_side"] or "buy", row["last_exchange_order_id"] or ""
        )
    return PositionState(
        symbol=row["symbol"],
        quantity=row["quantity"],
        cost=row["cost"],
        realized_pnl=row["realized_pnl"],
        fees=row["fees"],
        fills=row["fills"],
        last_key=last,
        opening=row["opening_quantity"],
    )


def _filled(event: ExecutionEvent) -> OrderFilled:
    assert isinstance(event, OrderFilled)
    return event


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
        fee_rate=row["fee_rate"],
        exchange_order_id=row["exchange_order_id"],
    )


class Store:
    """The ledger's tables behind a connection pool; every public method is one transaction."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool
        self.healthy = True
        # Daily PnL days start at midnight UTC+offset; set from settings by configure_day_offset.
        self.day_offset_minutes = 0
        # Fills of unknown orders go to quarantine instead of positions (the service turns this on).
        self.quarantine_unknown = False

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
            if isinstance(exc, asyncpg.exceptions.ReadOnlySQLTransactionError):
                # Every pooled session is on the read-only server: reconnect them all, so the next transaction
                # reaches whatever DATABASE_URL names by then (the promoted primary).
                await self._pool.expire_connections()
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

    async def _order_event(self, conn: asyncpg.Connection, event: OrderEvent, now: datetime) -> None:
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
                "UPDATE fills SET flagged_unknown_order = false WHERE client_order_id = $1 AND flagged_unknown_order",
                event.client_order_id,
            )
        elif isinstance(event, OrderRejected) and event.reason == UNSIGNED:
            # A forged command execution refused: kept for audit, never the fate of an order of that id.
            await self._record_event(conn, event, "rejected", now)
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
        await self._refresh_orders(conn, [event.client_order_id], now)

    async def apply_order_event(self, event: OrderEvent, origin: Origin, now_ns: int) -> bool:
        """Record an accepted, rejected or canceled order; False if the message was already applied."""
        (result,) = await self.apply_batch([Incoming(event, origin)], now_ns)
        return result.status == "applied"

    async def apply_fill(
        self, event: OrderFilled, origin: Origin, now_ns: int, *, fee_rate: FeeRate | None = None
    ) -> FillResult:
        """Record a fill and move the order, balances, position and daily PnL, all in one transaction."""
        (result,) = await self.apply_batch([Incoming(event, origin, fee_rate)], now_ns)
        return result

    async def apply_batch(self, items: Sequence[Incoming], now_ns: int) -> list[FillResult]:
        """Apply many execution events in ONE transaction; one result per item, in the same order.

        Each message still counts once: its id is claimed in `applied_messages` inside the transaction that
        carries its effects, so a batch commits all of its messages or none. Order events go first (a fill
        whose order is accepted in the same batch is not unknown); fills are folded per symbol in canonical
        order, so a batch ends in the same state as the same messages applied one by one.
        """
        now = _ts(now_ns)
        results: list[FillResult | None] = [None] * len(items)
        first: dict[str, int] = {}
        for index, item in enumerate(items):
            if item.event.id in first:
                results[index] = FillResult("duplicate")
            else:
                first[item.event.id] = index
        async with self._tx() as conn:
            # One order's events serialize across replicas: without it a fill applied by one replica while another
            # records the order's acceptance sees no order (quarantined) while the acceptance sees no quarantined
            # fill to release (neither committed yet), and the fill stays in quarantine. Sorted: no deadlock.
            await conn.execute(
                "SELECT pg_advisory_xact_lock($2::int, hashtext(c))"
                " FROM (SELECT DISTINCT unnest($1::text[]) AS c ORDER BY c) AS ids",
                sorted({items[i].event.client_order_id for i in first.values()}),
                _ORDER_LOCK_SPACE,
            )
            claimed = await self._claim_many(conn, [items[i] for i in first.values()], now)
            fills: list[tuple[int, Incoming]] = []
            for message_id, index in first.items():
                item = items[index]
                if message_id not in claimed:
                    results[index] = FillResult("duplicate")
                elif isinstance(item.event, OrderFilled):
                    fills.append((index, item))
                else:
                    await self._order_event(conn, item.event, now)
                    released = await self._release_for_order(conn, item.event, now)
                    results[index] = FillResult("applied", released=len(released))
                    # Booked below with this batch's fills, under indexes past its end (their results are dropped).
                    fills.extend((len(items) + len(fills) + k, r) for k, r in enumerate(released))
            if fills:
                for index, result in (await self._apply_fills(conn, fills, now)).items():
                    if index < len(results):
                        results[index] = result
        return [r if r is not None else FillResult("duplicate") for r in results]

    async def _claim_many(self, conn: asyncpg.Connection, items: Sequence[Incoming], now: datetime) -> set[str]:
        # Sorted, so two replicas claiming overlapping batches take the unique-index locks in one order.
        ordered = sorted(items, key=lambda i: i.event.id)
        rows = await conn.fetch(
            "INSERT INTO applied_messages (message_id, subject, stream, stream_seq, applied_at)"
            " SELECT m, s, st, q, $5 FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[]) AS u(m, s, st, q)"
            " ON CONFLICT (message_id) DO NOTHING RETURNING message_id",
            [i.event.id for i in ordered],
            [i.origin.subject for i in ordered],
            [i.origin.stream for i in ordered],
            [i.origin.sequence for i in ordered],
            now,
        )
        return {r["message_id"] for r in rows}

    async def _apply_fills(
        self, conn: asyncpg.Connection, batch: list[tuple[int, Incoming]], now: datetime, *, adopt: bool = False
    ) -> dict[int, FillResult]:
        """Book fills; with `quarantine_unknown` (and not `adopt`), fills of unknown orders go to quarantine."""
        events = [(index, item, _filled(item.event)) for index, item in batch]
        await conn.executemany(
            "INSERT INTO order_events (message_id, client_order_id, type, payload, ts)"
            " VALUES ($1, $2, 'filled', $3, $4) ON CONFLICT (message_id) DO NOTHING",
            [(e.id, e.client_order_id, msgspec.json.encode(e).decode(), now) for _, _, e in events],
        )
        orders = sorted({e.client_order_id for _, _, e in events})
        known_rows = await conn.fetch(
            "SELECT client_order_id FROM orders WHERE client_order_id = ANY($1::text[])"
            " ORDER BY client_order_id FOR UPDATE",
            orders,
        )
        known = {r["client_order_id"] for r in known_rows}
        held: dict[int, FillResult] = {}
        if self.quarantine_unknown and not adopt:
            strangers = [(index, item, e) for index, item, e in events if e.client_order_id not in known]
            if strangers:
                held = await self._quarantine(conn, strangers, now)
                events = [(index, item, e) for index, item, e in events if e.client_order_id in known]
                if not events:
                    return held
        parsed = [
            (index, event, fill_from_event(event, fee_rate=item.fee_rate[0] if item.fee_rate else None), item)
            for index, item, event in events
        ]
        inserted_rows = await conn.fetch(
            """
            INSERT INTO fills (symbol, trade_id, message_id, client_order_id, exchange_order_id, strategy, side,
                               price, quantity, fee, fee_asset, tax, base_asset, quote_asset, ts_ns, ts,
                               flagged_unknown_order, recorded_at, fee_rate, fee_rate_source)
            SELECT sy, tr, mi, co, eo, st, si, pr, qu, fe, fa, ta, ba, qa, tn, ts, fl, $18::timestamptz, r, rs
            FROM unnest(
                $1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[],
                $8::numeric[], $9::numeric[], $10::numeric[], $11::text[], $12::numeric[], $13::text[], $14::text[],
                $15::bigint[], $16::timestamptz[], $17::boolean[], $19::numeric[], $20::text[]
            ) AS u(sy, tr, mi, co, eo, st, si, pr, qu, fe, fa, ta, ba, qa, tn, ts, fl, r, rs)
            ON CONFLICT (symbol, trade_id, exchange_order_id) DO NOTHING
            RETURNING message_id
            """,
            [f.symbol for _, _, f, _ in parsed],
            [f.trade_id for _, _, f, _ in parsed],
            [e.id for _, e, _, _ in parsed],
            [e.client_order_id for _, e, _, _ in parsed],
            [e.exchange_order_id for _, e, _, _ in parsed],
            [e.strategy for _, e, _, _ in parsed],
            [f.side for _, _, f, _ in parsed],
            [f.price for _, _, f, _ in parsed],
            [f.quantity for _, _, f, _ in parsed],
            [f.fee for _, _, f, _ in parsed],
            [f.fee_asset for _, _, f, _ in parsed],
            [f.tax for _, _, f, _ in parsed],
            [f.base_asset for _, _, f, _ in parsed],
            [f.quote_asset for _, _, f, _ in parsed],
            [f.ts_ns for _, _, f, _ in parsed],
            [_ts(f.ts_ns) for _, _, f, _ in parsed],
            [e.client_order_id not in known for _, e, _, _ in parsed],
            now,
            [f.fee_rate for _, _, f, _ in parsed],
            [i.fee_rate[1] if i.fee_rate else None for _, _, _, i in parsed],
        )
        inserted = {r["message_id"] for r in inserted_rows}
        results: dict[int, FillResult] = dict(held)
        new_fills: list[tuple[int, str, Fill]] = []
        for index, event, fill, _ in parsed:
            if event.id in inserted:
                new_fills.append((index, event.id, fill))
            else:
                results[index] = FillResult("duplicate_trade")
        if not new_fills:
            return results
        touched = sorted({e.client_order_id for _, e, _, _ in parsed if e.id in inserted} & known)
        if touched:
            await self._refresh_orders(conn, touched, now)
        by_symbol: dict[str, list[tuple[int, str, Fill]]] = {}
        for entry in new_fills:
            by_symbol.setdefault(entry[2].symbol, []).append(entry)
        for symbol in sorted(by_symbol):
            results.update(await self._move_position(conn, symbol, by_symbol[symbol], now))
        # Balances are the exchange's facts: they move even while a position is halted. Summed per asset and
        # written in sorted order, so concurrent transactions lock balance rows in one order (no deadlock).
        totals: dict[str, Decimal] = {}
        for _, _, fill in new_fills:
            for asset, delta in balance_deltas(fill).items():
                totals[asset] = totals.get(asset, ZERO) + delta
        await conn.executemany(
            "INSERT INTO balances (asset, total, updated) VALUES ($1, $2, $3)"
            " ON CONFLICT (asset) DO UPDATE SET total = balances.total + EXCLUDED.total,"
            " updated = EXCLUDED.updated",
            [(asset, totals[asset], now) for asset in sorted(totals)],
        )
        for index, event, _, _ in parsed:
            if event.id in inserted:
                results[index] = replace(results[index], unknown_order=event.client_order_id not in known)
        return results

    async def _quarantine(
        self, conn: asyncpg.Connection, strangers: list[tuple[int, Incoming, OrderFilled]], now: datetime
    ) -> dict[int, FillResult]:
        """Hold fills of unknown orders (one alert each); a trade already held under another id is a duplicate."""
        results: dict[int, FillResult] = {}
        for index, item, event in strangers:
            qid = await conn.fetchval(
                """
                INSERT INTO quarantined_fills (message_id, symbol, trade_id, exchange_order_id, client_order_id, side,
                    price, quantity, payload, fee_rate, fee_rate_source, subject, stream, stream_seq, reason,
                    quarantined_at)
                VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, 'unknown_order', $15)
                ON CONFLICT DO NOTHING RETURNING id
                """,
                event.id, event.symbol, event.trade_id, event.exchange_order_id, event.client_order_id, event.side,
                event.price, event.quantity, msgspec.json.encode(event).decode(),
                item.fee_rate[0] if item.fee_rate else None, item.fee_rate[1] if item.fee_rate else None,
                item.origin.subject, item.origin.stream, item.origin.sequence, now,
            )  # fmt: skip
            if qid is None:
                results[index] = FillResult("duplicate_trade")
                continue
            await conn.execute(
                "INSERT INTO ledger_alerts (ts, kind, symbol, message_id, detail)"
                " VALUES ($1, 'quarantine', $2, $3, $4)",
                now,
                event.symbol,
                event.id,
                json.dumps({"quarantine_id": qid, "client_order_id": event.client_order_id,
                            "trade_id": event.trade_id, "quantity": str(event.quantity), "price": str(event.price)}),
            )  # fmt: skip
            results[index] = FillResult("quarantined", unknown_order=True)
        return results

    async def _take_quarantined(
        self, conn: asyncpg.Connection, where: str, args: Sequence[object], resolution: str, by: str, now: datetime
    ) -> list[Incoming]:
        rows = await conn.fetch(
            f"UPDATE quarantined_fills SET resolved_at = $1, resolution = $2, resolved_by = $3"  # noqa: S608
            f" WHERE resolved_at IS NULL AND {where} RETURNING *",
            now,
            resolution,
            by,
            *args,
        )
        if rows:
            await conn.execute(
                "UPDATE ledger_alerts SET resolved_at = $1"
                " WHERE kind = 'quarantine' AND resolved_at IS NULL AND message_id = ANY($2::text[])",
                now,
                [r["message_id"] for r in rows],
            )
        return [
            Incoming(
                msgspec.json.decode(r["payload"], type=OrderFilled),
                Origin(r["subject"], r["stream"], r["stream_seq"]),
                None if r["fee_rate"] is None else (r["fee_rate"], r["fee_rate_source"] or ""),
            )
            for r in sorted(rows, key=lambda r: r["id"])
        ]

    async def _release_for_order(self, conn: asyncpg.Connection, event: OrderEvent, now: datetime) -> list[Incoming]:
        if not isinstance(event, OrderAccepted):
            return []
        return await self._take_quarantined(
            conn, "client_order_id = $4", [event.client_order_id], "order_accepted", event.id, now
        )

    async def quarantined(self, *, open_only: bool = True) -> list[dict[str, Any]]:
        """Quarantined fills (oldest first) as plain rows, for operators and reports."""
        async with self._tx(readonly=True) as conn:
            rows = await conn.fetch(
                "SELECT id, message_id, symbol, trade_id, exchange_order_id, client_order_id, side, price, quantity,"
                " reason, quarantined_at, resolved_at, resolution, resolved_by FROM quarantined_fills"
                " WHERE NOT $1 OR resolved_at IS NULL ORDER BY id",
                open_only,
            )
        return [dict(r) for r in rows]

    async def oldest_quarantined_ns(self) -> int | None:
        """When the oldest fill still in quarantine was put there (ns), or None when none is."""
        async with self._tx(readonly=True) as conn:
            oldest: datetime | None = await conn.fetchval(
                "SELECT min(quarantined_at) FROM quarantined_fills WHERE resolved_at IS NULL"
            )
        return None if oldest is None else int(oldest.timestamp() * 1_000_000) * 1000

    async def adopt_quarantined(self, quarantine_id: int, operator: str, now_ns: int) -> FillResult | None:
        """Book one quarantined fill as it is (an operator vouches for it); None if no such open row."""
        return await self._book_quarantined("id = $4", [quarantine_id], "adopted", operator, now_ns)

    async def release_reconciled(self, trades: Sequence[TradeView], now_ns: int) -> int:
        """Book the quarantined fills the exchange lists with the same side, price and quantity; returns how many."""
        released = 0
        async with self._tx(readonly=True) as conn:
            rows = await conn.fetch(
                "SELECT id, symbol, trade_id, exchange_order_id, side, price, quantity FROM quarantined_fills"
                " WHERE resolved_at IS NULL"
            )
        theirs = {t.key: t for t in trades}
        for r in rows:
            trade = theirs.get((r["symbol"], r["trade_id"], r["exchange_order_id"]))
            if trade is None or (trade.side, trade.price, trade.quantity) != (r["side"], r["price"], r["quantity"]):
                continue
            if await self._book_quarantined("id = $4", [r["id"]], "reconciled", "reconciliation", now_ns):
                released += 1
        return released

    async def _book_quarantined(
        self, where: str, args: Sequence[object], resolution: str, by: str, now_ns: int
    ) -> FillResult | None:
        now = _ts(now_ns)
        async with self._tx() as conn:
            taken = await self._take_quarantined(conn, where, args, resolution, by, now)
            if not taken:
                return None
            results = await self._apply_fills(conn, list(enumerate(taken)), now, adopt=True)
        return results[0]

    async def _refresh_orders(self, conn: asyncpg.Connection, client_order_ids: list[str], now: datetime) -> None:
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
            FROM (SELECT client_order_id, sum(quantity) AS q FROM fills
                  WHERE client_order_id = ANY($1::text[]) GROUP BY client_order_id) f
            WHERE o.client_order_id = f.client_order_id
            """,
            client_order_ids,
            now,
        )

    async def _move_position(
        self, conn: asyncpg.Connection, symbol: str, new: list[tuple[int, str, Fill]], now: datetime
    ) -> dict[int, FillResult]:
        """Fold a symbol's new fills into its position: incrementally when they all follow, else rebuild."""
        await conn.execute(
            "INSERT INTO positions (symbol, updated) VALUES ($1, $2) ON CONFLICT (symbol) DO NOTHING", symbol, now
        )
        row = await conn.fetchrow("SELECT * FROM positions WHERE symbol = $1 FOR UPDATE", symbol)
        assert row is not None
        position = _position(row)
        halted = row["halted_reason"]
        ordered = sorted(new, key=lambda entry: entry[2].sort_key)
        if halted is None and position.follows(ordered[0][2]):
            return await self._fold(conn, position, ordered, now)
        # Out of order, or halted: rebuild the symbol from its whole set of fills.
        rows = await conn.fetch("SELECT * FROM fills WHERE symbol = $1", symbol)
        try:
            rebuilt = replay((_fill(r) for r in rows), await self._opening(conn, symbol))
        except Oversell as exc:
            if halted is None:
                await self._halt(conn, exc, ordered[-1][1], now)
            else:
                await conn.execute(
                    "UPDATE positions SET fills = $2, updated = $3 WHERE symbol = $1", symbol, len(rows), now
                )
            return {index: FillResult("halted", oversell=exc, rebuilt=True) for index, _, _ in ordered}
        await self._write_position(conn, rebuilt.positions[symbol], now)
        await conn.execute("DELETE FROM daily_pnl WHERE symbol = $1", symbol)
        await self._add_daily(conn, rebuilt.outcomes)
        if halted is not None:
            await conn.execute(
                "UPDATE ledger_alerts SET resolved_at = $2"
                " WHERE symbol = $1 AND kind = 'oversell' AND resolved_at IS NULL",
                symbol,
                now,
            )
        return {index: FillResult("applied", resumed=halted is not None, rebuilt=True) for index, _, _ in ordered}

    async def _fold(
        self, conn: asyncpg.Connection, position: PositionState, ordered: list[tuple[int, str, Fill]], now: datetime
    ) -> dict[int, FillResult]:
        results: dict[int, FillResult] = {}
        outcomes: list[FillOutcome] = []
        for k, (index, message_id, fill) in enumerate(ordered):
            try:
                outcome = apply_fill(position, fill)
            except Oversell as exc:
                # The fills before it stand; this one and every later one wait for the set to be consistent.
                if outcomes:
                    await self._write_position(conn, position, now)
                    await self._add_daily(conn, outcomes)
                await self._halt(conn, exc, message_id, now, count=len(ordered) - k)
                for later, _, _ in ordered[k:]:
                    results[later] = FillResult("halted", oversell=exc)
                return results
            position = outcome.position
            outcomes.append(outcome)
            results[index] = FillResult("applied")
        await self._write_position(conn, position, now)
        await self._add_daily(conn, outcomes)
        return results

    async def _halt(
        self, conn: asyncpg.Connection, exc: Oversell, message_id: str, now: datetime, count: int = 1
    ) -> None:
        await conn.execute(
            "UPDATE positions SET halted_reason = $2, fills = fills + $4, updated = $3 WHERE symbol = $1",
            exc.symbol,
            f"oversell: {exc}",
            now,
            count,
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
        last_ts, last_trade, last_side, last_order = None, None, None, None
        if position.last_key is not None:
            key = position.last_key
            last_ts, last_trade, last_side, last_order = key[0], key[2], "buy" if key[3] == 0 else "sell", key[5]
        await conn.execute(
            """
            UPDATE positions SET quantity = $2, cost = $3, avg_cost = $4, realized_pnl = $5, fees = $6,
                                 fills = $7, last_ts_ns = $8, last_trade_id = $9, halted_reason = NULL,
                                 updated = $10, last_side = $11, last_exchange_order_id = $12,
                                 opening_quantity = $13
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
            last_side,
            last_order,
            position.opening,
        )

    async def _opening(self, conn: asyncpg.Connection, symbol: str) -> dict[str, Decimal]:
        quantity = await conn.fetchval("SELECT quantity FROM opening_positions WHERE symbol = $1", symbol)
        return {symbol: quantity} if quantity else {}

    async def _rebuild(self, conn: asyncpg.Connection, symbol: str, now: datetime) -> Oversell | None:
        """Rebuild a symbol's position and daily PnL from its fills and opening holding; resolves a halt (and its
        alerts) when the set replays, else returns the oversell and leaves the position as it is."""
        await conn.execute(
            "INSERT INTO positions (symbol, updated) VALUES ($1, $2) ON CONFLICT (symbol) DO NOTHING", symbol, now
        )
        await conn.fetchrow("SELECT symbol FROM positions WHERE symbol = $1 FOR UPDATE", symbol)
        rows = await conn.fetch("SELECT * FROM fills WHERE symbol = $1", symbol)
        try:
            opening = await self._opening(conn, symbol)
            rebuilt = replay((_fill(r) for r in rows), opening)
        except Oversell as exc:
            return exc
        position = rebuilt.positions.get(symbol, opening_position(symbol, opening.get(symbol, ZERO)))
        await self._write_position(conn, position, now)
        await conn.execute("DELETE FROM daily_pnl WHERE symbol = $1", symbol)
        await self._add_daily(conn, rebuilt.outcomes)
        await conn.execute(
            "UPDATE ledger_alerts SET resolved_at = $2 WHERE symbol = $1 AND kind = 'oversell' AND resolved_at IS NULL",
            symbol,
            now,
        )
        return None

    async def record_opening(
        self, symbols_by_base: Mapping[str, str], balances: Mapping[str, Decimal], source: str, now_ns: int
    ) -> dict[str, Decimal]:
        """Record the opening holding of each symbol not recorded yet: the balance of its base asset beyond what
        the bot's fills already hold. Returns what was recorded (symbol -> quantity); rebuilds those symbols.

        `symbols_by_base` maps a base asset to the ONE symbol its opening holding belongs to.
        """
        now = _ts(now_ns)
        recorded: dict[str, Decimal] = {}
        async with self._tx() as conn:
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _SEED_LOCK_KEY)
            for base, symbol in sorted(symbols_by_base.items()):
                if await conn.fetchval("SELECT EXISTS (SELECT 1 FROM opening_positions WHERE symbol = $1)", symbol):
                    continue
                rows = await conn.fetch("SELECT * FROM fills WHERE symbol = $1", symbol)
                # Net of the bot's own fills, as far as they replay (a shortfall is what the account held).
                bought = sum((r["quantity"] if r["side"] == "buy" else -r["quantity"] for r in rows), ZERO)
                shortfall = opening_shortfall([_fill(r) for r in rows], symbol)
                quantity = max(ZERO, balances.get(base, ZERO) - bought, shortfall)
                await conn.execute(
                    "INSERT INTO opening_positions (symbol, quantity, source, recorded_at) VALUES ($1, $2, $3, $4)",
                    symbol,
                    quantity,
                    source,
                    now,
                )
                recorded[symbol] = quantity
                if quantity or rows:
                    await self._rebuild(conn, symbol, now)
        return recorded

    async def resume_symbol(self, symbol: str, exchange_base: Decimal, source: str, now_ns: int) -> str | None:
        """Clear a symbol's integrity halt now that the exchange confirmed the balances: the shortfall of its fills
        becomes opening holdings (what the account held that the ledger did not know), if the resulting position
        fits in the exchange's balance of the base asset. Returns None when resumed, else why not."""
        now = _ts(now_ns)
        async with self._tx() as conn:
            row = await conn.fetchrow("SELECT * FROM positions WHERE symbol = $1 FOR UPDATE", symbol)
            if row is None or row["halted_reason"] is None:
                return "not halted"
            rows = [_fill(r) for r in await conn.fetch("SELECT * FROM fills WHERE symbol = $1", symbol)]
            opening = (await self._opening(conn, symbol)).get(symbol, ZERO)
            extra = opening_shortfall(rows, symbol, opening)
            held = replay(rows, {symbol: opening + extra}).positions[symbol].quantity
            if held > exchange_base:
                return f"the position would hold {held} but the exchange holds {exchange_base}"
            await conn.execute(
                "INSERT INTO opening_positions (symbol, quantity, source, recorded_at) VALUES ($1, $2, $3, $4)"
                " ON CONFLICT (symbol) DO UPDATE SET quantity = EXCLUDED.quantity, source = EXCLUDED.source,"
                " recorded_at = EXCLUDED.recorded_at",
                symbol,
                opening + extra,
                source,
                now,
            )
            failed = await self._rebuild(conn, symbol, now)
            if failed is not None:  # cannot happen: the shortfall was added
                raise failed
            return None

    async def record_alert(self, kind: str, symbol: str | None, detail: Mapping[str, Any], now_ns: int) -> None:
        """Write an alert row (resolved rows are history; open ones are shown by `btcbot report`/`verify`)."""
        async with self._tx() as conn:
            await conn.execute(
                "INSERT INTO ledger_alerts (ts, kind, symbol, detail) VALUES ($1, $2, $3, $4)",
                _ts(now_ns),
                kind,
                symbol,
                json.dumps(dict(detail)),
            )

    async def _add_daily(self, conn: asyncpg.Connection, outcomes: Sequence[FillOutcome]) -> None:
        totals = daily_pnl(outcomes, self.day_offset_minutes)
        await conn.executemany(
            "INSERT INTO daily_pnl (day, symbol, realized, fees) VALUES ($1, $2, $3, $4)"
            " ON CONFLICT (day, symbol) DO UPDATE SET realized = daily_pnl.realized + EXCLUDED.realized,"
            " fees = daily_pnl.fees + EXCLUDED.fees",
            [(day, symbol, realized, fees) for (day, symbol), (realized, fees) in sorted(totals.items())],
        )

    async def configure_day_offset(self, offset_minutes: int, now_ns: int) -> bool:
        """Use days starting at midnight UTC+offset; rebuilds daily_pnl when the stored offset differs.

        Returns True when daily PnL was rebuilt. A symbol whose fills do not replay (an open oversell) keeps
        its rows until the position resumes, when it is rebuilt anyway.
        """
        self.day_offset_minutes = offset_minutes
        async with self._tx() as conn:
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _CONFIG_LOCK_KEY)
            stored = await conn.fetchval("SELECT value FROM ledger_config WHERE key = 'day_offset_minutes'")
            if stored is not None and int(stored) == offset_minutes:
                return False
            await conn.execute(
                "INSERT INTO ledger_config (key, value, updated) VALUES ('day_offset_minutes', $1, $2)"
                " ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, updated = EXCLUDED.updated",
                str(offset_minutes),
                _ts(now_ns),
            )
            if stored is None and not await conn.fetchval("SELECT EXISTS (SELECT 1 FROM daily_pnl)"):
                return False
            symbols = [r["symbol"] for r in await conn.fetch("SELECT symbol FROM positions ORDER BY symbol FOR UPDATE")]
            for symbol in symbols:
                rows = await conn.fetch("SELECT * FROM fills WHERE symbol = $1", symbol)
                try:
                    rebuilt = replay((_fill(r) for r in rows), await self._opening(conn, symbol))
                except Oversell:
                    continue
                await conn.execute("DELETE FROM daily_pnl WHERE symbol = $1", symbol)
                await self._add_daily(conn, rebuilt.outcomes)
            return True

    async def state(self, *, exec_floor: int = 0, day_start_ns: int = 0, scan_limit: int = 2000) -> LedgerState:
        """Positions, balances, halts, the last recorded peaks and the EXECUTION watermark, read in one snapshot.

        `exec_floor` is a sequence every message up to which is known done (the durable's ack floor, read BEFORE
        this call); the watermark extends it through the applied sequences above (at most `scan_limit` of them
        are looked at: beyond, the watermark is merely conservative). `day_start_ns` starts today's PnL.
        """
        async with self._tx(isolation="repeatable_read", readonly=True) as conn:
            seqs = await conn.fetch(
                "SELECT stream_seq FROM applied_messages WHERE stream = $1 AND stream_seq > $2"
                " ORDER BY stream_seq LIMIT $3",
                EXECUTION.name,
                exec_floor,
                scan_limit,
            )
            exec_seq, above = watermark(exec_floor, (r["stream_seq"] for r in seqs))
            if len(seqs) == scan_limit:
                # More applied above the floor than looked at: flag the highest, so no reader takes this state
                # for a prefix of the stream (the list is then incomplete; see PortfolioSnapshot.exec_seqs_above).
                top = await conn.fetchval(
                    "SELECT max(stream_seq) FROM applied_messages WHERE stream = $1", EXECUTION.name
                )
                if top is not None and top > exec_seq and top not in above:
                    above = (*above, top)
            bot_peak = await conn.fetchval(
                "SELECT bot_peak FROM equity_snapshots WHERE bot_peak IS NOT NULL ORDER BY id DESC LIMIT 1"
            )
            day_start_pnl = await conn.fetchval(
                "SELECT bot_pnl FROM equity_snapshots WHERE bot_pnl IS NOT NULL AND ts < $1 ORDER BY id DESC LIMIT 1",
                _ts(day_start_ns),
            )
            day_fees = await conn.fetchval(
                "SELECT coalesce(sum(fees), 0) FROM daily_pnl WHERE day = $1",
                day_of(max(day_start_ns, 0), self.day_offset_minutes),
            )
            positions = await conn.fetch("SELECT * FROM positions ORDER BY symbol")
            balances = await conn.fetch("SELECT asset, total FROM balances ORDER BY asset")
            last = await conn.fetchrow("SELECT peak, drawdown FROM equity_snapshots ORDER BY id DESC LIMIT 1")
            last_message = await conn.fetchval(
                "SELECT message_id FROM applied_messages ORDER BY applied_at DESC, message_id DESC LIMIT 1"
            )
            last_fill = await conn.fetchval(
                "SELECT message_id FROM fills ORDER BY recorded_at DESC, message_id DESC LIMIT 1"
            )
            quarantined = await conn.fetchval("SELECT count(*) FROM quarantined_fills WHERE resolved_at IS NULL")
        return LedgerState(
            positions={r["symbol"]: _position(r) for r in positions},
            balances={r["asset"]: r["total"] for r in balances},
            halted={r["symbol"]: r["halted_reason"] for r in positions if r["halted_reason"] is not None},
            peak=last["peak"] if last else None,
            last_drawdown=last["drawdown"] if last else ZERO,
            fills=sum(r["fills"] for r in positions),
            last_message_id=last_message or "",
            last_fill_id=last_fill or "",
            quarantined=quarantined,
            exec_seq=exec_seq,
            exec_seqs_above=above,
            bot_peak=bot_peak,
            day_start_bot_pnl=day_start_pnl,
            day_fees=day_fees,
        )

    async def record_equity(
        self,
        equity: Decimal,
        cause: str,
        now_ns: int,
        *,
        marks: Mapping[str, Decimal] | None = None,
        bot_pnl: Decimal | None = None,
        bot_peak: Decimal | None = None,
    ) -> tuple[Decimal, Decimal]:
        """Append an equity point (with the marks it was valued at); returns (peak, drawdown) including it."""
        async with self._tx() as conn:
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _EQUITY_LOCK_KEY)
            previous = await conn.fetchval("SELECT peak FROM equity_snapshots ORDER BY id DESC LIMIT 1")
            peak = equity if previous is None else max(previous, equity)
            down = drawdown(peak, equity)
            await conn.execute(
                "INSERT INTO equity_snapshots (ts, equity, peak, drawdown, cause, marks, bot_pnl, bot_peak)"
                " VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                _ts(now_ns),
                equity,
                peak,
                down,
                cause,
                None if marks is None else json.dumps({s: str(m) for s, m in sorted(marks.items())}),
                bot_pnl,
                bot_peak,
            )
        return peak, down

    async def reconciliation_view(self, since_ns: int) -> tuple[dict[str, Decimal], list[TradeView]]:
        """Balances and the fills since `since_ns` (exchange time), read in one snapshot."""
        async with self._tx(isolation="repeatable_read", readonly=True) as conn:
            balances = await conn.fetch("SELECT asset, total FROM balances")
            fills = await conn.fetch(
                "SELECT symbol, trade_id, exchange_order_id, side, price, quantity, fee, tax, ts_ns FROM fills"
                " WHERE ts_ns >= $1",
                since_ns,
            )
        return (
            {r["asset"]: r["total"] for r in balances},
            [
                TradeView(
                    symbol=r["symbol"],
                    trade_id=r["trade_id"],
                    side=r["side"],
                    price=r["price"],
                    quantity=r["quantity"],
                    fee=abs(r["fee"]),
                    tax=abs(r["tax"]),
                    ts_ns=r["ts_ns"],
                    exchange_order_id=r["exchange_order_id"],
                )
                for r in fills
            ],
        )

    async def record_reconciliation(
        self,
        comparison: Comparison,
        status: str,
        confirmed: Sequence[Difference],
        now_ns: int,
        *,
        tolerance: Decimal = ZERO,
        final: bool = False,
    ) -> int:
        """Store one round and its confirmed mismatches; returns the round's id."""
        now = _ts(now_ns)
        detail = {
            "seen": [_difference_json(d) for d in comparison.differences],
            "in_flight": [f"{s}:{t}:{o}" for s, t, o in comparison.in_flight],
            "balances": [
                {"asset": b.asset, "ledger": str(b.ledger), "exchange": str(b.exchange), "match": b.matches(tolerance)}
                for b in comparison.balances
            ],
            "final": final,
            "trades_checked": comparison.trades_checked,
        }
        async with self._tx() as conn:
            run_id: int = await conn.fetchval(
                "INSERT INTO reconciliation_runs (ts, status, assets, trades, detail) VALUES ($1, $2, $3, $4, $5)"
                " RETURNING id",
                now,
                status,
                comparison.assets,
                comparison.trades,
                json.dumps(detail),
            )
            await conn.executemany(
                "INSERT INTO reconciliation_mismatches (run_id, ts, kind, asset, symbol, trade_id, ledger, exchange,"
                " detail, exchange_order_id) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
                [
                    (
                        run_id,
                        now,
                        d.kind,
                        d.asset,
                        d.symbol,
                        d.trade_id,
                        d.ledger,
                        d.exchange,
                        json.dumps(dict(d.detail)),
                        d.exchange_order_id,
                    )
                    for d in confirmed
                ],
            )
        return run_id


def _difference_json(d: Difference) -> dict[str, Any]:
    return {
        "kind": d.kind,
        "asset": d.asset,
        "symbol": d.symbol,
        "trade_id": d.trade_id,
        "exchange_order_id": d.exchange_order_id,
        "ledger": None if d.ledger is None else str(d.ledger),
        "exchange": None if d.exchange is None else str(d.exchange),
        "detail": dict(d.detail),
    }
