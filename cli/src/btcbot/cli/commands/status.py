"""`btcbot status`: the runs under the state root."""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "list the runs under the state root: live or down, pid, started, servers, last progress"


def add_arguments(status: argparse.ArgumentParser) -> None:
    """Options of `btcbot status`."""
    status.add_argument("--state-root", type=Path, help="where runs live (default BTCBOT_STATE_DIR, else .state)")


def run(args: argparse.Namespace) -> int:
    """Print one line per run."""
    import os

    from btcbot.cli.runctl import status_lines
    from btcbot.cli.runs import state_root

    for line in status_lines(state_root(args.state_root, os.environ)):
        print(line)
    return 0
