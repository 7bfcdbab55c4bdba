"""`btcbot dlq`: the newest dead letters."""

from __future__ import annotations

import argparse
import asyncio
import os
from pathlib import Path

HELP = "the newest dead letters, one JSON object per line"


def add_arguments(dlq: argparse.ArgumentParser) -> None:
    """Options of `btcbot dlq`."""
    dlq.add_argument("--run-file", type=Path, help="a run's run.json (default: BTCBOT_RUN_FILE, else the current run)")
    dlq.add_argument("--service", help="only this service's dead letters")
    dlq.add_argument("--limit", type=_positive, default=20, help="how many (default 20)")


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive number, not {text}")
    return value


def run(args: argparse.Namespace) -> int:
    """Print them, newest last."""
    from btcbot.cli.control import run_dlq
    from btcbot.cli.revive import reading
    from btcbot.cli.runs import prepare

    found = prepare("dlq", args.run_file, nats=True)
    with reading("dlq", found):
        return asyncio.run(run_dlq(os.environ, args.service, args.limit))
