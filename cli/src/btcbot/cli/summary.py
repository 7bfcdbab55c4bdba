"""What a run did, counted from the streams, the ledger and the trace file."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from btcbot.cli.report import Report

PIPELINE = ("marketdata", "strategy", "risk", "execution", "ledger")


@dataclass(frozen=True)
class TraceCheck:
    """Whether some filled order has one trace from its book to its ledger row."""

    complete: bool
    trace_id: str | None
    services_seen: tuple[str, ...]
    traces_with_fills: int


def check_traces(lines: Iterable[str]) -> TraceCheck:
    """Find a trace in which the ledger booked an OrderFilled and every pipeline service has a span."""
    services: dict[str, set[str]] = defaultdict(set)
    fill_traces: set[str] = set()
    for raw in lines:
        text = raw.strip()
        if not text:
            continue
        try:
            span = json.loads(text)
        except ValueError:
            continue
        trace_id = span.get("trace_id")
        service = span.get("service")
        if not trace_id or not service:
            continue
        services[trace_id].add(service)
        attrs = span.get("attributes") or {}
        if service == "ledger" and attrs.get("btcbot.message_type") == "OrderFilled":
            fill_traces.add(trace_id)
    best: tuple[str, ...] = ()
    for trace_id in sorted(fill_traces):
        seen = services[trace_id]
        if set(PIPELINE) <= seen:
            return TraceCheck(True, trace_id, tuple(s for s in PIPELINE if s in seen), len(fill_traces))
        if len(seen) > len(best):
            best = tuple(s for s in PIPELINE if s in seen)
    return TraceCheck(False, None, best, len(fill_traces))


def check_trace_file(path: Path) -> TraceCheck:
    """check_traces over a JSON-lines span file (missing file: not complete)."""
    if not path.exists():
        return TraceCheck(False, None, (), 0)
    with path.open(encoding="utf-8") as fh:
        return check_traces(fh)


def _text(value: Decimal) -> str:
    return format(value, "f")  # 0E-8 -> 0.00000000


def trading_summary(report: Report) -> dict[str, Any]:
    """The bot's trading for `up`'s summary: PnL (opening holdings excluded), fees, trades, positions held."""
    t = report.totals
    return {
        "quote_asset": report.quote_asset,
        "realized_pnl": _text(t["realized_pnl"]),
        "unrealized_pnl": _text(t["unrealized_pnl"]),
        "bot_pnl": _text(t["bot_pnl"]),
        "fees": _text(t["fees"]),
        # `trades` (already in the summary) counts the market's public trades; these are the bot's own fills.
        "bot_trades": {"count": t["fills"], "buys": t["buys"], "sells": t["sells"]},
        "positions": [
            {
                "symbol": p["symbol"],
                "quantity": _text(p["quantity"]),
                "avg_cost": None if p["avg_cost"] is None else _text(p["avg_cost"]),
                "realized_pnl": _text(p["realized_pnl"]),
                "unrealized_pnl": _text(p["unrealized_pnl"]),
            }
            for p in report.positions
            if p["quantity"] > 0 or p["realized_pnl"] != 0
        ],
    }
