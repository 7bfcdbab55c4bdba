"""`btcbot down`: stop a run (drain, summary) and print its summary."""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "stop a run (default: the current one): drain, summary, servers and simulator go with it"


def add_arguments(down: argparse.ArgumentParser) -> None:
    """Options of `btcbot down`."""
    down.add_argument("name", nargs="?", help="the run (default: the current one)")
    down.add_argument("--state-root", type=Path, help="where runs live (default BTCBOT_STATE_DIR, else .state)")
    down.add_argument("--run-file", type=Path, help="the run's run.json (a run started with --state-dir)")


def run(args: argparse.Namespace) -> int:
    """Exit 0 once the run is down and left its summary."""
    import os
    import sys

    from btcbot.cli.runctl import down, pick_run
    from btcbot.cli.runs import RunError, state_root

    try:
        target = pick_run(state_root(args.state_root, os.environ), args.name, args.run_file)
    except RunError as exc:
        print(f"btcbot down: {exc}", file=sys.stderr)
        return 2
    return down(target)
