"""`btcbot verify`: the simulator's record against execution's and the ledger's."""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "compare the simulator's record with execution's and the ledger's"


def add_arguments(verify: argparse.ArgumentParser) -> None:
    """Options of `btcbot verify`."""
    verify.add_argument("--run-file", help="a run's run.json (default: BTCBOT_RUN_FILE, else the current run)")
    for flag in ("sim-url", "api-key", "nats-url", "database-url", "redis-url", "key-prefix", "account"):
        verify.add_argument(f"--{flag}", help="overrides the run file and the environment")
    verify.add_argument("--since-ms", type=int, help="ignore stream messages older than this (epoch ms)")
    verify.add_argument(
        "--in-flight-s",
        type=float,
        help=(
            "on a live run: intents and orders younger than this are pending, not lost, and problems get this"
            " long to settle (default: 30 on a live run, else 0)"
        ),
    )


def run(args: argparse.Namespace) -> int:
    """Exit 0 when everything agrees."""
    from btcbot.cli.revive import reading
    from btcbot.cli.runs import prepare
    from btcbot.cli.verify import run_from_args

    found = prepare("verify", Path(args.run_file) if args.run_file else None, nats=True, nats_url=args.nats_url)
    if args.in_flight_s is None:
        # A live run has answers on their way; a stopped one never will.
        args.in_flight_s = 30.0 if found is not None and found.run.live else 0.0
    if args.in_flight_s < 0:
        from btcbot.cli.errors import UserError

        raise UserError("--in-flight-s must be >= 0")
    with reading("verify", found) as run_file:
        args.run_file = str(run_file) if run_file is not None else None
        return run_from_args(args)
