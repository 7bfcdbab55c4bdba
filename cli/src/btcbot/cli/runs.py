"""Named runs under a state root, and how every command finds the run it talks to.

Layout (the state root is `--state-root`, else BTCBOT_STATE_DIR, else `.state`)::

    <root>/current              the name of the newest run (one line)
    <root>/runs/<name>/         one run: run.json, summary.json, logs/, infra/, traces.jsonl, sim-state.json

Discovery, for every command that talks to a run: `--run-file`, then BTCBOT_RUN_FILE, then `<root>/current`.
A run found only through `current` is not used when the environment names servers itself (NATS_URL,
REDIS_URL or DATABASE_URL): an operator who exports a server means that server.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import sys
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

STATE_ROOT_ENV = "BTCBOT_STATE_DIR"
RUN_FILE_ENV = "BTCBOT_RUN_FILE"
DEFAULT_STATE_ROOT = Path(".state")
RUN_FILE = "run.json"
SUMMARY_FILE = "summary.json"
SIM_STATE_FILE = "sim-state.json"
UP_LOG = "up.log"
CURRENT = "current"
_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,47}$")
# Variables that name servers: set in the environment, they win over a run found only through `current`.
SERVER_VARIABLES = ("NATS_URL", "REDIS_URL", "DATABASE_URL")


class RunError(Exception):
    """A run cannot be found, named or used (the message is one line for the operator)."""


def state_root(given: Path | None, env: Mapping[str, str]) -> Path:
    """The state root: the option, else BTCBOT_STATE_DIR, else `.state`."""
    if given is not None:
        return given
    from_env = (env.get(STATE_ROOT_ENV) or "").strip()
    return Path(from_env) if from_env else DEFAULT_STATE_ROOT


def new_run_name(now: datetime, token: str | None = None) -> str:
    """A sortable name: UTC time of the start and a short random tail (`20261207-024512-a1b2`)."""
    return f"{now.astimezone(UTC):%Y%m%d-%H%M%S}-{token or secrets.token_hex(2)}"


def check_run_name(name: str) -> str:
    """The name if usable as a directory, database and key-prefix part; RunError naming --name otherwise."""
    if not _NAME.match(name):
        raise RunError(f"--name {name!r}: use 1-48 lowercase letters, digits, '-' or '_', starting with a letter/digit")
    return name


def run_dir(root: Path, name: str) -> Path:
    """Where run `name` lives."""
    return root / "runs" / name


def database_name(name: str) -> str:
    """The run's own database (`btcbot_<name>`, '-' as '_' so it needs no quoting in psql)."""
    return "btcbot_" + name.replace("-", "_")


def key_prefix(name: str) -> str:
    """The run's own Redis key prefix."""
    return f"btcbot-{name}"


def set_current(root: Path, name: str) -> None:
    """Point `<root>/current` at run `name` (written then renamed: a reader never sees half a name)."""
    root.mkdir(parents=True, exist_ok=True)
    tmp = root / f".{CURRENT}.{os.getpid()}.tmp"
    tmp.write_text(name + "\n")
    tmp.replace(root / CURRENT)


def current_name(root: Path) -> str | None:
    """The name `<root>/current` holds, or None."""
    try:
        name = (root / CURRENT).read_text().strip()
    except FileNotFoundError:
        return None
    return name or None


def pid_alive(pid: object) -> bool:
    """Whether a process with this id exists (a run's `up`)."""
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass(frozen=True)
class Run:
    """One run as its run.json describes it."""

    name: str
    directory: Path
    data: dict[str, Any]

    @property
    def run_file(self) -> Path:
        """Its run.json."""
        return self.directory / RUN_FILE

    @property
    def live(self) -> bool:
        """Its `up` still runs (the pid recorded and not marked ended)."""
        return self.data.get("status") not in ("stopped", "failed") and pid_alive(self.data.get("pid"))

    @property
    def summary(self) -> dict[str, Any] | None:
        """summary.json, once `up` ended."""
        path = self.directory / SUMMARY_FILE
        try:
            loaded: dict[str, Any] = json.loads(path.read_text())
        except (FileNotFoundError, ValueError):
            return None
        return loaded


def load_run(run_file: Path) -> Run:
    """The run a run.json describes; RunError if it cannot be read."""
    try:
        data = json.loads(run_file.read_text())
    except FileNotFoundError:
        raise RunError(f"no run file at {run_file}") from None
    except (OSError, ValueError) as exc:
        raise RunError(f"cannot read run file {run_file}: {exc}") from None
    if not isinstance(data, dict):
        raise RunError(f"run file {run_file} does not hold a JSON object")
    return Run(str(data.get("name") or run_file.parent.name), run_file.parent, data)


def named_run(root: Path, name: str) -> Run:
    """Run `name` under the root; RunError naming the root if there is none."""
    path = run_dir(root, name) / RUN_FILE
    if not path.exists():
        raise RunError(f"no run {name!r} under {root} (see `btcbot status`)")
    return load_run(path)


def list_runs(root: Path) -> list[Run]:
    """Every run under the root with a run.json, oldest first (names sort by start time)."""
    runs_dir = root / "runs"
    if not runs_dir.is_dir():
        return []
    found = []
    for path in sorted(runs_dir.iterdir()):
        if (path / RUN_FILE).is_file():
            try:
                found.append(load_run(path / RUN_FILE))
            except RunError:
                continue
    return found


@dataclass(frozen=True)
class Found:
    """The run a command talks to and how it was found (for the one line on stderr)."""

    run: Run
    source: str


def find_run(explicit: Path | None, env: Mapping[str, str], root: Path | None = None) -> Found | None:
    """`--run-file`, then BTCBOT_RUN_FILE, then `<root>/current` (unless the environment names servers)."""
    if explicit is not None:
        return Found(load_run(explicit), "--run-file")
    from_env = (env.get(RUN_FILE_ENV) or "").strip()
    if from_env:
        return Found(load_run(Path(from_env)), RUN_FILE_ENV)
    if any((env.get(v) or "").strip() for v in SERVER_VARIABLES):
        return None
    root = state_root(root, env)
    name = current_name(root)
    if name is None:
        return None
    path = run_dir(root, name) / RUN_FILE
    if not path.exists():
        return None
    return Found(load_run(path), f"{root / CURRENT}")


def run_env(run: Run) -> dict[str, str]:
    """The variables a run gives a command: its servers, simulator and where its credentials are."""
    data = run.data
    given = {
        "NATS_URL": data.get("nats_url"),
        "REDIS_URL": data.get("redis_url"),
        "DATABASE_URL": data.get("database_url"),
        "BTCBOT_KEY_PREFIX": data.get("key_prefix"),
        "BTCBOT_SYMBOLS": data.get("symbols"),
        "BTCTURK_BASE_URL": data.get("sim_url"),
        "BTCTURK_API_KEY": data.get("api_key"),
        "BTCTURK_API_SECRET": data.get("api_secret"),
        "SIM_ADMIN_TOKEN": data.get("sim_admin_token"),
        RUN_FILE_ENV: str(run.run_file),
    }
    return {key: str(value) for key, value in given.items() if value}


def merge_run(env: Mapping[str, str], run: Run) -> dict[str, str]:
    """`env` with the run's variables; the run wins (it was named, or found as the current one)."""
    return {**env, **run_env(run)}


def describe(found: Found, env: Mapping[str, str]) -> str:
    """One line: which run and which servers (no secrets)."""
    from btcbot.devstack.endpoints import redact_url

    state = "live" if found.run.live else "down"
    parts = [f"run {found.run.name} ({state}; from {found.source})"]
    for label, key in (("NATS", "NATS_URL"), ("Postgres", "DATABASE_URL"), ("Redis", "REDIS_URL")):
        if env.get(key):
            parts.append(f"{label} {redact_url(env[key])}")
    if env.get("BTCTURK_BASE_URL"):
        parts.append(f"exchange {env['BTCTURK_BASE_URL']}")
    return ", ".join(parts)


# Starts the line that says what a command talks to, so it reads apart from the command's result or error.
USING = "using "


def use_run(command: str, explicit: Path | None, environ: MutableMapping[str, str] | None = None) -> Found | None:
    """Find the run, merge it into the environment (os.environ by default), say on stderr what is used.

    Raises RunError (one line) for a run file that cannot be read.
    """
    from btcbot.runtime.redact import register_env

    environ = os.environ if environ is None else environ
    found = find_run(explicit, environ)
    if found is None:
        where = ", ".join(f"{k.split('_')[0]} from {k}" for k in SERVER_VARIABLES if environ.get(k)) or "local defaults"
        print(f"btcbot {command}: {USING}no run; servers: {where}", file=sys.stderr, flush=True)
        return None
    merged = run_env(found.run)
    environ.update(merged)
    register_env(merged)
    print(f"btcbot {command}: {USING}{describe(found, environ)}", file=sys.stderr, flush=True)
    return found


def nats_too_old(env: Mapping[str, str], role: str = "reader") -> str | None:
    """The reason to refuse the NATS the environment names when it is older than `up` accepts (2.10), else None.

    An unreachable NATS is not judged here: the command reports that itself, as it did before.
    """
    import asyncio

    from btcbot.cli.natsconfig import cli_auth
    from btcbot.devstack.endpoints import redact_url, version_reason
    from btcbot.devstack.infra import DEFAULT_NATS_URL
    from btcbot.devstack.probes import MIN_NATS_VERSION
    from btcbot.runtime.errors import DependencyUnavailable
    from btcbot.runtime.jetstream import server_facts

    url = env.get("NATS_URL") or DEFAULT_NATS_URL
    try:
        version, _ = asyncio.run(server_facts(url, 3.0, cli_auth(env, role)))
    except DependencyUnavailable:
        return None
    too_old = version_reason("NATS server", version, MIN_NATS_VERSION)
    return None if too_old is None else f"{too_old} (at {redact_url(url)}); refusing, as `btcbot up` does"


def prepare(command: str, explicit: Path | None, *, nats: bool, nats_url: str | None = None) -> Found | None:
    """What each command runs first: find and merge the run, and refuse an old NATS when the command uses NATS.

    `nats_url`: the server a command's own option names (`--nats-url`), which wins over the environment.
    A refusal is one line on stderr and exit code 2 (SystemExit).
    """
    try:
        found = use_run(command, explicit)
    except RunError as exc:
        print(f"btcbot {command}: {exc}", file=sys.stderr, flush=True)
        raise SystemExit(2) from None
    env = {**os.environ, "NATS_URL": nats_url} if nats_url else os.environ
    if nats and (found is None or found.run.live) and (reason := nats_too_old(env)) is not None:
        print(f"btcbot {command}: {reason}", file=sys.stderr, flush=True)
        raise SystemExit(2)
    return found
