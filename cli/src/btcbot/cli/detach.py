"""`btcbot up --detach`: the same `up` in its own session, output to the run's log; return once it is ready."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from btcbot.cli.runplan import RunPlan
from btcbot.cli.runs import RUN_FILE, UP_LOG
from btcbot.devstack.procs import log_tail

READY_TIMEOUT = 180.0


def child_argv(plan: RunPlan, args: argparse.Namespace) -> list[str]:
    """The foreground `up` that the detached run is: the same choices, the name fixed now."""
    argv = [sys.executable, "-m", "btcbot.cli", "up"]
    if plan.resume:
        argv += ["--resume", plan.name]
    else:
        argv += ["--name", plan.name, "--symbols", args.symbols, "--seed", str(args.seed)]
    if plan.root is not None:
        argv += ["--state-root", str(plan.root.resolve())]
    else:
        argv += ["--state-dir", str(plan.directory.resolve())]
    if args.duration is not None:
        argv += ["--duration", str(args.duration)]
    if args.keep_state:
        argv.append("--keep-state")
    if getattr(args, "universe", None):
        argv += ["--universe", args.universe]
    if getattr(args, "profile", None):
        argv += ["--profile", args.profile]
    if getattr(args, "strategies", None):
        argv += ["--strategies", args.strategies]
    if getattr(args, "nats_cluster", 0):
        argv += ["--nats-cluster", str(args.nats_cluster)]
    if getattr(args, "replicas", 1) != 1:
        argv += ["--replicas", str(args.replicas)]
    if getattr(args, "quiet", False):
        argv.append("--quiet")
    return argv


def detach(plan: RunPlan, args: argparse.Namespace) -> int:
    """Start the run in the background and wait (bounded) until its services are ready."""
    plan.directory.mkdir(parents=True, exist_ok=True)
    log_path = plan.directory / UP_LOG
    with log_path.open("ab") as log:
        process = subprocess.Popen(  # noqa: S603 (our own interpreter and arguments)
            child_argv(plan, args),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # a Ctrl-C or a closed terminal here does not reach the run
        )
    run_file = plan.directory / RUN_FILE
    deadline = time.monotonic() + READY_TIMEOUT
    while True:
        data = _ready(run_file, process.pid)
        if data is not None:
            break
        code = process.poll()
        if code is not None:
            print(f"btcbot up: the run {plan.name} exited with code {code} during start-up; log {log_path}:")
            print(log_tail(log_path, 3000), file=sys.stderr)
            return code or 1
        if time.monotonic() > deadline:
            print(
                f"btcbot up: run {plan.name} not ready after {READY_TIMEOUT:.0f}s (pid {process.pid}); see {log_path}"
            )
            return 1
        time.sleep(0.3)
    print(f"run {plan.name} is up (pid {process.pid})")
    print(f"   directory: {plan.directory}")
    print(f"   log:       {log_path}")
    print(f"   exchange:  {data.get('sim_url')}")
    for name, dep in (data.get("infra") or {}).items():
        from btcbot.devstack.endpoints import redact_url

        print(f"   {name + ':':10} {redact_url(str(dep.get('url')))}{' (embedded)' if dep.get('embedded') else ''}")
    stop_with = f"btcbot down {plan.name}" + (f" --state-root {plan.root}" if plan.root is not None else "")
    print(f"   stop it:   {stop_with}")
    return 0


def _ready(run_file: Path, pid: int) -> dict[str, Any] | None:
    """run.json once this process wrote it as running (a resumed run's old file names the old pid)."""
    try:
        data = json.loads(run_file.read_text())
    except (FileNotFoundError, ValueError):
        return None
    if isinstance(data, dict) and data.get("pid") == pid and data.get("status") == "running":
        return data
    return None
