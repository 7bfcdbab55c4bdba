"""`btcbot up`: the simulator and the five services on this machine."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

HELP = "run the simulator and the five services on this machine"


def add_arguments(up: argparse.ArgumentParser) -> None:
    """Options of `btcbot up`."""
    up.add_argument("--duration", type=float, help="stop by itself after this many seconds")
    up.add_argument("--state-dir", type=Path, default=Path(".state/up"), help="logs, traces and embedded servers")
    up.add_argument("--symbols", default="BTCTRY,ETHTRY", help="comma-separated pair symbols")
    up.add_argument("--seed", type=int, default=7, help="the simulated market's random seed")
    up.add_argument("--keep-state", action="store_true", help="keep embedded servers' data and the ledger")
    up.add_argument(
        "--strategies",
        help="strategies to run, comma-separated (STRATEGY_STRATEGIES; default profit_v1): profit_v1,mean_reversion",
    )


def run(args: argparse.Namespace) -> int:
    """Run the system until --duration or Ctrl-C; the last line printed is the JSON summary."""
    from btcbot.cli.up import UpOptions, run_up

    symbols = tuple(s.strip().upper() for s in args.symbols.split(",") if s.strip())
    if args.duration is not None and args.duration <= 0:
        raise SystemExit("btcbot up: --duration must be positive")
    strategies = None
    if args.strategies is not None:
        from btcbot.strategy.registry import discover

        names = [n.strip().lower() for n in args.strategies.split(",") if n.strip()]
        installed = discover()
        unknown = [n for n in names if n not in installed]
        if not names or unknown:
            listed = ", ".join(sorted(installed))
            raise SystemExit(f"btcbot up: --strategies: unknown strategy {','.join(unknown) or '(none given)'} "
                             f"(installed: {listed})")  # fmt: skip
        strategies = ",".join(names)
    opts = UpOptions(args.duration, args.state_dir, symbols, args.seed, args.keep_state, strategies=strategies)
    return asyncio.run(run_up(opts))
