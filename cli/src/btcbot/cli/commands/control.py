"""`btcbot control`: trading mode, kill switch, resume, status."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path

HELP = "set the trading mode or the kill switch, resume a halted symbol, or show the control state"


def add_arguments(control: argparse.ArgumentParser) -> None:
    """Options of `btcbot control`."""
    control.add_argument(
        "--run-file", type=Path, help="a run's run.json (default: BTCBOT_RUN_FILE, else the current run)"
    )
    control.add_argument("action", choices=("mode", "kill", "release", "resume", "status"))
    control.add_argument(
        "mode", nargs="?", default="", help="NORMAL | REDUCE_ONLY | OBSERVE_ONLY (with `mode`); SYMBOL (with `resume`)"
    )
    control.add_argument("--reason", help="why; recorded with the event (required except for `status`)")
    control.add_argument("--operator", help="who (default: login name)")
    control.add_argument(
        "--cancel-resting", action="store_true", help="with `kill`: also cancel every resting order (default: keep)"
    )


def run(args: argparse.Namespace) -> int:
    """Publish the signed control event, or print the control state."""
    from btcbot.cli.control import run_control
    from btcbot.cli.runs import prepare

    found = prepare("control", args.run_file, nats=True)
    if found is not None and not found.run.live:
        print(f"btcbot control: run {found.run.name} is down: nothing to control", file=sys.stderr)
        return 2
    return asyncio.run(
        run_control(os.environ, args.action, args.mode, args.reason, args.operator, cancel_resting=args.cancel_resting)
    )
