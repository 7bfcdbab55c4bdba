"""`btcbot doctor`: check the dependencies."""

from __future__ import annotations

import argparse
import asyncio
import os
from pathlib import Path

HELP = "check NATS, Redis, Postgres, the streams and the exchange"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """No options."""
    parser.add_argument(
        "--run-file", type=Path, help="a run's run.json (default: BTCBOT_RUN_FILE, else the current run)"
    )


def run(args: argparse.Namespace) -> int:
    """Print one line per check; exit 1 when one fails."""
    from btcbot.cli.doctor import run_doctor
    from btcbot.cli.runs import prepare

    prepare("doctor", args.run_file, nats=True)
    return asyncio.run(run_doctor(os.environ))
