"""The whole system as real processes (`btcbot up`) on a private NATS, the session's Redis and a fresh database."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import signal
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class System:
    """A running `btcbot up` and where its parts are."""

    process: asyncio.subprocess.Process
    state_dir: Path
    run: dict[str, Any]
    stderr_path: Path
    summary: dict[str, Any] | None = None
    injected_dead_letters: list[bytes] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)  # what the harness added for `btcbot up` (NATS credentials)

    async def stop(self, timeout: float = 120.0) -> dict[str, Any]:
        """SIGINT `btcbot up` (as Ctrl-C would), wait for its drain, and parse the JSON last line."""
        if self.summary is not None:
            return self.summary
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGINT)
        assert self.process.stdout is not None
        out = await asyncio.wait_for(self.process.stdout.read(), timeout)
        code = await asyncio.wait_for(self.process.wait(), timeout)
        lines = [line for line in out.decode().splitlines() if line.strip()]
        assert code == 0, f"btcbot up exited {code}; stderr:\n{self.stderr_tail()}"
        assert lines, f"btcbot up printed nothing; stderr:\n{self.stderr_tail()}"
        self.summary = json.loads(lines[-1])
        return self.summary

    def stderr_tail(self, size: int = 6000) -> str:
        return self.stderr_path.read_text(errors="replace")[-size:]

    def nats_auth(self, role: str = "admin") -> Any:
        """How a test connects as one identity (None when the system's NATS has no authorization)."""
        from btcbot.devstack.natsusers import load_users, user_auth

        path = self.env.get("NATS_IDENTITIES_FILE")
        return user_auth(load_users(Path(path))[role]) if path else None

    def cli_env(self) -> dict[str, str]:
        """The environment a CLI command needs against this system (its NATS credentials via run.json)."""
        return {**os.environ, "NATS_URL": self.run["nats_url"], "BTCBOT_RUN_FILE": str(self.state_dir / "run.json")}


def start_private_nats(state: Path, auth: bool) -> tuple[Any, dict[str, str]]:
    """A nats-server for one system, and the environment that tells `btcbot up` how to reach it."""
    from btcbot.devstack.infra import start_nats, start_secured_nats
    from btcbot.devstack.natsusers import IDENTITIES_FILE

    if not auth:
        return start_nats(state), {}
    server = start_secured_nats(state)
    return server, {"NATS_IDENTITIES_FILE": str(state / "nats" / IDENTITIES_FILE)}


@contextlib.asynccontextmanager
async def start_system(
    redis_url: str,
    pg_admin_url: str,
    extra_env: dict[str, str] | None = None,
    symbols: str = "BTCTRY,ETHTRY",
    *,
    nats_auth: bool = False,
    up_args: tuple[str, ...] = (),
) -> AsyncIterator[System]:
    """`btcbot up` on a private NATS and a fresh database; `extra_env` reaches every service (e.g. RISK_*).

    `nats_auth`: the NATS admits only the identities of the generated configuration, and `up` gets their
    credentials as an operator would give them (NATS_IDENTITIES_FILE, what `btcbot nats-config` writes).
    `up_args`: more options of `btcbot up` (e.g. `--profile demo --duration 60`).
    """
    from btcbot.devstack.infra import drop_database, ensure_database

    # Searchable by the postgres user and private to this module's run.
    base = Path(tempfile.mkdtemp(prefix="btcbot-e2e-"))
    base.chmod(0o711)
    nats, nats_env = start_private_nats(base / "nats", nats_auth)
    db_name = f"btcbot_e2e_{secrets.token_hex(4)}"
    database_url = await ensure_database(pg_admin_url, db_name)
    state = base / "state"
    stderr_path = base / "up.stderr"
    env = {**os.environ, **(extra_env or {})}
    env.update({"NATS_URL": nats.url, "REDIS_URL": redis_url, "DATABASE_URL": database_url, **nats_env})
    with stderr_path.open("wb") as err:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "btcbot.cli",
            "up",
            "--state-dir",
            str(state),
            "--symbols",
            symbols,
            *up_args,
            env=env,
            cwd=ROOT,
            stdout=asyncio.subprocess.PIPE,
            stderr=err,
            stdin=asyncio.subprocess.DEVNULL,
        )
    run_file = state / "run.json"
    deadline = time.monotonic() + 120
    while not run_file.exists():
        if process.returncode is not None or time.monotonic() > deadline:
            raise RuntimeError(f"btcbot up did not become ready:\n{stderr_path.read_text(errors='replace')[-6000:]}")
        await asyncio.sleep(0.2)
    system = System(process, state, json.loads(run_file.read_text()), stderr_path, env=nats_env)
    try:
        yield system
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGINT)
            try:
                await asyncio.wait_for(process.wait(), 120)
            except TimeoutError:
                process.kill()
                await process.wait()
        nats.stop()
        with contextlib.suppress(Exception):
            await drop_database(pg_admin_url, db_name)


@pytest.fixture(scope="session")
def system_starter() -> Any:
    """`start_system` for modules that need a system with their own settings."""
    return start_system


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def system(redis_url: str, pg_admin_url: str) -> AsyncIterator[System]:
    # NATS authorization on: every service runs under its own identity, as `btcbot up` does with its own NATS.
    async with start_system(redis_url, pg_admin_url, nats_auth=True) as running:
        yield running
