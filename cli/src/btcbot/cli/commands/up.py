"""`btcbot up`: the simulator and the five services on this machine, as a named run."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path

from btcbot.cli.profiles import PROFILES
from btcbot.cli.topology import nats_cluster_size, service_replicas

HELP = "run the simulator and the five services on this machine (a named run under the state root)"


def add_arguments(up: argparse.ArgumentParser) -> None:
    """Options of `btcbot up`."""
    up.add_argument("--duration", type=float, help="stop by itself after this many seconds")
    up.add_argument("--name", help="the run's name (default: generated from the start time, sortable)")
    up.add_argument("--resume", metavar="NAME", help="continue a stopped run: its database, keys, NATS, exchange")
    up.add_argument("--state-root", type=Path, help="where runs live (default BTCBOT_STATE_DIR, else .state)")
    up.add_argument("--state-dir", type=Path, help="this run's directory, outside the state root (tests)")
    up.add_argument("--detach", action="store_true", help="run in the background; return once services are ready")
    up.add_argument("--symbols", default="BTCTRY,ETHTRY", help="comma-separated pair symbols")
    up.add_argument("--seed", type=int, default=7, help="the simulated market's random seed")
    up.add_argument("--keep-state", action="store_true", help="with --state-dir: keep what an earlier run left there")
    up.add_argument(
        "--universe",
        choices=("static", "dynamic"),
        default="static",
        help="static: trade every --symbols pair; dynamic: the universe selects among the TRY pairs of --symbols",
    )
    up.add_argument("--quiet", action="store_true", help="no progress lines (trades and status) on stderr")
    up.add_argument(
        "--profile", choices=sorted(PROFILES), help="a named set of settings (demo: trades visibly; cli/profiles.py)"
    )
    up.add_argument(
        "--nats-cluster",
        type=nats_cluster_size,
        default=0,
        metavar="N",
        help="start N clustered NATS nodes (3 or more) with R3 streams instead of one server",
    )
    up.add_argument(
        "--replicas",
        type=service_replicas,
        default=1,
        metavar="R",
        help="run R processes of every service (instances <service>-1 .. -R, each with its own health port)",
    )
    up.add_argument(
        "--strategies",
        help="strategies to run, comma-separated (STRATEGY_STRATEGIES; default profit_v1): profit_v1,mean_reversion",
    )


def run(args: argparse.Namespace) -> int:
    """Run the system until --duration or Ctrl-C (or `btcbot down`); the last line printed is the JSON summary."""
    from datetime import UTC, datetime

    from btcbot.cli.preflight import check_up
    from btcbot.cli.runplan import plan_run
    from btcbot.cli.runs import RunError

    symbols = tuple(s.strip().upper() for s in args.symbols.split(",") if s.strip())
    check_up(args.duration, symbols, os.environ)  # before anything starts or connects (UserError: exit 2)
    strategies = _strategies(args.strategies)
    try:
        plan = plan_run(
            name=args.name,
            resume=args.resume,
            state_dir=args.state_dir,
            root_option=args.state_root,
            env=os.environ,
            now=datetime.now(UTC),
        )
    except RunError as exc:
        print(f"btcbot up: {exc}", file=sys.stderr)
        return 2
    if args.detach:
        from btcbot.cli.detach import detach

        return detach(plan, args)
    from btcbot.cli.up import UpOptions, run_up

    seed = int(plan.previous.get("seed", args.seed)) if plan.resume else args.seed
    if plan.resume and plan.previous.get("symbols"):
        symbols = tuple(str(plan.previous["symbols"]).split(","))
    opts = UpOptions(
        args.duration,
        plan.directory,
        symbols,
        seed,
        args.keep_state,
        plan=plan,
        universe=args.universe,
        quiet=args.quiet,
        profile=args.profile,
        strategies=strategies,
        nats_cluster=args.nats_cluster,
        replicas=args.replicas,
    )
    return asyncio.run(run_up(opts))


def _strategies(given: str | None) -> str | None:
    """The --strategies names, checked against the installed plug-ins (UserError naming the unknown ones)."""
    if given is None:
        return None
    from btcbot.cli.errors import UserError
    from btcbot.strategy.registry import discover

    names = [n.strip().lower() for n in given.split(",") if n.strip()]
    installed = discover()
    unknown = [n for n in names if n not in installed]
    if not names or unknown:
        listed = ", ".join(sorted(installed))
        raise UserError(f"--strategies: unknown strategy {','.join(unknown) or '(none given)'} (installed: {listed})")
    return ",".join(names)
