"""`btcbot report`: what the ledger holds, for a trader: positions, PnL (realized, unrealized, fees), equity,
drawdown, daily PnL; optionally the exchange's balances next to the ledger's, per asset, with a match flag.

Reads DATABASE_URL (or the run file of `btcbot up`). Unrealized PnL uses the marks recorded with the latest
equity snapshot, so the report shows the same valuation the ledger last published. Amounts are Decimal
throughout; JSON and CSV carry them as strings.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg

from btcbot.cli.endpoints import redact_url
from btcbot.cli.errors import UserError

DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/btcbot"
ZERO = Decimal(0)


@dataclass(frozen=True)
class ReportOptions:
    """What `btcbot report` was asked for."""

    json: bool = False
    csv: bool = False
    plot: Path | None = None
    exchange: bool = False
    run_file: Path | None = None
    quote_asset: str = "TRY"


@dataclass(frozen=True)
class Exchange:
    """Where to read the exchange's balances."""

    base_url: str
    api_key: str
    api_secret: str


@dataclass
class Report:
    """Everything the report prints."""

    database: str
    quote_asset: str
    positions: list[dict[str, Any]]
    balances: dict[str, Decimal]
    totals: dict[str, Any]
    daily: list[dict[str, Any]]
    alerts: list[dict[str, Any]]
    reconciliation: dict[str, Any] | None
    curve: list[tuple[Any, Decimal, Decimal]] = field(default_factory=list)
    exchange: list[dict[str, Any]] | None = None
    exchange_error: str | None = None
    exchange_source: str = "live"

    @property
    def balances_match(self) -> bool | None:
        """True when every asset matches the exchange; None when the exchange was not asked."""
        if self.exchange is None:
            return None
        return all(line["match"] for line in self.exchange)


def resolve_sources(opts: ReportOptions, env: Mapping[str, str]) -> tuple[str, Exchange | None]:
    """The database URL and, when asked for (or implied by a run file or BTCTURK_* env), the exchange."""
    run: dict[str, Any] = {}
    if opts.run_file is not None:
        run = json.loads(opts.run_file.read_text())
    database = env.get("DATABASE_URL") or run.get("database_url") or DEFAULT_DATABASE_URL
    if opts.run_file is not None and run.get("database_url"):
        database = str(run["database_url"])  # the run file names the database of that run
    exchange: Exchange | None = None
    if run.get("sim_url") and run.get("api_key") and run.get("api_secret"):
        exchange = Exchange(str(run["sim_url"]), str(run["api_key"]), str(run["api_secret"]))
    elif env.get("BTCTURK_API_KEY") and env.get("BTCTURK_API_SECRET"):
        exchange = Exchange(
            env.get("BTCTURK_BASE_URL", "https://api.btcturk.com"), env["BTCTURK_API_KEY"], env["BTCTURK_API_SECRET"]
        )
    if opts.exchange and exchange is None:
        raise UserError("--exchange needs BTCTURK_API_KEY and BTCTURK_API_SECRET, or --run-file")
    return database, exchange


async def load_report(database_url: str, quote_asset: str) -> Report:
    """Read the ledger's tables in one consistent snapshot."""
    conn = await asyncpg.connect(database_url, timeout=10)
    try:
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            positions = await conn.fetch("SELECT * FROM positions ORDER BY symbol")
            balances = await conn.fetch("SELECT asset, total FROM balances ORDER BY asset")
            last = await conn.fetchrow("SELECT * FROM equity_snapshots ORDER BY id DESC LIMIT 1")
            worst = await conn.fetchval("SELECT max(drawdown) FROM equity_snapshots")
            curve = await conn.fetch("SELECT ts, equity, drawdown FROM equity_snapshots ORDER BY id")
            daily = await conn.fetch("SELECT day, symbol, realized, fees FROM daily_pnl ORDER BY day, symbol")
            alerts = await conn.fetch(
                "SELECT ts, kind, symbol, message_id, detail FROM ledger_alerts WHERE resolved_at IS NULL ORDER BY id"
            )
            recon = await conn.fetchrow("SELECT * FROM reconciliation_runs ORDER BY id DESC LIMIT 1")
            fills = await conn.fetchval("SELECT count(*) FROM fills")
            unknown = await conn.fetchval("SELECT count(*) FROM fills WHERE flagged_unknown_order")
    finally:
        await conn.close()
    marks: dict[str, Decimal] = {}
    if last is not None and last["marks"]:
        marks = {s: Decimal(v) for s, v in json.loads(last["marks"]).items()}
    rows: list[dict[str, Any]] = []
    for p in positions:
        mark = marks.get(p["symbol"])
        unrealized = mark * p["quantity"] - p["cost"] if mark is not None else ZERO
        rows.append(
            {
                "symbol": p["symbol"],
                "quantity": p["quantity"],
                "avg_cost": p["avg_cost"],
                "mark": mark,
                "realized_pnl": p["realized_pnl"],
                "unrealized_pnl": unrealized,
                "fees": p["fees"],
                "fills": p["fills"],
                "halted": p["halted_reason"],
            }
        )
    totals = {
        "realized_pnl": sum((r["realized_pnl"] for r in rows), ZERO),
        "unrealized_pnl": sum((r["unrealized_pnl"] for r in rows), ZERO),
        "fees": sum((r["fees"] for r in rows), ZERO),
        "equity": last["equity"] if last else None,
        "peak_equity": last["peak"] if last else None,
        "drawdown": last["drawdown"] if last else None,
        "max_drawdown": worst,
        "valued_at": last["ts"].isoformat() if last else None,
        "fills": fills,
        "fills_for_unknown_orders": unknown,
    }
    return Report(
        database=redact_url(database_url),
        quote_asset=quote_asset,
        positions=rows,
        balances={r["asset"]: r["total"] for r in balances},
        totals=totals,
        daily=[dict(r) for r in daily],
        alerts=[{**dict(a), "detail": json.loads(a["detail"])} for a in alerts],
        reconciliation=None if recon is None else _reconciliation(recon),
        curve=[(r["ts"], r["equity"], r["drawdown"]) for r in curve],
    )


def _reconciliation(row: Mapping[str, Any]) -> dict[str, Any]:
    detail = json.loads(row["detail"])
    return {
        "id": row["id"],
        "ts": row["ts"],
        "status": row["status"],
        "final": bool(detail.get("final")),
        "balances": [
            {
                "asset": b["asset"],
                "ledger": Decimal(b["ledger"]),
                "exchange": Decimal(b["exchange"]),
                "difference": Decimal(b["exchange"]) - Decimal(b["ledger"]),
                "match": bool(b["match"]),
            }
            for b in detail.get("balances", [])
        ],
    }


async def add_exchange(report: Report, exchange: Exchange) -> None:
    """Fetch the exchange's balances and put them next to the ledger's, per asset."""
    from btcbot.btcturk.errors import BtcTurkError
    from btcbot.ledger.exchange import ExchangeAccount
    from btcbot.ledger.reconcile import balance_lines

    account = ExchangeAccount.connect(exchange.base_url, exchange.api_key, exchange.api_secret)
    try:
        theirs = await account.balances()
        if theirs is None:
            raise BtcTurkError("balances endpoint rate limited; try again in a minute")
    except BtcTurkError as exc:
        report.exchange_error = f"{type(exc).__name__}: {exc}"
        recorded = report.reconciliation
        if recorded and recorded["balances"]:
            # The exchange is gone (a finished `btcbot up` stops its simulator): show the ledger's own last
            # comparison, made at its shutdown after it had booked every fill, and say so.
            report.exchange = recorded["balances"]
            report.exchange_source = f"ledger reconciliation #{recorded['id']} at {_plain(recorded['ts'])}"
        return
    finally:
        await account.close()
    report.exchange = [
        {
            "asset": line.asset,
            "ledger": line.ledger,
            "exchange": line.exchange,
            "difference": line.difference,
            "match": line.matches(),
        }
        for line in balance_lines(report.balances, theirs)
    ]


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return format(value, "f")
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def to_json(report: Report) -> str:
    """The report as one JSON object (amounts as strings)."""
    data: dict[str, Any] = {
        "database": report.database,
        "quote_asset": report.quote_asset,
        "totals": report.totals,
        "positions": report.positions,
        "balances": report.balances,
        "daily_pnl": report.daily,
        "open_alerts": report.alerts,
        "last_reconciliation": report.reconciliation,
    }
    if report.exchange is not None or report.exchange_error is not None:
        data["exchange_balances"] = report.exchange
        data["balances_match"] = report.balances_match
        data["exchange_error"] = report.exchange_error
        data["exchange_source"] = report.exchange_source
    return json.dumps(_plain(data), indent=2)


def to_csv(report: Report) -> str:
    """The report in long form: section, item, field, value (one table that any tool can pivot)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["section", "item", "field", "value"])
    for name, value in report.totals.items():
        writer.writerow(["totals", "", name, _plain(value)])
    for row in report.positions:
        for name, value in row.items():
            if name != "symbol":
                writer.writerow(["position", row["symbol"], name, _plain(value)])
    for asset, total in report.balances.items():
        writer.writerow(["balance", asset, "total", _plain(total)])
    for row in report.daily:
        writer.writerow(["daily_pnl", f"{row['day']}:{row['symbol']}", "realized", _plain(row["realized"])])
        writer.writerow(["daily_pnl", f"{row['day']}:{row['symbol']}", "fees", _plain(row["fees"])])
    for line in report.exchange or []:
        for name in ("ledger", "exchange", "difference", "match"):
            writer.writerow(["exchange_balance", line["asset"], name, _plain(line[name])])
    return out.getvalue()


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [[("" if v is None else str(_plain(v))) for v in row] for row in rows]
    widths = [max([len(h), *(len(r[i]) for r in cells)]) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join(lines)


def _pct(value: Decimal | None) -> str:
    return "" if value is None else f"{value * 100:.2f}%"


def to_text(report: Report) -> str:
    """Terminal tables."""
    t = report.totals
    parts = [f"ledger {report.database}  ({t['fills']} fills; valued at {t['valued_at'] or 'never'})", ""]
    parts.append(
        _table(
            ["symbol", "quantity", "avg cost", "mark", "realized", "unrealized", "fees", "fills", "state"],
            [
                [
                    p["symbol"],
                    p["quantity"],
                    p["avg_cost"],
                    p["mark"],
                    p["realized_pnl"],
                    p["unrealized_pnl"],
                    p["fees"],
                    p["fills"],
                    "HALTED" if p["halted"] else "ok",
                ]
                for p in report.positions
            ],
        )
    )
    parts += [
        "",
        f"realized {_plain(t['realized_pnl'])}  unrealized {_plain(t['unrealized_pnl'])}  fees {_plain(t['fees'])}"
        f"  ({report.quote_asset})",
        f"equity {_plain(t['equity'])}  peak {_plain(t['peak_equity'])}  drawdown {_pct(t['drawdown'])}"
        f"  max drawdown {_pct(t['max_drawdown'])}",
        "",
    ]
    if report.exchange is not None:
        parts.append(
            _table(
                ["asset", "ledger", "exchange", "difference", "match"],
                [
                    [x["asset"], x["ledger"], x["exchange"], x["difference"], "yes" if x["match"] else "NO"]
                    for x in report.exchange
                ],
            )
        )
        parts.append(
            f"balances match the exchange: {'yes' if report.balances_match else 'NO'} ({report.exchange_source})"
        )
        if report.exchange_error:
            parts.append(f"exchange unavailable now: {report.exchange_error}")
    else:
        parts.append(_table(["asset", "ledger"], [[a, v] for a, v in report.balances.items()]))
        if report.exchange_error:
            parts.append(f"exchange unavailable: {report.exchange_error}")
    if report.alerts:
        parts += ["", f"OPEN ALERTS: {len(report.alerts)}"]
        parts += [f"  {a['kind']} {a['symbol']} {a['detail'].get('error', '')}" for a in report.alerts]
    if report.reconciliation:
        r = report.reconciliation
        parts += ["", f"last reconciliation: {r['status']} at {_plain(r['ts'])}"]
    return "\n".join(parts)


def plot(report: Report, path: Path) -> None:
    """Equity curve above, drawdown below, into a PNG (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    times = [ts for ts, _, _ in report.curve]
    equity = [float(e) for _, e, _ in report.curve]  # plotting only: the figures themselves stay Decimal
    down = [-float(d) * 100 for _, _, d in report.curve]
    fig, (top, bottom) = plt.subplots(2, 1, sharex=True, figsize=(10, 6), height_ratios=(3, 1))
    top.plot(times, equity, color="tab:blue", linewidth=1.2)
    top.set_ylabel(f"equity ({report.quote_asset})")
    top.set_title("Equity and drawdown")
    top.grid(alpha=0.3)
    bottom.fill_between(times, down, 0, color="tab:red", alpha=0.4, step="post")
    bottom.set_ylabel("drawdown %")
    bottom.grid(alpha=0.3)
    fig.autofmt_xdate()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


async def run_report(opts: ReportOptions, env: Mapping[str, str] | None = None) -> int:
    """Print the report; 0 when it printed (and the exchange matched, if asked), 1 on a balance mismatch."""
    env = os.environ if env is None else env
    database, exchange = resolve_sources(opts, env)
    report = await load_report(database, opts.quote_asset)
    if exchange is not None:
        await add_exchange(report, exchange)
    if opts.plot is not None:
        plot(report, opts.plot)
    if opts.json:
        print(to_json(report))
    elif opts.csv:
        print(to_csv(report), end="")
    else:
        print(to_text(report))
    return 1 if report.balances_match is False else 0
