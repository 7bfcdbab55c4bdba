"""A stopped run, brought back for reading: its embedded servers and its exchange, started again for a while.

After `btcbot down` (or the end of `up`) a run keeps what it needs on disk: the embedded NATS's JetStream store
and the embedded Postgres's cluster in `infra/`, and the simulator's saved state in `sim-state.json`. `verify`
and `report` start those again on fresh ports, read, and stop them. External servers (the local Postgres and
Redis, a NATS named by NATS_URL) kept the run's data themselves and are used as they are. An embedded Redis kept
nothing (it runs without persistence): a revived one is empty, so verify sees no claims or reservations there.
The simulator runs from a copy of the saved state, so reading never changes what the run saved.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from btcbot.cli.runs import RUN_FILE, SIM_STATE_FILE, Found, Run, run_env
from btcbot.cli.up import write_private
from btcbot.devstack.embedded import start_postgres, start_redis, start_secured_nats
from btcbot.devstack.endpoints import with_database
from btcbot.devstack.natscluster import NatsCluster, start_nats_cluster
from btcbot.devstack.procs import EmbeddedServer, ManagedProcess
from btcbot.runtime.redact import register_env

_SIM_READY_TIMEOUT = 30.0


@contextlib.contextmanager
def revived(run: Run, command: str) -> Iterator[Run]:
    """The run itself while it is live; a stopped run as a copy whose servers and exchange run until the end."""
    if run.live:
        yield run
        return
    scratch = Path(tempfile.mkdtemp(prefix=f"btcbot-{command}-"))
    servers: list[EmbeddedServer | NatsCluster] = []
    try:
        data = _start(run, scratch, servers)
        copy = scratch / RUN_FILE
        write_private(copy, json.dumps(data, indent=2))
        started = ", ".join(s.name for s in servers) or "nothing"
        print(f"btcbot {command}: run {run.name} is down: started from its saved state: {started}", file=sys.stderr)
        yield Run(run.name, scratch, data)
    finally:
        for server in reversed(servers):
            server.stop()
        shutil.rmtree(scratch, ignore_errors=True)


def _start(run: Run, scratch: Path, servers: list[EmbeddedServer | NatsCluster]) -> dict[str, Any]:
    data = dict(run.data)
    data["status"] = "revived"  # the copy is not live: its pid is gone
    infra_dir = Path(str(data.get("state_dir") or run.directory)) / "infra"
    infra = data.get("infra") or {}
    nodes = len(list(infra_dir.glob("node-*/nats/jetstream")))
    if infra.get("nats", {}).get("embedded") and nodes:
        # A `--nats-cluster` run: its nodes again, on their own stores (new ports; the routes follow).
        servers.append(start_nats_cluster(infra_dir, nodes))
        data["nats_url"] = servers[-1].url
    elif infra.get("nats", {}).get("embedded") and (infra_dir / "nats" / "jetstream").is_dir():
        servers.append(start_secured_nats(infra_dir))
        data["nats_url"] = servers[-1].url
    if infra.get("postgres", {}).get("embedded") and (infra_dir / "postgres" / "data").is_dir():
        servers.append(start_postgres(infra_dir))
        data["database_url"] = with_database(servers[-1].url, str(data.get("database_name") or "postgres"))
    if infra.get("redis", {}).get("embedded"):
        servers.append(start_redis(scratch))
        data["redis_url"] = servers[-1].url
    saved = Path(str(data.get("sim_state_file") or run.directory / SIM_STATE_FILE))
    if saved.is_file() and data.get("api_key"):
        servers.append(_start_simulator(data, saved, scratch))
        data["sim_url"] = servers[-1].url
    return data


def _start_simulator(data: dict[str, Any], saved: Path, scratch: Path) -> EmbeddedServer:
    """The exchange of the run, restored from a copy of its saved state (on a free port)."""
    state_copy = scratch / SIM_STATE_FILE
    shutil.copyfile(saved, state_copy)
    port_file = scratch / "sim.port"
    log_path = scratch / "sim.log"
    args = [sys.executable, "-m", "btcbot.sim", "--port", "0", "--port-file", str(port_file), "--state-file"]
    args += [str(state_copy), "--seed", str(data.get("seed", 7)), "--symbols", str(data.get("symbols") or "BTCTRY")]
    # Secrets through the environment, never the command line (which `ps` shows to every user).
    env = {**os.environ, "SIM_API_KEY": str(data["api_key"]), "SIM_API_SECRET": str(data["api_secret"])}
    env["SIM_ADMIN_TOKEN"] = str(data.get("sim_admin_token") or "")
    process = ManagedProcess("simulator", args, log_path, env=env).start()
    found: list[int] = []

    def ready() -> bool:
        try:
            found.append(int(port_file.read_text().strip()))
        except (FileNotFoundError, ValueError):
            return False
        return True

    process.wait_ready(ready, _SIM_READY_TIMEOUT)
    return EmbeddedServer(process, f"http://127.0.0.1:{found[-1]}")


@contextlib.contextmanager
def reading(command: str, found: Found | None) -> Iterator[Path | None]:
    """The run file to read the run through (a stopped run's servers revived meanwhile), merged into os.environ."""
    if found is None:
        yield None
        return
    with revived(found.run, command) as run:
        env = run_env(run)
        register_env(env)
        os.environ.update(env)
        yield run.run_file
