"""End to end: `btcbot up --nats-cluster 3 --replicas 2` runs three NATS nodes with R3 streams and two processes
of every service, trades, and drains and summarizes both replicas of each."""

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
from pathlib import Path

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.integration, pytest.mark.timeout(280)]

ROOT = Path(__file__).resolve().parents[2]
SERVICES = ("ledger", "execution", "risk", "strategy", "marketdata")


async def test_up_with_a_nats_cluster_and_two_replicas_of_every_service(redis_url: str, pg_admin_url: str) -> None:
    from btcbot.contracts.streams import ALL_STREAMS
    from btcbot.devstack.infra import drop_database, ensure_database
    from btcbot.devstack.natsusers import IDENTITIES_FILE, load_users, user_auth
    from btcbot.runtime.jetstream import connect

    base = Path(tempfile.mkdtemp(prefix="btcbot-e2e-cluster-"))
    base.chmod(0o711)
    db_name = f"btcbot_e2e_{secrets.token_hex(4)}"
    database_url = await ensure_database(pg_admin_url, db_name)
    state = base / "state"
    env = {k: v for k, v in os.environ.items() if k not in ("NATS_URL", "BTCBOT_STREAM_REPLICAS")}
    env.update({"REDIS_URL": redis_url, "DATABASE_URL": database_url})
    stderr_path = base / "up.stderr"
    argv = ["up", "--state-dir", str(state), "--symbols", "BTCTRY,ETHTRY", "--profile", "demo", "--duration", "45",
            "--nats-cluster", "3", "--replicas", "2", "--quiet"]  # fmt: skip
    with stderr_path.open("wb") as err:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "btcbot.cli", *argv, env=env, cwd=ROOT,
            stdout=asyncio.subprocess.PIPE, stderr=err, stdin=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
    try:
        run_file = state / "run.json"
        deadline = time.monotonic() + 150
        while not run_file.exists():
            assert process.returncode is None, stderr_path.read_text(errors="replace")[-4000:]
            assert time.monotonic() < deadline, "btcbot up not ready in 150 s"
            await asyncio.sleep(0.3)
        run = json.loads(run_file.read_text())
        urls = run["nats_url"].split(",")
        assert len(urls) == 3, run["nats_url"]
        children = sorted(run["health_ports"])
        assert children == sorted(f"{s}-{i}" for s in SERVICES for i in (1, 2)), children
        assert len(set(run["health_ports"].values())) == len(children)
        admin = load_users(state / "infra" / "nats" / IDENTITIES_FILE)["admin"]
        nc = await connect(run["nats_url"], "e2e-cluster", 10, auth=user_auth(admin))
        try:
            js = nc.jetstream()
            for spec in ALL_STREAMS:
                info = await js.stream_info(spec.name)
                assert info.config.num_replicas == 3, spec.name
        finally:
            await nc.close()
        assert process.stdout is not None
        out = await asyncio.wait_for(process.stdout.read(), 200)
        code = await asyncio.wait_for(process.wait(), 60)
        # The run is down: `btcbot verify` starts its three nodes again from their stores and finds nothing wrong.
        verify = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "btcbot.cli", "verify", "--run-file", str(run_file), env=env, cwd=ROOT,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, stdin=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        verified, verify_err = await asyncio.wait_for(verify.communicate(), 120)
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGINT)
            try:
                await asyncio.wait_for(process.wait(), 120)
            except TimeoutError:
                process.kill()
                await process.wait()
        with contextlib.suppress(Exception):
            await drop_database(pg_admin_url, db_name)
    stderr = stderr_path.read_text(errors="replace")
    logs = {name: (state / "logs" / f"{name}.log").stat().st_size for name in children}
    shutil.rmtree(base, ignore_errors=True)
    assert code == 0, stderr[-4000:]
    summary = json.loads([line for line in out.decode().splitlines() if line.strip()][-1])
    assert "topology: NATS cluster of 3, streams R3, 2 replica(s) per service" in stderr
    assert "3-node cluster ready in" in stderr
    assert summary["ok"] is True, summary
    assert summary["failed_services"] == []
    assert summary["orders"] > 0, summary
    assert summary["fills"] > 0, summary
    assert summary["ledger_fills"] == summary["fills"], summary
    assert summary["balances_match"] is True, summary["balance_mismatches"]
    # Each replica's log shows it ran; the drain stopped both of each (none is left running: up exited 0).
    assert all(logs.values()), logs
    assert verify.returncode == 0, (verified.decode()[-3000:], verify_err.decode()[-3000:])
    assert "started from its saved state: nats-cluster" in verify_err.decode(), verify_err.decode()[-3000:]
