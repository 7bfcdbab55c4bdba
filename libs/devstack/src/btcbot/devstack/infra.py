"""Local infrastructure for `btcbot up` and tests: use the servers that answer, embed the rest.

For each of NATS, Redis and Postgres, in order:
1. the URL in the environment (NATS_URL, REDIS_URL, DATABASE_URL) when set; an unusable one is an
   error, because an operator who names a server means that server;
2. the conventional local server, if usable (for Postgres a `btcbot` database is created on it);
3. an embedded server started in the state directory.

Exceptions (from `btcbot.devstack.procs`)::

    InfraError                  infrastructure cannot be found, reached or started
    ├── MissingBinaryError      a server binary is not installed (the message says what to install)
    └── ServerStartError        a server process exited or did not become ready in time
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from btcbot.devstack.embedded import find_postgres_bindir, start_nats, start_postgres, start_redis, start_secured_nats
from btcbot.devstack.endpoints import parse_version, redact_url, version_reason
from btcbot.devstack.natscluster import NatsCluster, start_nats_cluster
from btcbot.devstack.probes import (
    MIN_NATS_VERSION,
    MIN_POSTGRES_VERSION,
    MIN_REDIS_VERSION,
    drop_database,
    ensure_database,
    nats_usable,
    pg_usable,
    redis_usable,
)
from btcbot.devstack.procs import (
    EmbeddedServer,
    InfraError,
    MissingBinaryError,
    ServerStartError,
    find_executable,
    free_port,
)
from btcbot.runtime.jetstream import NatsAuth

__all__ = [
    "DEFAULT_DATABASE_NAME",
    "DEFAULT_NATS_URL",
    "DEFAULT_PG_ADMIN_URL",
    "DEFAULT_REDIS_URL",
    "MIN_NATS_VERSION",
    "MIN_POSTGRES_VERSION",
    "MIN_REDIS_VERSION",
    "Dependency",
    "EmbeddedServer",
    "Infra",
    "InfraError",
    "MissingBinaryError",
    "ServerStartError",
    "drop_database",
    "ensure_database",
    "find_executable",
    "find_postgres_bindir",
    "free_port",
    "nats_usable",
    "parse_version",
    "pg_usable",
    "redact_url",
    "redis_usable",
    "resolve_infra",
    "start_nats",
    "start_postgres",
    "start_redis",
    "start_secured_nats",
    "version_reason",
]

DEFAULT_NATS_URL = "nats://127.0.0.1:4222"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
DEFAULT_PG_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
DEFAULT_DATABASE_NAME = "btcbot"

Probe = Callable[[str], Awaitable[str | None]]


@dataclass(frozen=True)
class Dependency:
    """Where one dependency lives, whether we started it, and why it was chosen."""

    name: str
    url: str
    embedded: bool
    reason: str

    def describe(self) -> str:
        """One startup line, e.g. `NATS: nats://127.0.0.1:40615 (embedded: ...)`; passwords masked."""
        kind = "embedded" if self.embedded else "external"
        return f"{self.name}: {redact_url(self.url)} ({kind}; {self.reason})"


@dataclass
class Infra:
    """The resolved NATS, Redis and Postgres; `stop()` stops only the servers started here."""

    nats: Dependency
    redis: Dependency
    postgres: Dependency
    servers: list[EmbeddedServer | NatsCluster] = field(default_factory=list)

    @property
    def nats_url(self) -> str:
        """The NATS URL services connect to."""
        return self.nats.url

    @property
    def redis_url(self) -> str:
        """The Redis URL services connect to."""
        return self.redis.url

    @property
    def database_url(self) -> str:
        """The URL of the application database."""
        return self.postgres.url

    def describe(self) -> list[str]:
        """One line per dependency for the startup printout."""
        return [dep.describe() for dep in (self.nats, self.redis, self.postgres)]

    def env(self) -> dict[str, str]:
        """Environment variables that point child processes at these servers."""
        return {"NATS_URL": self.nats_url, "REDIS_URL": self.redis_url, "DATABASE_URL": self.database_url}

    def stop(self) -> None:
        """Stop the embedded servers, the last started first; safe to call twice."""
        while self.servers:
            self.servers.pop().stop()


async def resolve_infra(
    state_dir: Path,
    env: Mapping[str, str],
    *,
    database: str = DEFAULT_DATABASE_NAME,
    secure_nats: bool = False,
    nats_auth: NatsAuth | None = None,
    nats_cluster: int = 0,
) -> Infra:
    """Find or start NATS, Redis and Postgres as described in the module docstring.

    Raises InfraError when an environment URL is set but unusable, or an embedded server cannot start;
    servers already started by this call are stopped first. `secure_nats`: an embedded NATS admits only the
    identities of btcbot.contracts.access (credentials in `<state_dir>/nats/nats-identities.json`);
    `nats_auth`: the identity that probes a NATS named by NATS_URL (one with authorization on);
    `nats_cluster`: start that many clustered NATS nodes (natscluster.py) rather than use a local server.
    """
    start_nats_server: Callable[[Path], EmbeddedServer | NatsCluster] = (
        partial(start_nats_cluster, size=nats_cluster, secured=secure_nats)
        if nats_cluster
        else (start_secured_nats if secure_nats else start_nats)
    )
    specs = [
        _Spec(
            "NATS",
            "NATS_URL",
            DEFAULT_NATS_URL,
            partial(nats_usable, auth=nats_auth),
            start_nats_server,
            use_local=not nats_cluster,
        ),
        _Spec("Redis", "REDIS_URL", DEFAULT_REDIS_URL, redis_usable, start_redis),
        _Spec("Postgres", "DATABASE_URL", DEFAULT_PG_ADMIN_URL, pg_usable, start_postgres),
    ]
    configured = {spec.variable: env.get(spec.variable, "").strip() for spec in specs}
    # Check every URL the operator named before starting anything, so a typo fails fast.
    for spec in specs:
        url = configured[spec.variable]
        if url and (problem := await spec.probe(url)) is not None:
            raise InfraError(f"{spec.variable} is set but not usable: {problem}")
    started: list[EmbeddedServer | NatsCluster] = []
    try:
        nats, redis, postgres = [await _resolve(spec, configured[spec.variable], state_dir, started) for spec in specs]
        if not configured["DATABASE_URL"]:
            # A server we picked ourselves: the application gets its own database on it.
            url = await ensure_database(postgres.url, database)
            postgres = Dependency(postgres.name, url, postgres.embedded, postgres.reason)
    except BaseException:
        for server in reversed(started):
            server.stop()
        raise
    return Infra(nats=nats, redis=redis, postgres=postgres, servers=started)


@dataclass(frozen=True)
class _Spec:
    name: str
    variable: str
    default_url: str
    probe: Probe
    start: Callable[[Path], EmbeddedServer | NatsCluster]
    use_local: bool = True  # False: always start our own (a cluster cannot be the one local server)


async def _resolve(
    spec: _Spec, configured: str, state_dir: Path, started: list[EmbeddedServer | NatsCluster]
) -> Dependency:
    if configured:
        return Dependency(spec.name, configured, embedded=False, reason=f"from {spec.variable}")
    problem = await spec.probe(spec.default_url) if spec.use_local else None
    if problem is None and spec.use_local:
        reason = f"{spec.variable} unset; local server answers"
        return Dependency(spec.name, spec.default_url, embedded=False, reason=reason)
    server = await _start_in_thread(spec.start, state_dir)
    started.append(server)
    reason = f"{spec.variable} unset and the local default is not usable: {problem}"
    if isinstance(server, NatsCluster):
        reason = f"{len(server.nodes)}-node cluster ready in {server.ready_seconds:.1f}s"
    reason += f"; pid {server.pid}, log {server.log_path}"
    return Dependency(spec.name, server.url, embedded=True, reason=reason)


async def _start_in_thread(
    start: Callable[[Path], EmbeddedServer | NatsCluster], state_dir: Path
) -> EmbeddedServer | NatsCluster:
    """Run a blocking start in a thread; if we are cancelled meanwhile, stop the server once it is up."""
    task = asyncio.ensure_future(asyncio.to_thread(start, state_dir))
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        # A thread cannot be interrupted: let the start finish so its server is not orphaned.
        with contextlib.suppress(Exception):
            server = await task
            await asyncio.to_thread(server.stop)
        raise
