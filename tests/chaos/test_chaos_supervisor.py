"""Chaos of issue 10 item 7: `btcbot up`'s supervisor under kills, and `up` across a NATS restart.

Each test runs the real `btcbot up` (simulator and five services as processes) on a private NATS, the session's
Redis and a fresh database. Execution is SIGKILLed five times, spaced: with a budget of five restarts it comes back
each time and the run ends ok; with a budget of two the third kill leaves it down, and `up` says so, stops the run
and exits 3 naming it. The last test stops NATS for 5 s in the middle of a run: `up` still drains and ends ok.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import shutil
import signal
import sys
import tempfile
import time
import urllib.request
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

pytestmark = [pytest.mark.chaos, pytest.mark.integration]

ROOT = Path(__file__).resolve().parents[2]
VICTIM = "execution"
KILLS = 5


@dataclass
class Up:
    """A running `btcbot up` and where its parts are."""

    process: asyncio.subprocess.Process
    base: Path
    nats: Any
    run: dict[str, Any]

    @property
    def stderr(self) -> str:
        return (self.base / "up.stderr").read_text(errors="replace")

    def service_pid(self, name: str) -> int | None:
        """The pid of `up`'s child `python -m btcbot.<name>`, if one runs (read from /proc)."""
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
                argv = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            if ppid == self.process.pid and f"btcbot.{name}".encode() in argv and "Z" not in stat.split()[2]:
                return int(entry.name)
        return None

    async def ready(self, name: str, timeout: float) -> int:
        """Until a process of `name` runs and its /readyz answers 200; returns its pid."""
        port = self.run["health_ports"][name]
        deadline = time.monotonic() + timeout
        while True:
            pid = self.service_pid(name)
            if pid is not None and await asyncio.to_thread(_status, f"http://127.0.0.1:{port}/readyz") == 200:
                return pid
            assert self.process.returncode is None, f"btcbot up exited early:\n{self.stderr[-4000:]}"
            assert time.monotonic() < deadline, f"{name} not ready after {timeout:.0f}s:\n{self.stderr[-4000:]}"
            await asyncio.sleep(0.2)

    async def finish(self, timeout: float) -> tuple[int, dict[str, Any]]:
        """Wait for `up` to end (it was told to, or it gave up); its exit code and JSON summary."""
        assert self.process.stdout is not None
        out = await asyncio.wait_for(self.process.stdout.read(), timeout)
        code = await asyncio.wait_for(self.process.wait(), timeout)
        lines = [line for line in out.decode().splitlines() if line.strip()]
        assert lines, f"btcbot up printed no summary (exit {code}):\n{self.stderr[-4000:]}"
        return code, json.loads(lines[-1])


def _status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return 0


@contextlib.asynccontextmanager
async def running_up(redis_url: str, pg_admin_url: str, env: dict[str, str]) -> AsyncIterator[Up]:
    """`btcbot up --symbols BTCTRY` on a private NATS and a fresh database, with `env` added; torn down on exit."""
    from btcbot.devstack.infra import drop_database, ensure_database, start_nats

    base = Path(tempfile.mkdtemp(prefix="btcbot-chaos-up-"))
    base.chmod(0o711)
    nats = start_nats(base / "nats")
    db_name = f"btcbot_chaos_up_{secrets.token_hex(4)}"
    database_url = await ensure_database(pg_admin_url, db_name)
    state = base / "state"
    full_env = {**os.environ, **env, "NATS_URL": nats.url, "REDIS_URL": redis_url, "DATABASE_URL": database_url}
    with (base / "up.stderr").open("wb") as err:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "btcbot.cli", "up", "--state-dir", str(state), "--symbols", "BTCTRY",
            "--duration", "600", env=full_env, cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=err,
            stdin=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
    up = Up(process, base, nats, {})
    try:
        run_file = state / "run.json"
        deadline = time.monotonic() + 120
        while not run_file.exists():
            assert process.returncode is None, f"btcbot up exited during start-up:\n{up.stderr[-4000:]}"
            assert time.monotonic() < deadline, f"btcbot up was not ready after 120s:\n{up.stderr[-4000:]}"
            await asyncio.sleep(0.2)
        up.run = json.loads(run_file.read_text())
        yield up
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGINT)
            try:
                await asyncio.wait_for(process.wait(), 90)
            except TimeoutError:
                process.kill()
                await process.wait()
        up.nats.stop()
        with contextlib.suppress(Exception):
            await drop_database(pg_admin_url, db_name)
        if os.environ.get("BTCBOT_KEEP_CHAOS") != "1":
            shutil.rmtree(base, ignore_errors=True)
        else:
            print(f"chaos state kept in {base}")


def _budget(restarts: int) -> dict[str, str]:
    # A short backoff keeps the test quick; the window outlasts the test, so every kill counts.
    return {
        "BTCBOT_RESTART_MAX": str(restarts),
        "BTCBOT_RESTART_WINDOW": "600",
        "BTCBOT_RESTART_DELAY": "0.2",
        "BTCBOT_RESTART_MAX_DELAY": "1",
    }


async def _kill(up: Up, pid: int) -> None:
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    # Until `up` has reaped it (a restart then has a new pid).
    while up.service_pid(VICTIM) == pid:
        assert time.monotonic() < deadline, f"{VICTIM} (pid {pid}) was not reaped"
        await asyncio.sleep(0.05)


@pytest.mark.timeout(180)
async def test_a_service_killed_five_times_comes_back_each_time_within_its_budget(
    redis_url: str, pg_admin_url: str
) -> None:
    async with running_up(redis_url, pg_admin_url, _budget(KILLS)) as up:
        pid = await up.ready(VICTIM, 60)
        for _ in range(KILLS):
            await asyncio.sleep(1.0)  # spaced: each kill hits a service that had come back and was serving
            await _kill(up, pid)
            pid = await up.ready(VICTIM, 60)
        assert up.process.returncode is None
        up.process.send_signal(signal.SIGINT)
        code, summary = await up.finish(120)
        stderr = up.stderr
    assert code == 0, stderr[-4000:]
    assert summary["ok"] is True
    assert summary["failed_services"] == []
    assert summary["restarts"] == {VICTIM: KILLS}
    assert "stayed down" not in stderr


@pytest.mark.timeout(180)
async def test_a_service_killed_beyond_its_budget_stops_the_run_and_up_names_it(
    redis_url: str, pg_admin_url: str
) -> None:
    async with running_up(redis_url, pg_admin_url, _budget(2)) as up:
        pid = await up.ready(VICTIM, 60)
        for kill in range(3):
            await asyncio.sleep(1.0)
            await _kill(up, pid)
            if kill < 2:
                pid = await up.ready(VICTIM, 60)
        # Nobody asks `up` to stop: the third crash spends the budget and `up` ends the run by itself.
        code, summary = await up.finish(120)
        stderr = up.stderr
    log = Path(up.run["logs"]) / f"{VICTIM}.log"
    assert code == 3, stderr[-4000:]
    assert f"!! {VICTIM} stayed down: 3 crashes in 600 s; see {log}" in stderr
    assert summary["ok"] is False
    assert summary["failed_services"] == [VICTIM]
    assert summary["restarts"] == {VICTIM: 2}


@pytest.mark.timeout(180)
async def test_up_survives_a_nats_restart_mid_run(redis_url: str, pg_admin_url: str) -> None:
    from btcbot.devstack.infra import start_nats

    async with running_up(redis_url, pg_admin_url, {}) as up:
        await up.ready("marketdata", 60)
        await asyncio.sleep(2.0)
        port = int(up.nats.url.rsplit(":", 1)[1])
        up.nats.stop()
        await asyncio.sleep(5.0)
        # The same store and port: what a restarted server looks like to its clients.
        up.nats = start_nats(up.base / "nats", port=port)
        await asyncio.sleep(5.0)  # the services and `up` reconnect, and the pipeline runs on
        assert up.process.returncode is None, up.stderr[-4000:]
        up.process.send_signal(signal.SIGINT)
        code, summary = await up.finish(150)
        stderr = up.stderr
    assert code == 0, stderr[-4000:]
    assert summary["ok"] is True
    assert summary["books"] > 0
