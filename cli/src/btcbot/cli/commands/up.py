"""`btcbot up`: the simulator and the five services on this machine."""

from __future__ import annotations

import argparse
import asyncio
import os
from pathlib import Path

HELP = "run the simulator and the five services on this machine"


def add_arguments(up: argparse.ArgumentParser) -> None:
    """Options of `btcbot up`."""
    up.add_argument("--duration", type=float, help="stop by itself after this many seconds")
    up.add_argument("--state-dir", type=Path, default=Path(".state/up"), help="logs, traces and embedded servers")
    up.add_argument("--symbols", default="BTCTRY,ETHTRY", help="comma-separated pair symbols")
    up.add_argument("--seed", type=int, default=7, help="the simulated market's random seed")
    up.add_argument("--keep-state", action="store_true", help="keep embedded servers' data and the ledger")


def run(args: argparse.Namespace) -> int:
    """Run the system until --duration or Ctrl-C; the last line printed is the JSON summary."""
    from btcbot.cli.preflight import check_up
    from btcbot.cli.up import UpOptions, run_up

    symbols = tuple(s.strip().upper() for s in args.symbols.split(",") if s.strip())
    check_up(args.duration, symbols, os.environ)  # before anything starts or connects (UserError: exit 2)
    opts = UpOptions(args.duration, args.state_dir, symbols, args.seed, args.keep_state)
    return asyncio.run(run_up(opts))
