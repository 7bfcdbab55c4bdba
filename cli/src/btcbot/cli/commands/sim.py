"""`btcbot sim`: the BTCTurk simulator alone."""

from __future__ import annotations

import argparse
import os
import sys

HELP = "the BTCTurk simulator alone (options: btcbot sim -- --help)"
ADD_HELP = False


def add_arguments(sim: argparse.ArgumentParser) -> None:
    """Everything after `sim` goes to the simulator's own parser."""
    sim.add_argument("args", nargs=argparse.REMAINDER)


def run(args: argparse.Namespace) -> int:
    """Replace this process with the simulator."""
    forwarded = [a for a in args.args if a != "--"]
    os.execv(sys.executable, [sys.executable, "-m", "btcbot.sim", *forwarded])  # noqa: S606
