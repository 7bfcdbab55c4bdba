"""`btcbot up --nats-cluster N --replicas R`: what runs (btcbot.cli.topology), and the flags' checks."""

from __future__ import annotations

import argparse

import pytest

from btcbot.cli.commands.up import add_arguments
from btcbot.cli.topology import Topology, nats_cluster_size, plan_topology, service_replicas
from btcbot.runtime.errors import SettingsError


def test_a_cluster_keeps_streams_on_three_nodes_and_names_each_replica() -> None:
    shape = plan_topology(3, 2, {})
    assert shape == Topology(nats_nodes=3, stream_replicas=3, service_replicas=2)
    assert shape.children("risk") == ["risk-1", "risk-2"]
    assert "NATS cluster of 3, streams R3, 2 replica(s)" in shape.describe()
    assert plan_topology(5, 1, {}).stream_replicas == 3


def test_the_default_is_one_server_one_replica_and_plain_names() -> None:
    shape = plan_topology(0, 1, {})
    assert shape == Topology()
    assert shape.stream_replicas is None  # existing streams keep theirs: `up` against a given cluster shrinks none
    assert shape.children("ledger") == ["ledger"]


def test_stream_replicas_from_the_environment_win_and_are_checked() -> None:
    assert plan_topology(3, 1, {"BTCBOT_STREAM_REPLICAS": "1"}).stream_replicas == 1
    with pytest.raises(SettingsError, match="BTCBOT_STREAM_REPLICAS=3 needs a NATS cluster"):
        plan_topology(0, 1, {"BTCBOT_STREAM_REPLICAS": "3"})
    with pytest.raises(SettingsError, match="BTCBOT_STREAM_REPLICAS"):
        plan_topology(3, 1, {"BTCBOT_STREAM_REPLICAS": "x"})


def test_a_cluster_is_refused_when_nats_url_names_a_server() -> None:
    with pytest.raises(SettingsError, match="unset NATS_URL"):
        plan_topology(3, 2, {"NATS_URL": "nats://127.0.0.1:4222"})


@pytest.mark.parametrize(
    ("argv", "error"),
    [
        (["--nats-cluster", "2"], "expected 3 to 7 nodes"),
        (["--nats-cluster", "x"], "expected 3 to 7 nodes"),
        (["--replicas", "0"], "expected 1 to 4 replicas"),
        (["--replicas", "9"], "expected 1 to 4 replicas"),
    ],
)
def test_bad_flags_are_one_line(argv: list[str], error: str, capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser(prog="btcbot up")
    add_arguments(parser)
    with pytest.raises(SystemExit):
        parser.parse_args(argv)
    assert error in capsys.readouterr().err
    parsed = parser.parse_args(["--nats-cluster", "3", "--replicas", "2"])
    assert (parsed.nats_cluster, parsed.replicas) == (3, 2)
    assert (nats_cluster_size("3"), service_replicas("2")) == (3, 2)
