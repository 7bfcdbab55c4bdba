"""`btcbot canary`: doctor, then one capped order end to end."""

from __future__ import annotations

import argparse
import asyncio
import os
from pathlib import Path

HELP = "doctor, then one capped order end to end through risk, execution, ledger"


def add_arguments(canary: argparse.ArgumentParser) -> None:
    """Options of `btcbot canary`."""
    canary.add_argument("--symbol", required=True, help="pair symbol such as BTCTRY")
    canary.add_argument("--notional", required=True, help="order value in the quote asset (<= CANARY_MAX_NOTIONAL)")
    canary.add_argument("--side", choices=("buy", "sell"), default="buy")
    canary.add_argument("--ttl", type=float, default=30.0, help="seconds to wait for the fill before canceling")
    canary.add_argument("--run-file", type=Path, help="run.json of `btcbot up`: its servers, simulator, identities")


def run(args: argparse.Namespace) -> int:
    """Parse the numbers, merge the run file, run the steps."""
    from decimal import Decimal, InvalidOperation

    from btcbot.cli.canary_run import CanaryOptions, env_from_run_file, run_canary
    from btcbot.runtime.redact import register_env

    try:
        notional = Decimal(args.notional)
    except InvalidOperation:
        print(f"btcbot canary: --notional must be a number, not {args.notional!r}")
        return 2
    if args.ttl <= 0:
        print("btcbot canary: --ttl must be positive")
        return 2
    from btcbot.cli.runs import prepare

    prepare("canary", args.run_file, nats=True)
    env = env_from_run_file(os.environ, None)
    register_env(env)
    copts = CanaryOptions(args.symbol.strip().upper(), notional, args.side, args.ttl)
    return asyncio.run(run_canary(env, copts))
