"""`btcbot verify`: the simulator's record against execution's and the ledger's."""

from __future__ import annotations

import argparse

HELP = "compare the simulator's record with execution's and the ledger's"


def add_arguments(verify: argparse.ArgumentParser) -> None:
    """Options of `btcbot verify`."""
    verify.add_argument("--run-file", help="run.json written by `btcbot up` (e.g. .state/up/run.json)")
    for flag in ("sim-url", "api-key", "nats-url", "database-url", "redis-url", "key-prefix", "account"):
        verify.add_argument(f"--{flag}", help="overrides the run file and the environment")
    verify.add_argument("--since-ms", type=int, help="ignore stream messages older than this (epoch ms)")


def run(args: argparse.Namespace) -> int:
    """Exit 0 when everything agrees."""
    from btcbot.cli.verify import run_from_args

    return run_from_args(args)
