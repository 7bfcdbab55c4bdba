"""`btcbot replay`: strategy and risk over a recorded range, diffed against the recording."""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "re-run strategy and risk over a recorded range and diff the decisions"


def add_arguments(replay: argparse.ArgumentParser) -> None:
    """Options of `btcbot replay`."""
    replay.add_argument(
        "--run-file", type=Path, help="a run's run.json (default: BTCBOT_RUN_FILE, else the current run)"
    )
    replay.add_argument("--from-seq", type=int, default=1, help="first MARKET sequence (default: the first)")
    replay.add_argument("--to-seq", type=int, help="last MARKET sequence")
    replay.add_argument("--since", help="books received at or after this ISO time (UTC if no offset)")
    replay.add_argument("--until", help="books received at or before this ISO time")
    replay.add_argument("--symbols", help="comma-separated symbols (default BTCBOT_SYMBOLS)")
    replay.add_argument("--params", action="append", help="strategy overrides NAME=VALUE[,...] (ProfitParams names)")
    replay.add_argument("--rules", type=Path, help="saved exchangeinfo JSON for the exchange rule checks")
    replay.add_argument("--rules-from-exchange", metavar="URL", help="load exchange rules from this REST base URL")
    replay.add_argument("--assume-flat", action="store_true", help="start flat if no portfolio precedes the range")
    replay.add_argument("--publish-prefix", metavar="PFX", help="also publish books and intents under PFX.>")
    replay.add_argument("--speed", type=float, default=0.0, help="pace publishing: 1 = recorded pace, 0 = at once")
    replay.add_argument("--nats-url", help="default NATS_URL")
    replay.add_argument("--json", action="store_true", help="one JSON object per intent instead of a table")


def run(args: argparse.Namespace) -> int:
    """Exit 0 when the replay agrees with the recording."""
    from btcbot.cli.replay import run_from_args
    from btcbot.cli.revive import reading
    from btcbot.cli.runs import prepare

    found = prepare("replay", args.run_file, nats=True, nats_url=args.nats_url)
    with reading("replay", found):
        return run_from_args(args)
