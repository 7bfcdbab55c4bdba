"""How many of each thing `btcbot up` runs: NATS nodes, stream replicas and service replicas.

`--nats-cluster N` starts N clustered NATS nodes (N >= 3, so a majority survives losing one) and keeps every
stream on min(N, 3) of them (JetStream R3) unless BTCBOT_STREAM_REPLICAS says otherwise; `--replicas R` runs R
processes of every service, each with its own BTCBOT_INSTANCE (`risk-1`, `risk-2`) and health port. With R = 1
the children keep their plain names (`risk`), as before.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from dataclasses import dataclass

from btcbot.runtime.errors import SettingsError
from btcbot.runtime.jetstream import STREAM_REPLICAS_VARIABLE, stream_replicas

MAX_NATS_NODES = 7
MAX_SERVICE_REPLICAS = 4


def nats_cluster_size(text: str) -> int:
    """argparse type of --nats-cluster: 3 to 7 nodes."""
    if not text.strip().isdigit() or not 3 <= int(text) <= MAX_NATS_NODES:
        raise argparse.ArgumentTypeError(f"expected 3 to {MAX_NATS_NODES} nodes, got {text!r}")
    return int(text)


def service_replicas(text: str) -> int:
    """argparse type of --replicas: 1 to 4 processes per service."""
    if not text.strip().isdigit() or not 1 <= int(text) <= MAX_SERVICE_REPLICAS:
        raise argparse.ArgumentTypeError(f"expected 1 to {MAX_SERVICE_REPLICAS} replicas, got {text!r}")
    return int(text)


@dataclass(frozen=True)
class Topology:
    """NATS nodes (0: one server, ours or the environment's), stream replicas (None: existing streams keep
    theirs, new ones get 1), processes per service."""

    nats_nodes: int = 0
    stream_replicas: int | None = None
    service_replicas: int = 1

    def children(self, service: str) -> list[str]:
        """The supervisor's names of a service's processes (also their BTCBOT_INSTANCE)."""
        if self.service_replicas == 1:
            return [service]
        return [f"{service}-{i}" for i in range(1, self.service_replicas + 1)]

    def describe(self) -> str:
        """One startup line."""
        nats = f"NATS cluster of {self.nats_nodes}" if self.nats_nodes else "one NATS server"
        streams = f"R{self.stream_replicas}" if self.stream_replicas else "as found (new ones R1)"
        return f"topology: {nats}, streams {streams}, {self.service_replicas} replica(s) per service"


def plan_topology(nats_nodes: int, replicas: int, env: Mapping[str, str]) -> Topology:
    """The topology asked for; SettingsError (one line) if it cannot work."""
    if nats_nodes and (env.get("NATS_URL") or "").strip():
        raise SettingsError("--nats-cluster starts its own NATS nodes: unset NATS_URL, or drop --nats-cluster")
    given = stream_replicas(env)
    streams = given if given is not None else (min(nats_nodes, 3) if nats_nodes else None)
    if streams is not None and streams > max(nats_nodes, 1) and not (env.get("NATS_URL") or "").strip():
        raise SettingsError(
            f"{STREAM_REPLICAS_VARIABLE}={streams} needs a NATS cluster of at least {streams} nodes (--nats-cluster)"
        )
    return Topology(nats_nodes, streams, replicas)
