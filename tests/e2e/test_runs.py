"""Runs as an operator lives them: `up --detach`, every command with no exported variables, `down`, the tools
after `down`, `--resume`, a second run beside the first one's data, and a database named `btcbot` left alone.

The runs use the machine's conventional servers (Postgres on 5432 and Redis on 6379 when they answer, else
embedded ones) and an embedded NATS, exactly as `btcbot up` chooses them; the state root is a temporary directory.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from btcbot.devstack.infra import DEFAULT_PG_ADMIN_URL, pg_usable

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

ROOT = Path(__file__).resolve().parents[2]
# Variables that would point the commands somewhere else than the run: the test runs without them.
_UNSET = (
    *("NATS_URL", "REDIS_URL", "DATABASE_URL", "BTCBOT_RUN_FILE", "BTCBOT_KEY_PREFIX", "NATS_USER", "NATS_PASSWORD"),
    *("NATS_IDENTITIES_FILE", "BTCTURK_BASE_URL", "BTCTURK_API_KEY", "BTCTURK_API_SECRET"),
)


def btcbot(env: dict[str, str], *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """One CLI command, bounded in time."""
    return subprocess.run(
        [sys.executable, "-m", "btcbot.cli", *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def last_json(out: str) -> dict[str, Any]:
    lines = [line for line in out.splitlines() if line.startswith("{")]
    assert lines, out
    parsed: dict[str, Any] = json.loads(lines[-1])
    return parsed


def _sql(url: str, *statements: str) -> list[Any]:
    async def run() -> list[Any]:
        conn = await asyncpg.connect(url, timeout=10)
        try:
            return [await conn.fetch(s) for s in statements]
        finally:
            await conn.close()

    return asyncio.run(run())


@pytest.fixture
def marker() -> Iterator[str]:
    """A table in a database named `btcbot` on the Postgres `up` will use; removed afterwards."""
    if asyncio.run(pg_usable(DEFAULT_PG_ADMIN_URL)) is not None:
        pytest.skip("no Postgres on the conventional local port: `up` would embed one, and the marker means nothing")
    exists = _sql(DEFAULT_PG_ADMIN_URL, "SELECT 1 FROM pg_database WHERE datname = 'btcbot'")[0]
    if not exists:
        _sql(DEFAULT_PG_ADMIN_URL, 'CREATE DATABASE "btcbot"')
    url = DEFAULT_PG_ADMIN_URL.rsplit("/", 1)[0] + "/btcbot"
    table = f"run_marker_{secrets.token_hex(4)}"
    _sql(url, f"CREATE TABLE {table} (note text)", f"INSERT INTO {table} VALUES ('keep me')")
    yield table
    _sql(url, f"DROP TABLE IF EXISTS {table}")
    if not exists:
        _sql(DEFAULT_PG_ADMIN_URL, 'DROP DATABASE IF EXISTS "btcbot" WITH (FORCE)')


@pytest.fixture
def cli_env(tmp_path: Path) -> Iterator[dict[str, str]]:
    """No server variables at all; only where runs live. Every run left is stopped and its database dropped."""
    env = {k: v for k, v in os.environ.items() if k not in _UNSET}
    env["BTCBOT_STATE_DIR"] = str(tmp_path / "state")
    yield env
    for run_file in (tmp_path / "state" / "runs").glob("*/run.json"):
        data = json.loads(run_file.read_text())
        btcbot(env, "down", data["name"], timeout=300)
        if data.get("database_created") and data.get("database_name"):
            _sql(DEFAULT_PG_ADMIN_URL, f'DROP DATABASE IF EXISTS "{data["database_name"]}" WITH (FORCE)')


def up_detached(env: dict[str, str], *args: str) -> str:
    done = btcbot(env, "up", "--detach", "--duration", "900", *args, timeout=240)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "is up" in done.stdout
    return done.stdout


def down(env: dict[str, str], name: str) -> dict[str, Any]:
    done = btcbot(env, "down", name, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    return last_json(done.stdout)


def good(summary: dict[str, Any]) -> None:
    assert summary["fills"] > 0, summary
    assert summary["balances_match"] is True, summary


def trade_a_while(env: dict[str, str], seconds: float) -> None:
    """Let the bot trade until the ledger of the current run has a fill (bounded)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        time.sleep(5)
        shown = btcbot(env, "verify")
        if shown.returncode == 0 and last_json(shown.stdout)["ledger_fills"] > 0:
            return


def test_a_run_lives_detached_is_read_without_variables_goes_down_resumes_and_leaves_btcbot_alone(
    cli_env: dict[str, str], marker: str
) -> None:
    env = cli_env
    tag = secrets.token_hex(3)
    first, second = f"t{tag}-a", f"t{tag}-b"

    up_detached(env, "--name", first)
    status = btcbot(env, "status")
    assert f"* {first}  live" in status.stdout, status.stdout

    for args in (["doctor"], ["dlq"], ["control", "status"], ["verify"], ["report"]):
        done = btcbot(env, *args)
        assert done.returncode == 0, f"{args}: {done.stdout}{done.stderr}"
        assert f"run {first} (live" in done.stderr, done.stderr
        assert "Traceback" not in done.stderr
    replayed = btcbot(env, "replay", "--assume-flat", "--json")
    assert replayed.returncode in (0, 1), replayed.stdout + replayed.stderr  # 1: decisions differ, still a replay
    assert last_json(replayed.stdout)["books"] > 0
    assert f"run {first} (live" in replayed.stderr

    trade_a_while(env, 90)
    summary = down(env, first)
    good(summary)
    assert f"{first}  stopped" in btcbot(env, "status").stdout

    # After down: verify and report from what the run saved (its NATS store and the simulator's state).
    verified = btcbot(env, "verify")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert last_json(verified.stdout)["ledger_fills"] == summary["ledger_fills"]
    assert "is down: started from its saved state" in verified.stderr
    reported = btcbot(env, "report", "--json")
    assert reported.returncode == 0, reported.stdout + reported.stderr
    assert json.loads(reported.stdout)["balances_match"] is True

    # --resume: the same database, keys and exchange; the ledger and the exchange still agree.
    up_detached(env, "--resume", first)
    time.sleep(10)
    resumed = down(env, first)
    assert resumed["balances_match"] is True, resumed
    assert resumed["ledger_fills"] >= summary["ledger_fills"]

    # A second run in a row: its own database, as good as the first.
    up_detached(env, "--name", second)
    trade_a_while(env, 90)
    good(down(env, second))

    url = DEFAULT_PG_ADMIN_URL.rsplit("/", 1)[0] + "/btcbot"
    assert [tuple(r) for r in _sql(url, f"SELECT note FROM {marker}")[0]] == [("keep me",)]
