"""The three-node NATS cluster (btcbot.devstack.natscluster) and stream replicas (BTCBOT_STREAM_REPLICAS)."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

import pytest

from btcbot.contracts.streams import ALL_STREAMS, EXECUTION
from btcbot.devstack.natscluster import meta_leader, node_args, node_name, streams_and_leaders
from btcbot.devstack.natsusers import IDENTITIES_FILE, load_users, user_auth
from btcbot.runtime.errors import SettingsError
from btcbot.runtime.jetstream import connect, provision, server_urls, stream_config, stream_replicas

if TYPE_CHECKING:
    from btcbot.devstack.natscluster import NatsCluster


def test_stream_replicas_is_unset_by_default_and_reads_the_variable() -> None:
    assert stream_replicas({}) is None
    assert stream_replicas({"BTCBOT_STREAM_REPLICAS": " 3 "}) == 3
    assert stream_config(EXECUTION, 3).num_replicas == 3


@pytest.mark.parametrize("raw", ["0", "6", "three", "-1", "2.5"])
def test_a_bad_stream_replicas_is_one_line_naming_the_variable(raw: str) -> None:
    with pytest.raises(SettingsError) as caught:
        stream_replicas({"BTCBOT_STREAM_REPLICAS": raw})
    message = str(caught.value)
    assert "BTCBOT_STREAM_REPLICAS" in message
    assert "\n" not in message


def test_nats_url_may_list_several_servers() -> None:
    assert server_urls("nats://a:1, nats://b:2,nats://c:3") == ["nats://a:1", "nats://b:2", "nats://c:3"]
    assert server_urls("nats://a:1") == ["nats://a:1"]
    with pytest.raises(SettingsError, match="NATS_URL"):
        server_urls(" , ")


def test_node_flags_route_to_every_other_node() -> None:
    args = node_args(1, [7001, 7002, 7003])
    assert args[args.index("--name") + 1] == node_name(1) == "n2"
    assert args[args.index("--cluster") + 1] == "nats://127.0.0.1:7002"
    assert args[args.index("--routes") + 1] == "nats://127.0.0.1:7001,nats://127.0.0.1:7003"
    assert meta_leader({"meta_cluster": {"leader": "n3"}}) == "n3"
    assert meta_leader({"meta_cluster": {}}) is None
    assert meta_leader({}) is None
    jsz = {"account_details": [{"stream_detail": [{"name": "A", "cluster": {"leader": "n1"}}, {"name": "B"}]}]}
    assert streams_and_leaders(jsz) == {"A": "n1", "B": None}
    assert streams_and_leaders({}) == {}


@pytest.mark.integration
async def test_streams_become_r3_and_survive_their_leader_being_killed(
    nats_cluster: NatsCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Provision R1, then R3 over it (an update in place); a provisioning without BTCBOT_STREAM_REPLICAS leaves R3
    alone; kill the leader of EXECUTION: publishing resumes on the new leader within seconds, nothing
    acknowledged is lost, and the node comes back current."""
    users = load_users(nats_cluster.config.parent / IDENTITIES_FILE)
    nc = await connect(nats_cluster.url, "cluster-test", 10, auth=user_auth(users["admin"]))
    try:
        js = nc.jetstream(timeout=2)
        await provision(js, ALL_STREAMS, replicas=1)
        await provision(js, ALL_STREAMS, replicas=3)
        monkeypatch.delenv("BTCBOT_STREAM_REPLICAS", raising=False)
        await provision(js, ALL_STREAMS)  # a tool without the variable: the cluster's R3 streams stay R3
        monkeypatch.setenv("BTCBOT_STREAM_REPLICAS", "seven")
        with pytest.raises(SettingsError, match="BTCBOT_STREAM_REPLICAS"):
            await provision(js, ALL_STREAMS)
        monkeypatch.delenv("BTCBOT_STREAM_REPLICAS")
        deadline = time.monotonic() + 20
        while True:
            info = await js.stream_info(EXECUTION.name)
            peers = [r for r in info.cluster.replicas or [] if r.current]
            if info.config.num_replicas == 3 and info.cluster.leader and len(peers) == 2:
                break
            assert time.monotonic() < deadline, f"EXECUTION never had three current peers: {info.cluster}"
            await asyncio.sleep(0.2)
        before = info.state.messages
        subject = "exec.filled.BTCTRY"
        for i in range(50):
            await js.publish(subject, b"x", headers={"Nats-Msg-Id": f"cluster-test-a-{i}"})
        leader = info.cluster.leader
        assert leader is not None
        killed_at = time.monotonic()
        nats_cluster.kill(leader)
        # The first publish that succeeds after the kill: the new leader was elected and the client failed over.
        while True:
            try:
                await js.publish(subject, b"x", headers={"Nats-Msg-Id": "cluster-test-b-0"}, timeout=1)
                break
            except Exception:  # timeouts and no-responders while the group elects
                assert time.monotonic() - killed_at < 15, "no publish succeeded within 15 s of killing the leader"
                await asyncio.sleep(0.1)
        failover = time.monotonic() - killed_at
        for i in range(1, 50):
            await js.publish(subject, b"x", headers={"Nats-Msg-Id": f"cluster-test-b-{i}"})
        info = await js.stream_info(EXECUTION.name)
        assert info.cluster.leader not in (None, leader)
        assert info.state.messages == before + 100
        rejoin = nats_cluster.restart(leader)
        print(
            f"cluster ready {nats_cluster.ready_seconds:.2f}s; publish failover {failover:.2f}s; rejoin {rejoin:.2f}s"
        )
        assert failover < 10
    finally:
        await nc.close()
