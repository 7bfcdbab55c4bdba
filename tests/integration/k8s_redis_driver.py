"""Runs the prod overlay's Redis and Sentinel start scripts with real redis-server processes, inside private
mount, network and PID namespaces (tests/integration/test_k8s_redis_sentinel.py starts it under `unshare`).

The pods' DNS names resolve through a private /etc/hosts (bind-mounted in this mount namespace only) to their own
loopback address in this network namespace, so the scripts run unchanged except for three paths and a `--bind`
(all pods share one network namespace here, where Kubernetes gives each its own). Prints one JSON line.
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

PODS = {
    "redis-0": ("redis-0.redis-headless", "127.0.0.2", "start-redis.sh"),
    "redis-1": ("redis-1.redis-headless", "127.0.0.3", "start-redis.sh"),
    "redis-sentinel-0": ("redis-sentinel-0.redis-sentinel-headless", "127.0.0.4", "start-sentinel.sh"),
    "redis-sentinel-1": ("redis-sentinel-1.redis-sentinel-headless", "127.0.0.5", "start-sentinel.sh"),
    "redis-sentinel-2": ("redis-sentinel-2.redis-sentinel-headless", "127.0.0.6", "start-sentinel.sh"),
}
SENTINELS = [p for p in PODS if "sentinel" in p]


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


def adapt(name: str, text: str, scripts: Path) -> str:
    """The ConfigMap's script with this machine's paths and a --bind; each change must apply exactly once."""
    changes: list[tuple[str, str]] = []
    if name == "start-redis.sh":
        changes = [("/scripts/", f"{scripts}/"), ("/data", "$DATA_DIR")]
        changes.append(('exec redis-server "$@"', 'exec redis-server "$@" --bind "$POD_IP"'))
    if name == "start-sentinel.sh":
        changes = [("/scripts/", f"{scripts}/"), ("/data", "$DATA_DIR")]
        changes.append(("--sentinel\n", '--sentinel --bind "$POD_IP"\n'))
    for old, new in changes:
        if old not in text:
            raise SystemExit(f"{name}: {old!r} not found: the test no longer matches the script")
        text = text.replace(old, new)
    return text


def main() -> None:
    work = Path(sys.argv[1])
    source: dict[str, str] = json.loads(Path(sys.argv[2]).read_text())
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    hosts = work / "hosts"
    hosts.write_text("127.0.0.1 localhost\n" + "".join(f"{ip} {dns}\n" for dns, ip, _ in PODS.values()))
    subprocess.run(["mount", "--bind", str(hosts), "/etc/hosts"], check=True)
    scripts = work / "scripts"
    scripts.mkdir()
    for name, text in source.items():
        (scripts / name).write_text(adapt(name, text, scripts))
    procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(pod: str) -> None:
        _, ip, script = PODS[pod]
        data = work / "data" / pod
        data.mkdir(parents=True, exist_ok=True)
        env = {"PATH": os.environ["PATH"], "POD_NAME": pod, "POD_IP": ip, "DATA_DIR": str(data)}
        log = (work / f"{pod}.log").open("ab")
        procs[pod] = subprocess.Popen(["sh", str(scripts / script)], env=env, stdout=log, stderr=log)

    def client(pod: str) -> redis.Redis:
        port = 26379 if "sentinel" in pod else 6379
        return redis.Redis(host=PODS[pod][1], port=port, socket_timeout=2, decode_responses=True)

    def master_per_sentinel() -> set[str | None]:
        found: set[str | None] = set()
        for s in SENTINELS:
            try:
                addr = client(s).execute_command("SENTINEL", "get-master-addr-by-name", "btcbot")
                found.add(addr[0] if addr else None)
            except (redis.RedisError, OSError):
                found.add(None)
        return found

    result: dict[str, Any] = {}
    try:
        for pod in SENTINELS:
            start(pod)
        start("redis-0")
        start("redis-1")
        wait_for(
            "redis-1 replicating redis-0",
            lambda: client("redis-1").info("replication")["master_link_status"] == "up",
            30,
        )
        client("redis-0").set("k8s:claim", "placed-once")
        result["acked_by_replica"] = client("redis-0").execute_command("WAIT", 1, 2000)
        wait_for(
            "every Sentinel to see the two others",
            lambda: all(len(client(s).execute_command("SENTINEL", "SENTINELS", "btcbot")) == 2 for s in SENTINELS),
            30,
        )

        # Sentinel promotes only a replica whose INFO it refreshed recently and saw linked (refreshed every 10 s):
        # a master lost within seconds of the replica's first sync is not failed over (measured: the first run of
        # this test killed it 0.3 s after the sync, and every Sentinel answered -failover-abort-no-good-slave).
        def replica_ok_everywhere() -> bool:
            for s in SENTINELS:
                replicas = client(s).execute_command("SENTINEL", "REPLICAS", "btcbot")
                # redis-py parses each replica into a dict (flags, master-link-status, ...).
                if [r.get("master-link-status") for r in replicas] != ["ok"]:
                    return False
            return True

        wait_for("every Sentinel to see the replica linked", replica_ok_everywhere, 30)
        result["master_before"] = sorted(str(m) for m in master_per_sentinel())
        procs["redis-0"].send_signal(signal.SIGKILL)
        procs["redis-0"].wait()
        result["failover_s"] = round(
            wait_for("the Sentinels to promote redis-1", lambda: master_per_sentinel() == {PODS["redis-1"][0]}, 60), 2
        )
        result["promoted_role"] = client("redis-1").info("replication")["role"]
        result["claim_after_failover"] = client("redis-1").get("k8s:claim")
        # The old master comes back through the same script: it must follow redis-1, not start as a second master.
        start("redis-0")
        wait_for(
            "redis-0 to rejoin as a replica",
            lambda: client("redis-0").info("replication")["master_link_status"] == "up",
            30,
        )
        info = client("redis-0").info("replication")
        result["old_master_role"] = info["role"]
        result["old_master_follows"] = info["master_host"]
        # A Sentinel that lost its state (a new pod) learns the current master from the others.
        procs["redis-sentinel-2"].send_signal(signal.SIGKILL)
        procs["redis-sentinel-2"].wait()
        (work / "data" / "redis-sentinel-2" / "sentinel.conf").unlink()
        start("redis-sentinel-2")
        wait_for("the new Sentinel to answer", lambda: client("redis-sentinel-2").ping(), 15)
        conf = (work / "data" / "redis-sentinel-2" / "sentinel.conf").read_text()
        result["fresh_sentinel_monitors"] = [line for line in conf.splitlines() if line.startswith("sentinel monitor")]
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
