"""`btcbot status` and `btcbot down`: list the runs under a state root, stop one."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from pathlib import Path

from btcbot.cli.runs import (
    CURRENT,
    SERVER_VARIABLES,
    Run,
    RunError,
    current_name,
    find_run,
    list_runs,
    named_run,
    pid_alive,
)
from btcbot.devstack.endpoints import redact_url

DOWN_TIMEOUT = 240.0  # the drain of `up` is bounded by its own timeouts (about 3 minutes at worst)
PROGRESS_FILES = ("progress.json", "progress.txt")


def last_progress(run: Run) -> str:
    """The last progress line `up` left in the run directory, if it writes one."""
    for name in PROGRESS_FILES:
        path = run.directory / name
        if path.is_file():
            text = path.read_text(errors="replace").strip()
            if name.endswith(".json"):
                with contextlib.suppress(ValueError, AttributeError):
                    return str(json.loads(text).get("line", ""))[:200]
            lines = text.splitlines()
            return lines[-1][:160] if lines else ""
    return ""


def status_lines(root: Path) -> list[str]:
    """One line per run, oldest first; `*` marks the current one."""
    runs = list_runs(root)
    if not runs:
        return [f"no runs under {root}"]
    current = current_name(root)
    lines = []
    for run in runs:
        data = run.data
        servers = ", ".join(
            f"{name} {redact_url(str(dep.get('url')))}" for name, dep in (data.get("infra") or {}).items()
        )
        mark = "*" if run.name == current else " "
        state = "live" if run.live else str(data.get("status") if data.get("status") != "running" else "down")
        line = f"{mark} {run.name}  {state}  pid {data.get('pid', '-')}  started {data.get('started', '-')}"
        line += f"  exchange {data.get('sim_url', '-')}  {servers}"
        progress = last_progress(run)
        if progress:
            line += f"  last: {progress}"
        lines.append(line)
    lines.append(f"(* = {root / CURRENT})")
    return lines


def pick_run(root: Path, name: str | None, run_file: Path | None) -> Run:
    """The run `down` acts on: by name, by run file, else the current one."""
    if name:
        return named_run(root, name)
    found = find_run(run_file, {k: v for k, v in os.environ.items() if k not in SERVER_VARIABLES}, root)
    if found is None:
        raise RunError(f"no current run under {root}: name one (see `btcbot status`)")
    return found.run


def down(run: Run, timeout: float = DOWN_TIMEOUT) -> int:
    """SIGTERM the run's `up` (it drains and summarizes as on Ctrl-C), wait, print its summary."""
    pid = run.data.get("pid")
    if not run.live or not isinstance(pid, int):
        print(f"run {run.name} is already down")
        return _print_summary(run)
    print(f"stopping run {run.name} (pid {pid}): draining the pipeline ...", flush=True)
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while pid_alive(pid) and not _reaped(pid):
        if time.monotonic() > deadline:
            print(f"btcbot down: run {run.name} (pid {pid}) still running after {timeout:.0f}s; see {run.directory}")
            return 1
        time.sleep(0.5)
    return _print_summary(run)


def _reaped(pid: int) -> bool:
    """A zombie counts as gone (our own child when `down` runs in the process that started it)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state == "Z"


def _print_summary(run: Run) -> int:
    summary = run.summary
    if summary is None:
        print(f"btcbot down: run {run.name} left no summary ({run.directory / 'summary.json'}); see its logs")
        return 1
    print(json.dumps(summary, sort_keys=False))
    return 0
