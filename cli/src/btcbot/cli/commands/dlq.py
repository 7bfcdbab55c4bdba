"""`btcbot dlq`: the newest dead letters."""

from __future__ import annotations

import argparse
import asyncio
import os

HELP = "the newest dead letters, one JSON object per line"


def add_arguments(dlq: argparse.ArgumentParser) -> None:
    """Options of `btcbot dlq`."""
    dlq.add_argument("--service", help="only this service's dead letters")
    dlq.add_argument("--limit", type=int, default=20)


def run(args: argparse.Namespace) -> int:
    """Print them, newest last."""
    from btcbot.cli.control import run_dlq

    return asyncio.run(run_dlq(os.environ, args.service, args.limit))
