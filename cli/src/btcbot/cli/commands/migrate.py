"""`btcbot migrate`: the ledger's database migrations."""

from __future__ import annotations

import argparse
import asyncio
import os
from pathlib import Path

HELP = "apply the ledger's database migrations (DATABASE_URL)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """No options."""
    parser.add_argument(
        "--run-file", type=Path, help="a run's run.json (default: BTCBOT_RUN_FILE, else the current run)"
    )


def run(args: argparse.Namespace) -> int:
    """Apply what is missing."""
    from btcbot.cli.doctor import run_migrate
    from btcbot.cli.runs import prepare

    prepare("migrate", args.run_file, nats=False)
    return asyncio.run(run_migrate(os.environ))
