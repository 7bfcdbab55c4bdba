"""`btcbot report`: positions, PnL, equity and drawdown from the ledger."""

from __future__ import annotations

import argparse
import asyncio
import os
from pathlib import Path

HELP = "positions, PnL, equity and drawdown from the ledger (DATABASE_URL)"


def add_arguments(report: argparse.ArgumentParser) -> None:
    """Options of `btcbot report`."""
    report.add_argument("--json", action="store_true", help="one JSON object")
    report.add_argument("--csv", action="store_true", help="long-form CSV: section,item,field,value")
    report.add_argument("--plot", type=Path, metavar="FILE.png", help="draw the equity curve and drawdown")
    report.add_argument("--exchange", action="store_true", help="compare balances with the exchange (BTCTURK_*)")
    report.add_argument("--run-file", type=Path, help="run.json of `btcbot up`: its database and simulator")


def run(args: argparse.Namespace) -> int:
    """Print the report."""
    from btcbot.cli.report import ReportOptions, run_report
    from btcbot.cli.revive import reading
    from btcbot.cli.runs import prepare

    found = prepare("report", args.run_file, nats=False)
    with reading("report", found) as run_file:
        quote = os.environ.get("LEDGER_QUOTE_ASSET", "TRY")
        ropts = ReportOptions(args.json, args.csv, args.plot, args.exchange, run_file, quote)
        return asyncio.run(run_report(ropts))
