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
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.integration

DRIVER = Path(__file__).with_name("k8s_redis_driver.py")


@pytest.mark.timeout(180)
def test_the_k8s_sentinels_fail_over_and_the_old_master_comes_back_as_a_replica(tmp_path: Path, pods: Any) -> None:
    reason = pods.missing_tools("redis-server", "redis-cli", "timeout")
    if reason:
        pytest.skip(reason)
    (scripts,) = [
        d["data"] for d in pods.rendered_prod() if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "redis-scripts"
    ]
    source = tmp_path / "scripts.json"
    source.write_text(json.dumps(scripts))
    result = pods.run_driver(DRIVER, str(tmp_path), str(source), timeout=150)
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
