"""Which run `btcbot up` starts or resumes: its name, directory, database, key prefix and saved credentials.

Pure decisions over the options, the environment and an earlier run.json; the IO (creating the database,
starting servers) stays in up.py.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from btcbot.cli.runs import RUN_FILE as RUN_FILE_NAME
from btcbot.cli.runs import (
    SIM_STATE_FILE,
    RunError,
    check_run_name,
    database_name,
    key_prefix,
    load_run,
    new_run_name,
    run_dir,
    state_root,
)


@dataclass(frozen=True)
class RunPlan:
    """Where a run lives and what it reuses."""

    name: str
    directory: Path
    root: Path | None  # None: the directory was given with --state-dir (not under a state root)
    database: str  # the database `up` creates (or reuses when resuming), unless DATABASE_URL names one
    key_prefix: str
    resume: bool = False
    previous: dict[str, Any] = field(default_factory=dict)  # the earlier run.json when resuming

    @property
    def sim_state_file(self) -> Path:
        """Where the simulator saves and restores the exchange's state."""
        return self.directory / SIM_STATE_FILE


def plan_run(
    *,
    name: str | None,
    resume: str | None,
    state_dir: Path | None,
    root_option: Path | None,
    env: Mapping[str, str],
    now: datetime,
) -> RunPlan:
    """Decide the run; RunError (one line naming the option) for a bad or conflicting choice."""
    given_prefix = (env.get("BTCBOT_KEY_PREFIX") or "").strip()
    if resume is not None:
        if name is not None or state_dir is not None:
            raise RunError("--resume NAME continues that run: do not combine it with --name or --state-dir")
        root = state_root(root_option, env)
        directory = run_dir(root, check_run_name(resume))
        if not (directory / RUN_FILE_NAME).exists():
            raise RunError(f"--resume {resume}: no run of that name under {root} (see `btcbot status`)")
        previous = load_run(directory / RUN_FILE_NAME)
        if previous.live:
            raise RunError(f"--resume {resume}: that run is still live (pid {previous.data.get('pid')})")
        data = previous.data
        return RunPlan(
            name=resume,
            directory=directory,
            root=root,
            database=str(data.get("database_name") or database_name(resume)),
            key_prefix=str(data.get("key_prefix") or key_prefix(resume)),
            resume=True,
            previous=data,
        )
    if state_dir is not None:
        # The directory is the caller's (tests, an operator's layout); the name still makes database and prefix unique.
        chosen = check_run_name(name) if name is not None else new_run_name(now)
        return RunPlan(chosen, state_dir, None, database_name(chosen), given_prefix or key_prefix(chosen))
    root = state_root(root_option, env)
    chosen = check_run_name(name) if name is not None else new_run_name(now)
    directory = run_dir(root, chosen)
    if (directory / RUN_FILE_NAME).exists():
        raise RunError(f"--name {chosen}: a run of that name exists under {root}; use --resume {chosen} or a new name")
    return RunPlan(chosen, directory, root, database_name(chosen), given_prefix or key_prefix(chosen))
