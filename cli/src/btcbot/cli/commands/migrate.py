"""`btcbot migrate`: the ledger's database migrations."""

from __future__ import annotations

import argparse
import asyncio
import os

HELP = "apply the ledger's database migrations (DATABASE_URL)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """No options."""


def run(args: argparse.Namespace) -> int:
    """Apply what is missing."""
    from btcbot.cli.doctor import run_migrate

    return asyncio.run(run_migrate(os.environ))
