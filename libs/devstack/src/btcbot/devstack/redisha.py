"""A local Redis master, its replicas and Sentinels on free loopback ports: what tests (and operators trying
failover on one machine) run to see the kit follow a promotion.

Each server has an fsync-always AOF, so a killed and restarted node comes back with its keys (and Sentinel then
turns it into a replica of whoever is master by then). Sentinels rewrite their own config files, kept here.
"""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass, field
from pathlib import Path

import redis

from btcbot.devstack.procs import ManagedProcess, MissingBinaryError, find_executable, free_port

LOCALHOST = "127.0.0.1"
MASTER_NAME = "btcbot"


def sentinel_config(port: int, master_name: str, master_port: int, quorum: int, down_after_ms: int) -> str:
    """The config file of one Sentinel watching the master at 127.0.0.1:master_port."""
    return "\n".join([
        f"port {port}",
        f"bind {LOCALHOST}",
        "daemonize no",
        f"sentinel monitor {master_name} {LOCALHOST} {master_port} {quorum}",
        f"sentinel down-after-milliseconds {master_name} {down_after_ms}",
        f"sentinel failover-timeout {master_name} {max(3 * down_after_ms, 3000)}",
        f"sentinel parallel-syncs {master_name} 1",
        "",
    ])  # fmt: skip


def _answer(port: int, command: bytes) -> bytes:
    try:
        with socket.create_connection((LOCALHOST, port), timeout=0.5) as sock:
            sock.sendall(command)
            return sock.recv(4096)
    except OSError:
        return b""


def pings(port: int) -> bool:
    """True when a Redis server or Sentinel answers PING on the port."""
    return _answer(port, b"PING\r\n").startswith(b"+PONG")


@dataclass
class RedisNode:
    """One redis-server (data node or Sentinel) that can be killed and started again on the same port."""

    name: str
    port: int
    process: ManagedProcess

    def start(self, timeout: float = 10.0) -> None:
        """Start (again) and wait until it answers PING."""
        self.process.start()
        self.process.wait_ready(lambda: pings(self.port), timeout)

    def kill(self) -> None:
        """SIGKILL, and wait for the exit."""
        self.process.kill()
        self.process.stop(timeout=5)

    @property
    def url(self) -> str:
        """redis://127.0.0.1:port/0."""
        return f"redis://{LOCALHOST}:{self.port}/0"


@dataclass
class RedisGroup:
    """A master, `replicas` replicas of it and `sentinels` Sentinels (quorum: a majority), all local."""

    base: Path
    replicas: int = 1
    sentinels: int = 3
    down_after_ms: int = 1000
    master_name: str = MASTER_NAME
    data: list[RedisNode] = field(default_factory=list)
    watchers: list[RedisNode] = field(default_factory=list)

    def start(self, timeout: float = 15.0) -> RedisGroup:
        """Start every node; returns when each replica finished its first sync and every Sentinel sees them."""
        binary = find_executable("redis-server")
        if binary is None:
            raise MissingBinaryError("redis-server not found on PATH: install Redis (apt-get install redis-server)")
        self.base.mkdir(parents=True, exist_ok=True)
        master_port = 0
        for index in range(1 + self.replicas):
            name = "redis-master" if index == 0 else f"redis-replica-{index}"
            port = free_port()
            master_port = master_port or port
            directory = self.base / name
            directory.mkdir(exist_ok=True)
            log = directory / "redis.log"
            args: list[str | Path] = [binary, "--port", str(port), "--bind", LOCALHOST, "--save", "",
                    "--appendonly", "yes", "--appendfsync", "always", "--dir", directory, "--logfile", log,
                    "--daemonize", "no", "--repl-diskless-sync-delay", "0"]  # fmt: skip
            if index:
                args += ["--replicaof", LOCALHOST, str(master_port)]
            node = RedisNode(name, port, ManagedProcess(name, args, log))
            node.start(timeout)
            self.data.append(node)
        master = self.data[0]
        master.process.wait_ready(lambda: self.online_replicas(master) >= self.replicas, timeout)
        for index in range(self.sentinels):
            name = f"sentinel-{index}"
            port = free_port()
            directory = self.base / name
            directory.mkdir(exist_ok=True)
            config = directory / "sentinel.conf"
            quorum = self.sentinels // 2 + 1
            config.write_text(sentinel_config(port, self.master_name, master_port, quorum, self.down_after_ms))
            log = directory / "sentinel.log"
            args = [binary, config, "--sentinel", "--dir", directory, "--logfile", log]
            node = RedisNode(name, port, ManagedProcess(name, args, log))
            node.start(timeout)
            self.watchers.append(node)
        for node in self.watchers:
            node.process.wait_ready(lambda node=node: self.sees_replicas(node), timeout)  # type: ignore[misc]
        return self

    def online_replicas(self, master: RedisNode) -> int:
        """How many replicas acknowledge a write now (WAIT; after a diskless sync a replica streams only once its
        first ACK arrived, up to a second after the master calls it in sync)."""
        with redis.Redis(host=LOCALHOST, port=master.port, socket_timeout=2) as client:
            try:
                client.set("btcbot:redisha:probe", "1")
                return int(client.wait(self.replicas, 200))
            except redis.RedisError:
                return 0

    def sees_replicas(self, sentinel: RedisNode) -> bool:
        """True once the Sentinel lists as many replicas as the group has."""
        text = _answer(sentinel.port, f"SENTINEL REPLICAS {self.master_name}\r\n".encode())
        return text.startswith(b"*") and int(text[1:].split(b"\r\n", 1)[0] or 0) >= self.replicas

    @property
    def sentinel_addresses(self) -> list[tuple[str, int]]:
        """(host, port) of every Sentinel."""
        return [(LOCALHOST, node.port) for node in self.watchers]

    @property
    def sentinels_setting(self) -> str:
        """The REDIS_SENTINELS value for this group."""
        return ",".join(f"{host}:{port}" for host, port in self.sentinel_addresses)

    def env(self, min_replicas_ack: int = 1) -> dict[str, str]:
        """What a service needs to use this group: REDIS_SENTINELS, REDIS_SENTINEL_MASTER, REDIS_MIN_REPLICAS_ACK."""
        return {
            "REDIS_URL": f"redis://{LOCALHOST}:{self.data[0].port}/0",
            "REDIS_SENTINELS": self.sentinels_setting,
            "REDIS_SENTINEL_MASTER": self.master_name,
            "REDIS_MIN_REPLICAS_ACK": str(min_replicas_ack),
        }

    def master_port(self) -> int | None:
        """The port the Sentinels' majority names as master now (None if none answers)."""
        votes: dict[int, int] = {}
        for node in self.watchers:
            text = _answer(node.port, f"SENTINEL GET-MASTER-ADDR-BY-NAME {self.master_name}\r\n".encode())
            parts = text.split(b"\r\n")
            if len(parts) >= 5 and parts[4].isdigit():
                votes[int(parts[4])] = votes.get(int(parts[4]), 0) + 1
        if not votes:
            return None
        port, count = max(votes.items(), key=lambda item: item[1])
        return port if count > len(self.watchers) // 2 else None

    def master(self) -> RedisNode:
        """The data node the Sentinels name master."""
        port = self.master_port()
        for node in self.data:
            if node.port == port:
                return node
        raise LookupError(f"no Sentinel majority names a master of {self.master_name}")

    @property
    def url(self) -> str:
        """The current master's URL (for tools that read Redis directly, e.g. `btcbot verify`)."""
        return self.master().url

    def wait_failover(self, old_port: int, timeout: float = 20.0) -> RedisNode:
        """Wait until the Sentinels name a master other than `old_port` and it accepts writes; returns it."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            port = self.master_port()
            if port is not None and port != old_port and b"role:master" in _answer(port, b"INFO replication\r\n"):
                return next(node for node in self.data if node.port == port)
            time.sleep(0.1)
        raise TimeoutError(f"no failover away from port {old_port} within {timeout:.0f} s")

    def stop(self) -> None:
        """Stop every node (Sentinels first, so none fails over while the data nodes go)."""
        for node in [*self.watchers, *self.data]:
            node.process.stop(timeout=5)
