"""The ledger's read module: what readers outside the ledger (`btcbot report`, `btcbot up`'s summary) may know of
its database, so none of them knows its tables.

Each function opens one connection and reads in one repeatable-read, read-only transaction, so every figure of a
view comes from the same state. Amounts stay exact Decimals; `botpnl.py` turns them into the bot's PnL.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

import asyncpg

from btcbot.ledger.botpnl import Holding


@dataclass(frozen=True)
class Trade:
    """One fill of the bot's, with its fee valued in the quote asset."""

    ts: datetime
    symbol: str
    side: str
    price: Decimal
    quantity: Decimal
    fee_quote: Decimal
    base_asset: str
    quote_asset: str
    strategy: str
    trade_id: str
    client_order_id: str


@dataclass(frozen=True)
class PnlPoint:
    """One valuation: the bot's PnL (None in rows older than migration 0004) and the account's equity."""

    ts: datetime
    bot_pnl: Decimal | None
    equity: Decimal
    drawdown: Decimal


@dataclass(frozen=True)
class Valuation:
    """The latest valuation and the worst drawdown seen."""

    ts: datetime
    equity: Decimal
    peak: Decimal
    drawdown: Decimal
    max_drawdown: Decimal
    marks: dict[str, Decimal]
    bot_pnl: Decimal | None
    bot_peak: Decimal | None


@dataclass(frozen=True)
class Reconciliation:
    """The ledger's last round against the exchange, per asset."""

    id: int
    ts: datetime
    status: str
    final: bool
    balances: list[dict[str, Any]]


@dataclass(frozen=True)
class LedgerView:
    """Everything a report shows, read in one snapshot."""

    holdings: list[Holding]
    opening_positions: dict[str, Decimal]
    balances: dict[str, Decimal]
    trades: list[Trade]
    pnl_series: list[PnlPoint]
    valuation: Valuation | None
    daily: list[dict[str, Any]]
    alerts: list[dict[str, Any]]
    reconciliation: Reconciliation | None
    fills: int
    fills_for_unknown_orders: int
    quote_assets: dict[str, str] = field(default_factory=dict)


async def _connect(database_url: str) -> asyncpg.Connection:
    return await asyncpg.connect(database_url, timeout=10)


async def read_ledger(database_url: str) -> LedgerView:
    """The whole view of the ledger at one instant."""
    conn = await _connect(database_url)
    try:
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            return await _read(conn)
    finally:
        await conn.close()


async def fill_count(database_url: str) -> int:
    """How many fills the ledger has booked."""
    conn = await _connect(database_url)
    try:
        return int(await conn.fetchval("SELECT count(*) FROM fills"))
    finally:
        await conn.close()


async def _read(conn: asyncpg.Connection) -> LedgerView:
    pairs = {
        r["symbol"]: (r["base_asset"], r["quote_asset"])
        for r in await conn.fetch("SELECT DISTINCT symbol, base_asset, quote_asset FROM fills")
    }
    holdings = [
        Holding(
            symbol=p["symbol"],
            base_asset=pairs.get(p["symbol"], (p["symbol"], ""))[0],
            quantity=p["quantity"],
            opening_quantity=p["opening_quantity"],
            cost=p["cost"],
            realized_pnl=p["realized_pnl"],
            fees=p["fees"],
            fills=p["fills"],
            halted_reason=p["halted_reason"],
        )
        for p in await conn.fetch("SELECT * FROM positions ORDER BY symbol")
    ]
    opening = {r["symbol"]: r["quantity"] for r in await conn.fetch("SELECT symbol, quantity FROM opening_positions")}
    balances = {r["asset"]: r["total"] for r in await conn.fetch("SELECT asset, total FROM balances ORDER BY asset")}
    trades = [
        Trade(
            ts=r["ts"],
            symbol=r["symbol"],
            side=r["side"],
            price=r["price"],
            quantity=r["quantity"],
            fee_quote=r["fee_quote"] if r["fee_quote"] is not None else Decimal(0),
            base_asset=r["base_asset"],
            quote_asset=r["quote_asset"],
            strategy=r["strategy"],
            trade_id=r["trade_id"],
            client_order_id=r["client_order_id"],
        )
        for r in await conn.fetch(
            "SELECT f.ts, f.symbol, f.side, f.price, f.quantity, v.value_in_quote AS fee_quote, f.base_asset,"
            " f.quote_asset, f.strategy, f.trade_id, f.client_order_id"
            " FROM fills f"
            " LEFT JOIN fees v ON v.message_id = f.message_id"
            " ORDER BY f.ts_ns, f.trade_id, f.side"
        )
    ]
    series = [
        PnlPoint(r["ts"], r["bot_pnl"], r["equity"], r["drawdown"])
        for r in await conn.fetch("SELECT ts, bot_pnl, equity, drawdown FROM equity_snapshots ORDER BY id")
    ]
    last = await conn.fetchrow("SELECT * FROM equity_snapshots ORDER BY id DESC LIMIT 1")
    valuation = None
    if last is not None:
        worst = await conn.fetchval("SELECT max(drawdown) FROM equity_snapshots")
        marks = {s: Decimal(v) for s, v in json.loads(last["marks"]).items()} if last["marks"] else {}
        valuation = Valuation(
            last["ts"], last["equity"], last["peak"], last["drawdown"], worst, marks, last["bot_pnl"], last["bot_peak"]
        )
    daily = [
        dict(r) for r in await conn.fetch("SELECT day, symbol, realized, fees FROM daily_pnl ORDER BY day, symbol")
    ]
    alerts = [
        {**dict(a), "detail": json.loads(a["detail"])}
        for a in await conn.fetch(
            "SELECT ts, kind, symbol, message_id, detail FROM ledger_alerts WHERE resolved_at IS NULL ORDER BY id"
        )
    ]
    recon = await conn.fetchrow("SELECT * FROM reconciliation_runs ORDER BY id DESC LIMIT 1")
    fills = await conn.fetchval("SELECT count(*) FROM fills")
    unknown = await conn.fetchval("SELECT count(*) FROM fills WHERE flagged_unknown_order")
    return LedgerView(
        holdings=holdings,
        opening_positions=opening,
        balances=balances,
        trades=trades,
        pnl_series=series,
        valuation=valuation,
        daily=daily,
        alerts=alerts,
        reconciliation=None if recon is None else _reconciliation(recon),
        fills=int(fills),
        fills_for_unknown_orders=int(unknown),
        quote_assets={s: q for s, (_, q) in pairs.items()},
    )


def _reconciliation(row: asyncpg.Record) -> Reconciliation:
    detail = json.loads(row["detail"])
    return Reconciliation(
        id=row["id"],
        ts=row["ts"],
        status=row["status"],
        final=bool(detail.get("final")),
        balances=[
            {
                "asset": b["asset"],
                "ledger": Decimal(b["ledger"]),
                "exchange": Decimal(b["exchange"]),
                "difference": Decimal(b["exchange"]) - Decimal(b["ledger"]),
                "match": bool(b["match"]),
            }
            for b in detail.get("balances", [])
        ],
    )
