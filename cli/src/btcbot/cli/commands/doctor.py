"""`btcbot doctor`: check the dependencies."""

from __future__ import annotations

import argparse
import asyncio
import os

HELP = "check NATS, Redis, Postgres, the streams and the exchange"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """No options."""


def run(args: argparse.Namespace) -> int:
    """Print one line per check; exit 1 when one fails."""
    from btcbot.cli.doctor import run_doctor

    return asyncio.run(run_doctor(os.environ))
