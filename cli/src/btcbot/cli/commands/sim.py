"""`btcbot sim`: the BTCTurk simulator alone."""

from __future__ import annotations

import argparse
import os
import sys

HELP = "the BTCTurk simulator alone (its options: btcbot sim --help)"
# Every argument after `sim` belongs to the simulator's own parser (`btcbot sim --help` is its help); main.py
# hands them over untouched as `args.forwarded`.
ADD_HELP = False
FORWARDS_ARGUMENTS = True


def add_arguments(sim: argparse.ArgumentParser) -> None:
    """None of its own: see FORWARDS_ARGUMENTS."""


def run(args: argparse.Namespace) -> int:
    """Replace this process with the simulator (a leading `--`, the old spelling, is dropped)."""
    forwarded = list(args.forwarded)
    if forwarded[:1] == ["--"]:
        forwarded = forwarded[1:]
    os.execv(sys.executable, [sys.executable, "-m", "btcbot.sim", *forwarded])  # noqa: S606
