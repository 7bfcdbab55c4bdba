"""`btcbot service NAME`: one service in the foreground."""

from __future__ import annotations

import argparse
import os
import sys

HELP = "run one service in the foreground"
SERVICES = ("marketdata", "strategy", "risk", "execution", "ledger")


def add_arguments(service: argparse.ArgumentParser) -> None:
    """The service's name."""
    service.add_argument("name", choices=SERVICES)


def run(args: argparse.Namespace) -> int:
    """Replace this process with the service."""
    os.execv(sys.executable, [sys.executable, "-m", f"btcbot.{args.name}"])  # noqa: S606
