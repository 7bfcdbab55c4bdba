"""docker-compose.yml's Redis, replica and Sentinel, run as real processes from their compose commands: the master
is SIGKILLed, the one Sentinel (quorum 1) promotes redis-replica with the acknowledged write, and the old master,
restarted as compose would, is turned into a replica of the new one.

The driver (compose_redis_driver.py) runs in private mount, network and PID namespaces made with `unshare` (root),
as tests/integration/test_k8s_redis_sentinel.py does for the Kubernetes scripts. Bounded: 150 s.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]

DRIVER = Path(__file__).with_name("compose_redis_driver.py")


@pytest.mark.timeout(180)
def test_the_compose_sentinel_promotes_the_replica_and_demotes_the_returning_master(tmp_path: Path, pods: Any) -> None:
    reason = pods.missing_tools("redis-server")
    if reason:
        pytest.skip(reason)
    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    commands = {
        name: [str(c) for c in services[name]["command"]] for name in ("redis", "redis-replica", "redis-sentinel")
    }
    source = tmp_path / "commands.json"
    source.write_text(json.dumps(commands))
    result = pods.run_driver(DRIVER, str(tmp_path), str(source), timeout=150)
    print(
        f"compose Redis Sentinel failover: redis-replica promoted {result['failover_s']} s after redis was SIGKILLed; "
        f"the restarted redis followed it after {result['rejoined_s']} s"
    )
    assert result["acked_by_replica"] == 1
    assert result["master_before"] == "redis"
    assert result["claim_after_failover"] == "placed-once"
    assert 4 < result["failover_s"] < 30
    assert result["old_master_role"] == "slave"
