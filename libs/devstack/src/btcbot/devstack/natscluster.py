"""A NATS cluster on one machine: N nats-server processes routed to each other over loopback, JetStream on each.

Each node keeps its own store (`<state>/node-<i>/nats/jetstream`) and is started with the same configuration
file as the single server (`start_secured_nats`: one user per identity, `sync_interval: always`), plus the
flags that make it a cluster member (server name, cluster listen port, routes to the others). Client ports are
fixed at the first start, so a node killed and started again answers where its clients (and the URL list they
were given) expect it.

The cluster is ready when every node reports the same JetStream meta leader (the Raft group that places
streams has elected one), its /healthz says its JetStream state is current, and every stream has a leader
(on stores that already hold streams: their groups have recovered); a restarted node is ready when its
/healthz says so.
"""

from __future__ import annotations

import json
import signal
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from btcbot.devstack.embedded import LOCALHOST, start_nats
from btcbot.devstack.natsusers import (
    IDENTITIES_FILE,
    SERVER_CONFIG_FILE,
    generate_users,
    load_users,
    save_users,
    server_config,
    write_private,
)
from btcbot.devstack.procs import EmbeddedServer, InfraError, ServerStartError, free_port

CLUSTER_NAME = "btcbot"
MIN_NODES = 3  # JetStream needs a majority: fewer than three nodes cannot lose one


def node_name(index: int) -> str:
    """The server name of node `index` (0-based): n1, n2, n3. Stream leaders are reported by this name."""
    return f"n{index + 1}"


def node_args(index: int, cluster_ports: list[int]) -> list[str]:
    """The flags that make a nats-server node `index` of a cluster routed over these cluster ports."""
    routes = ",".join(f"nats://{LOCALHOST}:{port}" for i, port in enumerate(cluster_ports) if i != index)
    return [
        "--name",
        node_name(index),
        "--cluster_name",
        CLUSTER_NAME,
        "--cluster",
        f"nats://{LOCALHOST}:{cluster_ports[index]}",
        "--routes",
        routes,
    ]


def meta_leader(jsz: dict[str, object]) -> str | None:
    """The JetStream meta leader a node's /jsz reports (None while there is none)."""
    meta = jsz.get("meta_cluster")
    if not isinstance(meta, dict):
        return None
    leader = meta.get("leader")
    return str(leader) if leader else None


@dataclass
class NatsNode:
    """One member: where it keeps its store, its fixed ports, and its current process (None while down)."""

    index: int
    state_dir: Path
    client_port: int
    server: EmbeddedServer | None = None

    @property
    def name(self) -> str:
        """Its server name (n1, n2, ...)."""
        return node_name(self.index)

    @property
    def url(self) -> str:
        """Its client URL."""
        return f"nats://{LOCALHOST}:{self.client_port}"


@dataclass
class NatsCluster:
    """A running cluster; `url` is the comma-separated client URLs (what NATS_URL holds). `stop()` is idempotent."""

    nodes: list[NatsNode]
    config: Path
    cluster_ports: list[int]
    ready_seconds: float = 0.0
    restarts: list[tuple[str, float]] = field(default_factory=list)

    @property
    def url(self) -> str:
        """Every node's client URL, comma-separated: clients fail over between them."""
        return ",".join(node.url for node in self.nodes)

    @property
    def pid(self) -> int:
        """The first live node's pid (what a startup line shows)."""
        return next((n.server.pid for n in self.nodes if n.server is not None and n.server.running), 0)

    @property
    def log_path(self) -> Path:
        """The first node's log (the others lie next to theirs)."""
        server = self.nodes[0].server
        return server.log_path if server is not None else self.nodes[0].state_dir / "nats" / "nats-server.log"

    @property
    def name(self) -> str:
        return "nats-cluster"

    @property
    def running(self) -> bool:
        """True while every node runs."""
        return all(n.server is not None and n.server.running for n in self.nodes)

    def node(self, name: str) -> NatsNode:
        """The node of a server name (n1 ...)."""
        for node in self.nodes:
            if node.name == name:
                return node
        raise KeyError(f"no node {name!r} in this cluster")

    def kill(self, name: str) -> None:
        """SIGKILL a node (no lame-duck, no goodbye to its routes) and wait for it to be gone."""
        node = self.node(name)
        if node.server is None:
            return
        node.server.process.send_signal(signal.SIGKILL)
        node.server.process.stop(5.0)
        node.server = None

    def restart(self, name: str, timeout: float = 30.0) -> float:
        """Start a stopped node again on its own ports and store; returns seconds until it reports itself current."""
        node = self.node(name)
        if node.server is not None:
            raise InfraError(f"node {name} is still running")
        started = time.monotonic()
        node.server = _start_node(node, self.config, self.cluster_ports, timeout)
        _wait(lambda: _healthy(node.server), timeout, f"node {name} did not report JetStream current")
        took = time.monotonic() - started
        self.restarts.append((name, took))
        return took

    def stop(self, timeout: float = 10.0) -> None:
        """Stop every node still running (SIGTERM, SIGKILL after `timeout`)."""
        for node in reversed(self.nodes):
            server, node.server = node.server, None
            if server is not None:
                server.stop(timeout)

    def __repr__(self) -> str:
        return f"NatsCluster({self.url})"


def start_nats_cluster(state_dir: Path, size: int = 3, timeout: float = 30.0, *, secured: bool = True) -> NatsCluster:
    """Start `size` clustered nats-server nodes under `state_dir` and wait for a JetStream meta leader.

    `secured`: the single secured server's users and permissions (credentials in `<state>/nats/`), as `btcbot up`
    runs it; otherwise no authorization (JetStream `sync_interval: always` either way).
    """
    if size < MIN_NODES:
        raise InfraError(f"a NATS cluster needs at least {MIN_NODES} nodes (a majority must survive one loss)")
    base = state_dir / "nats"
    config = base / SERVER_CONFIG_FILE
    if secured:
        users_path = base / IDENTITIES_FILE
        users = generate_users(existing=load_users(users_path) if users_path.exists() else None)
        save_users(users_path, users)
        write_private(config, server_config(users))
    else:
        write_private(config, "jetstream {\n  sync_interval: always\n}\n")
    cluster_ports = [free_port() for _ in range(size)]
    nodes = [NatsNode(i, state_dir / f"node-{i + 1}", free_port()) for i in range(size)]
    cluster = NatsCluster(nodes, config, cluster_ports)
    started = time.monotonic()
    try:
        for node in nodes:
            node.server = _start_node(node, config, cluster_ports, timeout)
        _wait(lambda: _agreed_leader(cluster) is not None, timeout, "the NATS cluster elected no JetStream leader")
        # On stores that hold streams (a restarted run): until every node has them current, requests time out.
        current = "the NATS nodes did not report JetStream current with a leader for every stream"
        _wait(lambda: all(_healthy(n.server) for n in nodes) and _streams_led(cluster), timeout, current)
    except BaseException:
        cluster.stop()
        raise
    cluster.ready_seconds = time.monotonic() - started
    return cluster


def _start_node(node: NatsNode, config: Path, cluster_ports: list[int], timeout: float) -> EmbeddedServer:
    return start_nats(
        node.state_dir, timeout, config, port=node.client_port, extra_args=node_args(node.index, cluster_ports)
    )


def _jsz(server: EmbeddedServer | None, path: str = "/jsz") -> tuple[int, dict[str, object]]:
    if server is None or server.monitor_url is None:
        return 0, {}
    try:
        with urllib.request.urlopen(server.monitor_url.rstrip("/") + path, timeout=1.0) as response:  # noqa: S310
            return int(response.status), json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, {}
    except (OSError, ValueError):
        return 0, {}


def _agreed_leader(cluster: NatsCluster) -> str | None:
    leaders = {meta_leader(_jsz(node.server)[1]) for node in cluster.nodes}
    return leaders.pop() if len(leaders) == 1 else None


def streams_and_leaders(jsz: dict[str, object]) -> dict[str, str | None]:
    """Stream name -> its leader's server name (None while it has none), from a node's /jsz with stream details."""
    found: dict[str, str | None] = {}
    accounts = jsz.get("account_details")
    for account in accounts if isinstance(accounts, list) else []:
        for stream in account.get("stream_detail") or []:
            leader = (stream.get("cluster") or {}).get("leader")
            found[str(stream.get("name"))] = str(leader) if leader else None
    return found


def _streams_led(cluster: NatsCluster) -> bool:
    """Every node lists the same streams and each has a leader (after a restart of the whole cluster the stream
    groups elect theirs only after the nodes report healthy; until then JetStream requests time out)."""
    views = []
    for node in cluster.nodes:
        status, jsz = _jsz(node.server, "/jsz?accounts=true&streams=true")
        if status != 200:
            return False
        views.append(streams_and_leaders(jsz))
    names = set(views[0])
    return all(set(view) == names and all(view.values()) for view in views)


def _healthy(server: EmbeddedServer | None) -> bool:
    return _jsz(server, "/healthz")[0] == 200


def _wait(check: Callable[[], bool], timeout: float, failure: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise ServerStartError(f"{failure} within {timeout:.0f}s")
