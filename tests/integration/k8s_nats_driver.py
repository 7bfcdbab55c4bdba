"""Runs the prod overlay's NATS cluster config (ConfigMap nats-config plus the users `btcbot nats-config --target
k8s` renders) as three real nats-server processes inside private mount, network and PID namespaces
(tests/integration/test_k8s_nats_cluster.py starts it under `unshare`). Prints one JSON line.

A publish retried after a lost acknowledgement carries the same Nats-Msg-Id, so a count of messages is exact.
The routes name the pods (nats-<i>.nats-headless): a private /etc/hosts maps each to its own loopback address in
this network namespace. The config runs unchanged except for what a pod has and a process here lacks: its own
address to listen on (all three share one network namespace here), and the paths of the PVC and the pid file.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import nats
from nats.js.api import StorageType, StreamConfig

PODS = {f"nats-{i}": (f"nats-{i}.nats-headless", f"127.0.0.{2 + i}") for i in range(3)}
STREAM = "K8SR3"
BEFORE, AFTER = 200, 200


def substitute(text: str, old: str, new: str) -> str:
    """`old` (a regex over whole lines) must match exactly once: the test fails loudly when the config drifts."""
    result, count = re.subn(old, new, text, flags=re.MULTILINE)
    if count != 1:
        raise SystemExit(f"{old!r} matched {count} times: the test no longer matches the config")
    return result


def lay_out(work: Path, pod: str, conf: str, auth: str, nats_server: str) -> list[str]:
    _, ip = PODS[pod]
    etc = work / pod / "etc"
    (etc / "auth").mkdir(parents=True)
    conf = substitute(conf, r"^port: 4222$", f"listen: {ip}:4222")
    conf = substitute(conf, r"^http_port: 8222$", f"http: {ip}:8222")
    conf = substitute(conf, r"^  port: 6222$", f"  listen: {ip}:6222")
    conf = substitute(conf, r"^pid_file: /var/run/nats/nats.pid$", f"pid_file: {work / pod / 'nats.pid'}")
    auth = substitute(auth, r'store_dir: "/data/jetstream"', f'store_dir: "{work / pod / "data/jetstream"}"')
    (etc / "nats.conf").write_text(conf)
    (etc / "auth/nats-server.conf").write_text(auth)
    return [nats_server, "-c", str(etc / "nats.conf")]


def healthy(pod: str) -> bool:
    """Healthy with JetStream current and a meta leader known (the readiness probe's js-server-only is weaker)."""
    base = f"http://{PODS[pod][1]}:8222"
    try:
        with urllib.request.urlopen(f"{base}/healthz", timeout=1) as r:
            if r.status != 200:
                return False
        with urllib.request.urlopen(f"{base}/jsz", timeout=1) as r:
            return bool(json.load(r).get("meta_cluster", {}).get("leader"))
    except (OSError, ValueError):
        return False


async def wait_for(what: str, check: Any, timeout: float) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        try:
            if await check():
                return time.monotonic() - start
        except (nats.errors.Error, OSError, TimeoutError):
            pass
        await asyncio.sleep(0.2)
    raise TimeoutError(f"{what} within {timeout:.0f}s")


async def scenario(
    work: Path, start: Any, procs: dict[str, subprocess.Popen[bytes]], admin: dict[str, str]
) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for pod in PODS:
        start(pod)

    async def all_healthy() -> bool:
        return all(healthy(p) for p in PODS)

    result["cluster_ready_s"] = round(await wait_for("three healthy JetStream servers", all_healthy, 60), 2)
    nc = await nats.connect(
        [f"nats://{ip}:4222" for _, ip in PODS.values()],
        user=admin["user"],
        password=admin["password"],
        connect_timeout=3,
        max_reconnect_attempts=-1,
        reconnect_time_wait=0.2,
    )
    try:
        js = nc.jetstream(timeout=3)
        stream = StreamConfig(name=STREAM, subjects=["k8sr3.>"], num_replicas=3, storage=StorageType.FILE)

        async def created() -> bool:
            await js.add_stream(stream)
            return True

        await wait_for("the R3 stream to be created", created, 30)

        async def all_current() -> bool:
            info = await js.stream_info(STREAM)
            peers = info.cluster.replicas or []
            return (
                info.cluster.leader is not None and len(peers) == 2 and all(p.current and not p.offline for p in peers)
            )

        await wait_for("the R3 stream on three current peers", all_current, 30)
        for i in range(BEFORE):
            await js.publish(f"k8sr3.{i % 2}", str(i).encode(), headers={"Nats-Msg-Id": str(i)})
        leader = (await js.stream_info(STREAM)).cluster.leader
        result["leader_killed"] = leader
        procs[leader].send_signal(signal.SIGKILL)
        procs[leader].wait()
        killed = time.monotonic()
        first_ok: float | None = None
        for i in range(BEFORE, BEFORE + AFTER):
            deadline = time.monotonic() + 30
            while True:
                try:
                    await js.publish(f"k8sr3.{i % 2}", str(i).encode(), headers={"Nats-Msg-Id": str(i)})
                    break
                except (nats.errors.Error, TimeoutError):
                    if time.monotonic() > deadline:
                        raise
                    await asyncio.sleep(0.2)
            if first_ok is None:
                first_ok = time.monotonic() - killed
        result["first_publish_after_kill_s"] = round(first_ok or 0.0, 2)
        info = await js.stream_info(STREAM)
        result["new_leader"] = info.cluster.leader
        result["messages_with_one_node_down"] = info.state.messages
        start(leader)
        result["rejoined_s"] = round(await wait_for("the killed node to catch up", all_current, 60), 2)
        info = await js.stream_info(STREAM)
        result["messages_after_rejoin"] = info.state.messages
        result["replicas"] = info.config.num_replicas
    finally:
        await nc.close()
    return result


def main() -> None:
    work, conf_path, auth_path, ids_path, nats_server = (Path(a) for a in sys.argv[1:6])
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    hosts = work / "hosts"
    hosts.write_text("127.0.0.1 localhost\n" + "".join(f"{ip} {dns}\n" for dns, ip in PODS.values()))
    subprocess.run(["mount", "--bind", str(hosts), "/etc/hosts"], check=True)
    commands = {pod: lay_out(work, pod, conf_path.read_text(), auth_path.read_text(), str(nats_server)) for pod in PODS}
    admin = json.loads(ids_path.read_text())["identities"]["admin"]
    procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(pod: str) -> None:
        env = {"PATH": os.environ["PATH"], "SERVER_NAME": pod}
        log = (work / f"{pod}.log").open("ab")
        procs[pod] = subprocess.Popen(commands[pod], env=env, stdout=log, stderr=log)

    try:
        result = asyncio.run(scenario(work, start, procs, admin))
    except (TimeoutError, nats.errors.Error, OSError) as exc:
        result = {"error": f"{type(exc).__name__}: {exc}"}
        result["logs"] = {p.stem: p.read_text()[-1500:] for p in work.glob("*.log")}
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
