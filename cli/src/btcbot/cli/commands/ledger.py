"""`btcbot ledger`: operator commands of the ledger."""

from __future__ import annotations

import argparse
import asyncio
import os
from pathlib import Path

HELP = "operator commands of the ledger (DATABASE_URL)"


def add_arguments(ledger: argparse.ArgumentParser) -> None:
    """`btcbot ledger quarantine [--adopt ID] [--all]`."""
    ledger_sub = ledger.add_subparsers(dest="ledger_command", required=True)
    quarantine = ledger_sub.add_parser("quarantine", help="fills held for orders the ledger does not know")
    quarantine.add_argument("--adopt", type=int, metavar="ID", help="book this held fill as it is")
    quarantine.add_argument("--all", action="store_true", help="also list the fills already released")
    quarantine.add_argument("--operator", help="who adopts (default: login name)")
    quarantine.add_argument("--run-file", type=Path, help="run.json of a run (default: BTCBOT_RUN_FILE, else current)")


def run(args: argparse.Namespace) -> int:
    """List or adopt quarantined fills."""
    from btcbot.cli.control import operator_name
    from btcbot.cli.quarantine import run_quarantine
    from btcbot.cli.runs import prepare

    prepare("ledger", args.run_file, nats=False)
    return asyncio.run(run_quarantine(os.environ, args.adopt, operator_name(args.operator), args.all))
