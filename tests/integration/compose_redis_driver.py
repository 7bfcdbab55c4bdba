"""Runs docker-compose.yml's redis, redis-replica and redis-sentinel commands as real processes inside private
mount, network and PID namespaces (tests/integration/test_compose_redis_sentinel.py starts it under `unshare`).

Compose's service names resolve through a private /etc/hosts to their own loopback address in this network
namespace. The commands run as written except for the data directory, a `--bind` (one shared network namespace
here, one per container in compose) and `--protected-mode no` (the redis image's entrypoint adds it in compose).
Prints one JSON line.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis

HOSTS = {"redis": "127.0.0.2", "redis-replica": "127.0.0.3", "redis-sentinel": "127.0.0.4"}


def wait_for(what: str, check: Callable[[], bool], timeout: float) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        try:
            if check():
                return time.monotonic() - start
        except (redis.RedisError, OSError):
            pass
        time.sleep(0.1)
    raise TimeoutError(f"{what} within {timeout:.0f}s")


def command(name: str, cmd: list[str], data: Path) -> list[str]:
    ip = HOSTS[name]
    if cmd[0] == "redis-server":
        return [*cmd, "--dir", str(data), "--bind", ip, "--protected-mode", "no"]
    script = cmd[-1]
    for old, new in (("/data/", f"{data}/"), ("--sentinel\n", f"--sentinel --bind {ip}\n")):
        if old not in script:
            raise SystemExit(f"{name}: {old!r} not found: the test no longer matches docker-compose.yml")
        script = script.replace(old, new)
    return [*cmd[:-1], script]


def main() -> None:
    work = Path(sys.argv[1])
    commands: dict[str, list[str]] = json.loads(Path(sys.argv[2]).read_text())
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    hosts = work / "hosts"
    hosts.write_text("127.0.0.1 localhost\n" + "".join(f"{ip} {name}\n" for name, ip in HOSTS.items()))
    subprocess.run(["mount", "--bind", str(hosts), "/etc/hosts"], check=True)
    procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(name: str) -> None:
        data = work / "data" / name
        data.mkdir(parents=True, exist_ok=True)
        log = (work / f"{name}.log").open("ab")
        procs[name] = subprocess.Popen(
            command(name, commands[name], data), env={"PATH": os.environ["PATH"]}, stdout=log, stderr=log
        )

    def client(name: str) -> redis.Redis:
        port = 26379 if name == "redis-sentinel" else 6379
        return redis.Redis(host=HOSTS[name], port=port, socket_timeout=2, decode_responses=True)

    def master() -> str | None:
        addr = client("redis-sentinel").execute_command("SENTINEL", "get-master-addr-by-name", "btcbot")
        return addr[0] if addr else None

    result: dict[str, Any] = {}
    try:
        for name in HOSTS:
            start(name)

        def replica_linked() -> bool:
            replicas = client("redis-sentinel").execute_command("SENTINEL", "REPLICAS", "btcbot")
            return [r.get("master-link-status") for r in replicas] == ["ok"]

        wait_for("the Sentinel to see the replica linked", replica_linked, 30)
        client("redis").set("compose:claim", "placed-once")
        result["acked_by_replica"] = client("redis").execute_command("WAIT", 1, 2000)
        result["master_before"] = master()
        procs["redis"].send_signal(signal.SIGKILL)
        procs["redis"].wait()
        result["failover_s"] = round(wait_for("redis-replica promoted", lambda: master() == "redis-replica", 60), 2)
        result["claim_after_failover"] = client("redis-replica").get("compose:claim")
        # compose restarts the old master (restart: unless-stopped); the Sentinel turns it into a replica.
        start("redis")
        result["rejoined_s"] = round(
            wait_for(
                "the old master to follow redis-replica",
                lambda: client("redis").info("replication").get("master_host") == "redis-replica",
                60,
            ),
            2,
        )
        result["old_master_role"] = client("redis").info("replication")["role"]
    except (TimeoutError, redis.RedisError, OSError) as exc:
        result["error"] = f"{type(exc).__name__}: {exc}"
        result["logs"] = {p.stem: p.read_text()[-1500:] for p in work.glob("*.log")}
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
