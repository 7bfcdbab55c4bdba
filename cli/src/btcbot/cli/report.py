"""`btcbot report`: the bot's trading, for a trader: its realized and unrealized PnL, fees, trades and positions,
kept apart from the holdings the account started with (shown, with their market value, but never as PnL); the
account's equity and drawdown, daily PnL; optionally the exchange's balances next to the ledger's, per asset.

Reads DATABASE_URL (or the run file of `btcbot up`) through the ledger's read module (`btcbot.ledger.queries`).
Unrealized PnL uses the marks recorded with the latest valuation, so the report shows what the ledger last
published. Amounts are exact Decimals, shown at their asset's scale (`btcbot.ledger.botpnl.at_scale`); JSON and
CSV carry them as strings.
"""

from __future__ import annotations

import csv
import io
import json
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from btcbot.cli.errors import UserError
from btcbot.devstack.endpoints import redact_url
from btcbot.ledger.botpnl import at_scale, count_trades, position_pnl, totals
from btcbot.ledger.queries import Reconciliation, read_ledger

DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/btcbot"
ZERO = Decimal(0)
_FRACTION = Decimal("0.000001")  # drawdowns are fractions of the peak: 0.0001 % is enough


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
    # The bot's PnL over time (valuation time, bot PnL), oldest first; the plot marks `trades` on it.
    curve: list[tuple[Any, Decimal]] = field(default_factory=list)
    trades: list[dict[str, Any]] = field(default_factory=list)
    opening_positions: dict[str, Decimal] = field(default_factory=dict)
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
    """Read the ledger (through its read module) in one consistent snapshot, and work out the bot's PnL."""
    view = await read_ledger(database_url)
    marks = view.valuation.marks if view.valuation is not None else {}
    pnl = position_pnl(view.holdings, marks)
    bot = totals(pnl)
    q = quote_asset
    rows: list[dict[str, Any]] = []
    opening_value = ZERO
    for row in pnl:
        h = row.holding
        avg = h.avg_cost
        if row.mark is not None:
            opening_value += row.mark * h.opening_quantity
        rows.append(
            {
                "symbol": h.symbol,
                "quantity": at_scale(h.own_quantity, h.base_asset),
                "opening_quantity": at_scale(h.opening_quantity, h.base_asset),
                "avg_cost": None if avg is None else at_scale(avg, q),
                "mark": None if row.mark is None else at_scale(row.mark, q),
                "realized_pnl": at_scale(h.realized_pnl, q),
                "unrealized_pnl": at_scale(row.unrealized, q),
                "fees": at_scale(h.fees, q),
                "fills": h.fills,
                "halted": h.halted_reason,
            }
        )
    counts = count_trades(t.side for t in view.trades)
    v = view.valuation
    realized, unrealized_ = at_scale(bot.realized, q), at_scale(bot.unrealized, q)
    totals_: dict[str, Any] = {
        "realized_pnl": realized,
        "unrealized_pnl": unrealized_,
        # The sum of the parts as shown, so the printed figures add up (rounding each part and the exact total
        # separately can differ by a unit of the last decimal).
        "bot_pnl": realized + unrealized_,
        "fees": at_scale(bot.fees, q),
        "fills": view.fills,
        "buys": counts.buys,
        "sells": counts.sells,
        "fills_for_unknown_orders": view.fills_for_unknown_orders,
        "opening_holdings_value": at_scale(opening_value, q),
        "equity": None if v is None else at_scale(v.equity, q),
        "peak_equity": None if v is None else at_scale(v.peak, q),
        "drawdown": None if v is None else v.drawdown.quantize(_FRACTION),
        "max_drawdown": None if v is None else v.max_drawdown.quantize(_FRACTION),
        "bot_peak_pnl": None if v is None or v.bot_peak is None else at_scale(v.bot_peak, q),
        "valued_at": None if v is None else v.ts.isoformat(),
    }
    trades = [
        {
            "ts": t.ts,
            "symbol": t.symbol,
            "side": t.side,
            "price": t.price,  # as the exchange reported it, at the pair's own price scale
            "quantity": at_scale(t.quantity, t.base_asset),
            "fee": at_scale(t.fee_quote, t.quote_asset),
            "strategy": t.strategy,
            "trade_id": t.trade_id,
        }
        for t in view.trades
    ]
    recon = view.reconciliation
    return Report(
        database=redact_url(database_url),
        quote_asset=quote_asset,
        positions=rows,
        balances=view.balances,
        totals=totals_,
        daily=view.daily,
        alerts=view.alerts,
        reconciliation=None if recon is None else _reconciliation(recon),
        curve=[(p.ts, p.bot_pnl) for p in view.pnl_series if p.bot_pnl is not None],
        trades=trades,
        opening_positions=view.opening_positions,
    )


def _reconciliation(recon: Reconciliation) -> dict[str, Any]:
    return {"id": recon.id, "ts": recon.ts, "status": recon.status, "final": recon.final, "balances": recon.balances}


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


def _balances(report: Report) -> dict[str, Decimal]:
    return {asset: at_scale(total, asset) for asset, total in report.balances.items()}


def _exchange_lines(report: Report) -> list[dict[str, Any]]:
    scaled = ("ledger", "exchange", "difference")
    return [
        {k: at_scale(v, line["asset"]) if k in scaled else v for k, v in line.items()} for line in report.exchange or []
    ]


def to_json(report: Report) -> str:
    """The report as one JSON object (amounts as strings, at their asset's scale)."""
    data: dict[str, Any] = {
        "database": report.database,
        "quote_asset": report.quote_asset,
        "totals": report.totals,
        "positions": report.positions,
        "opening_positions": report.opening_positions,
        "trades": report.trades,
        "balances": _balances(report),
        "daily_pnl": report.daily,
        "open_alerts": report.alerts,
        "last_reconciliation": report.reconciliation,
    }
    if report.exchange is not None or report.exchange_error is not None:
        data["exchange_balances"] = _exchange_lines(report) if report.exchange is not None else None
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
    for i, trade in enumerate(report.trades, 1):
        for name, value in trade.items():
            writer.writerow(["trade", str(i), name, _plain(value)])
    for asset, total in _balances(report).items():
        writer.writerow(["balance", asset, "total", _plain(total)])
    for row in report.daily:
        writer.writerow(["daily_pnl", f"{row['day']}:{row['symbol']}", "realized", _plain(row["realized"])])
        writer.writerow(["daily_pnl", f"{row['day']}:{row['symbol']}", "fees", _plain(row["fees"])])
    for line in _exchange_lines(report):
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
    return "n/a" if value is None else f"{value * 100:.2f}%"


def _amount(value: Any) -> str:
    return "n/a" if value is None else str(_plain(value))


# How many trades the text report lists (the newest); JSON and CSV carry all of them.
TEXT_TRADES = 20


def to_text(report: Report) -> str:
    """Terminal tables: the bot's PnL and trades first, then the account."""
    t = report.totals
    q = report.quote_asset
    parts = [
        f"ledger {report.database}  ({t['fills']} fills: {t['buys']} buys, {t['sells']} sells;"
        f" valued at {t['valued_at'] or 'never'})",
        "",
        f"bot PnL {_amount(t['bot_pnl'])} {q}: realized {_amount(t['realized_pnl'])}"
        f"  unrealized {_amount(t['unrealized_pnl'])}  (fees paid {_amount(t['fees'])}, included)",
        "",
    ]
    if report.positions:
        parts.append(
            _table(
                [
                    "symbol",
                    "bot qty",
                    "avg cost",
                    "mark",
                    "realized",
                    "unrealized",
                    "fees",
                    "fills",
                    "opening",
                    "state",
                ],
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
                        p["opening_quantity"],
                        "HALTED" if p["halted"] else "ok",
                    ]
                    for p in report.positions
                ],
            )
        )
    else:
        parts.append("no positions: the bot has not traded yet")
    if report.trades:
        shown = report.trades[-TEXT_TRADES:]
        title = f"trades ({len(report.trades)}" + (
            f", newest {len(shown)})" if len(shown) < len(report.trades) else ")"
        )
        parts += ["", title]
        parts.append(
            _table(
                ["time", "symbol", "side", "quantity", "price", "fee", "strategy"],
                [
                    [
                        x["ts"].strftime("%H:%M:%S") if hasattr(x["ts"], "strftime") else x["ts"],
                        x["symbol"],
                        x["side"].upper(),
                        x["quantity"],
                        x["price"],
                        x["fee"],
                        x["strategy"],
                    ]
                    for x in shown
                ],
            )
        )
    parts += [
        "",
        f"account (opening holdings included, worth {_amount(t['opening_holdings_value'])} {q} at the marks):"
        f" equity {_amount(t['equity'])}  peak {_amount(t['peak_equity'])}  drawdown {_pct(t['drawdown'])}"
        f"  max drawdown {_pct(t['max_drawdown'])}",
        "",
    ]
    balances = _balances(report)
    if report.exchange is not None:
        parts.append(
            _table(
                ["asset", "ledger", "exchange", "difference", "match"],
                [
                    [x["asset"], x["ledger"], x["exchange"], x["difference"], "yes" if x["match"] else "NO"]
                    for x in _exchange_lines(report)
                ],
            )
        )
        parts.append(
            f"balances match the exchange: {'yes' if report.balances_match else 'NO'} ({report.exchange_source})"
        )
        if report.exchange_error:
            parts.append(f"exchange unavailable now: {report.exchange_error}")
    elif balances:
        parts.append(_table(["asset", "ledger"], [[a, v] for a, v in balances.items()]))
        if report.exchange_error:
            parts.append(f"exchange unavailable: {report.exchange_error}")
    else:
        parts.append("no balances recorded")
    if report.alerts:
        parts += ["", f"OPEN ALERTS: {len(report.alerts)}"]
        parts += [f"  {a['kind']} {a['symbol']} {a['detail'].get('error', '')}" for a in report.alerts]
    if report.reconciliation:
        r = report.reconciliation
        parts += ["", f"last reconciliation: {r['status']} at {_plain(r['ts'])}"]
    return "\n".join(parts)


async def run_report(opts: ReportOptions, env: Mapping[str, str] | None = None) -> int:
    """Print the report; 0 when it printed (and the exchange matched, if asked), 1 on a balance mismatch."""
    env = os.environ if env is None else env
    database, exchange = resolve_sources(opts, env)
    report = await load_report(database, opts.quote_asset)
    if exchange is not None:
        await add_exchange(report, exchange)
    if opts.json:
        print(to_json(report))
    elif opts.csv:
        print(to_csv(report), end="")
    else:
        print(to_text(report))
    if opts.plot is not None:
        from btcbot.cli.reportplot import plot

        written = plot(report.curve, report.trades, report.quote_asset, opts.plot)
        # stderr: stdout stays the JSON or CSV a script parses.
        print(f"plot written to {written}", file=sys.stderr)
    return 1 if report.balances_match is False else 0
