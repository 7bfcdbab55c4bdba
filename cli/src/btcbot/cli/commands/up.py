"""`btcbot up`: the simulator and the five services on this machine."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from btcbot.cli.profiles import PROFILES

HELP = "run the simulator and the five services on this machine"


def add_arguments(up: argparse.ArgumentParser) -> None:
    """Options of `btcbot up`."""
    up.add_argument("--duration", type=float, help="stop by itself after this many seconds")
    up.add_argument("--state-dir", type=Path, default=Path(".state/up"), help="logs, traces and embedded servers")
    up.add_argument("--symbols", default="BTCTRY,ETHTRY", help="comma-separated pair symbols")
    up.add_argument("--seed", type=int, default=7, help="the simulated market's random seed")
    up.add_argument("--keep-state", action="store_true", help="keep embedded servers' data and the ledger")
    up.add_argument(
        "--universe",
        choices=("static", "dynamic"),
        default="static",
        help="static: trade every --symbols pair; dynamic: the universe selects among the TRY pairs of --symbols",
    )
    up.add_argument("--quiet", action="store_true", help="no progress lines (trades and status) on stderr")
    up.add_argument(
        "--profile", choices=sorted(PROFILES), help="a named set of settings (demo: trades visibly; cli/profiles.py)"
    )


def run(args: argparse.Namespace) -> int:
    """Run the system until --duration or Ctrl-C; the last line printed is the JSON summary."""
    from btcbot.cli.up import UpOptions, run_up

    symbols = tuple(s.strip().upper() for s in args.symbols.split(",") if s.strip())
    if args.duration is not None and args.duration <= 0:
        raise SystemExit("btcbot up: --duration must be positive")
    opts = UpOptions(
        args.duration,
        args.state_dir,
        symbols,
        args.seed,
        args.keep_state,
        universe=args.universe,
        quiet=args.quiet,
        profile=args.profile,
    )
    return asyncio.run(run_up(opts))
