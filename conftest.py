"""Shared session fixtures for integration and e2e tests: NATS, Redis and Postgres.

A server is found or started only when a test requests its fixture, and heavy imports happen
inside the fixtures, so unit tests pay nothing.

- `nats_server` / `nats_url`: always a private nats-server (JetStream) for the session.
- `secured_nats`: a private nats-server started from the configuration `btcbot up` generates (one user per
  identity of btcbot.contracts.access), and those users' credentials.
- `nats_cluster`: three clustered nats-server nodes (JetStream on each, the secured server's users), for one
  test module (`.ready_seconds`: its start-up time); `.url` is the comma-separated list of their client
  URLs; `.kill(name)` / `.restart(name)` a node (n1, n2, n3).
- `redis_url` / `redis_prefix`: TEST_REDIS_URL or REDIS_URL if usable, else 127.0.0.1:6379, else a
  testcontainers Redis when a Docker engine answers, else an embedded redis-server, else skip.
  Tests keep their keys under `redis_prefix` (`t-<hex>`); those keys are deleted at the end.
- `pg_admin_url` / `database_url`: TEST_DATABASE_URL or DATABASE_URL if usable, else
  127.0.0.1:5432 as user postgres, else testcontainers, else an embedded Postgres, else skip.
  `database_url` is a fresh database `btcbot_t_<hex>` dropped at the end of the session.
"""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import pytest_asyncio

if TYPE_CHECKING:
    from btcbot.devstack.infra import EmbeddedServer
    from btcbot.devstack.natscluster import NatsCluster
    from btcbot.devstack.natsusers import NatsUser

_LOCAL_REDIS_URL = "redis://127.0.0.1:6379/0"
_LOCAL_PG_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


@pytest.fixture(scope="session")
def nats_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedServer]:
    """A nats-server with JetStream for this test session, stopped at the end."""
    from btcbot.devstack.infra import start_nats

    server = start_nats(tmp_path_factory.mktemp("nats"))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def nats_url(nats_server: EmbeddedServer) -> str:
    """URL of the session's private nats-server."""
    return nats_server.url


@pytest.fixture(scope="session")
def secured_nats(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[EmbeddedServer, dict[str, NatsUser]]]:
    """A nats-server with authorization from the identity table, and each identity's credentials."""
    from btcbot.devstack.infra import start_secured_nats
    from btcbot.devstack.natsusers import IDENTITIES_FILE, load_users

    state = tmp_path_factory.mktemp("secured-nats")
    server = start_secured_nats(state)
    yield server, load_users(state / "nats" / IDENTITIES_FILE)
    server.stop()


@pytest.fixture(scope="module")
def nats_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsCluster]:
    """A three-node NATS cluster for one test module, stopped at the end."""
    from btcbot.devstack.natscluster import start_nats_cluster

    cluster = start_nats_cluster(tmp_path_factory.mktemp("nats-cluster"), 3)
    yield cluster
    cluster.stop()


async def _first_usable(
    candidates: list[tuple[str, str | None]], probe: Callable[[str], Awaitable[str | None]], reasons: list[str]
) -> str | None:
    for label, url in candidates:
        if not url:
            continue
        problem = await probe(url)
        if problem is None:
            return url
        reasons.append(f"{label}: {problem}")
    return None


def _docker_problem() -> str | None:
    """None if a Docker engine answers, else why testcontainers cannot be used."""
    try:
        import docker  # type: ignore[import-untyped]
    except ImportError:
        return "docker SDK not installed"
    try:
        client = docker.from_env(timeout=3)
        try:
            client.ping()
        finally:
            client.close()
    except Exception as exc:  # the SDK raises DockerException, requests or OS errors alike
        return f"no Docker engine: {type(exc).__name__}: {exc}"
    return None


def _embedded_state_dir(stack: ExitStack, name: str) -> Path:
    # Not tmp_path_factory: its base is mode 0700, which the `postgres` user (used when running as
    # root) cannot traverse.
    path = Path(tempfile.mkdtemp(prefix=f"btcbot-{name}-"))
    path.chmod(0o711)
    stack.callback(shutil.rmtree, path, ignore_errors=True)
    return path


Container = Callable[[], tuple[Callable[[], object], str]]


async def _find_server(
    stack: ExitStack,
    what: str,
    variables: tuple[str, ...],
    local_url: str,
    probe: Callable[[str], Awaitable[str | None]],
    container: Container,
    start_embedded: Callable[[Path], EmbeddedServer],
) -> str:
    """Env URLs, then the local default, then testcontainers (if Docker answers), then embedded; else skip."""
    from btcbot.devstack.infra import InfraError

    reasons: list[str] = []
    candidates = [(var, os.environ.get(var)) for var in variables]
    candidates.append(("local", local_url))
    url = await _first_usable(candidates, probe, reasons)
    if url is None:
        docker_problem = _docker_problem()
        if docker_problem is None:
            try:
                stop, url = container()
            except Exception as exc:  # image pull or start failure: fall through to embedded
                reasons.append(f"testcontainers: {type(exc).__name__}: {exc}")
            else:
                stack.callback(stop)
        else:
            reasons.append(docker_problem)
    if url is None:
        try:
            server = start_embedded(_embedded_state_dir(stack, what.lower()))
        except InfraError as exc:
            reasons.append(f"embedded: {exc}")
        else:
            stack.callback(server.stop)
            url = server.url
    if url is None:
        pytest.skip(f"no usable {what}: " + "; ".join(reasons))
    return url


def _redis_container() -> tuple[Callable[[], object], str]:
    from testcontainers.community.redis import RedisContainer

    container = RedisContainer("redis:7-alpine").start()
    host, port = container.get_container_host_ip(), container.get_exposed_port(6379)
    return container.stop, f"redis://{host}:{port}/0"


def _postgres_container() -> tuple[Callable[[], object], str]:
    from testcontainers.community.postgres import PostgresContainer

    container = PostgresContainer(
        "postgres:16-alpine",
        username="postgres",
        password="postgres",  # noqa: S106 (a throwaway container that only this session sees)
        dbname="postgres",
        driver=None,
    ).start()
    return container.stop, container.get_connection_url()


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def redis_url() -> AsyncIterator[str]:
    """A usable Redis URL for the session (see the module docstring for the search order)."""
    from btcbot.devstack.infra import redis_usable, start_redis

    with ExitStack() as stack:
        yield await _find_server(
            stack,
            "Redis",
            ("TEST_REDIS_URL", "REDIS_URL"),
            _LOCAL_REDIS_URL,
            redis_usable,
            _redis_container,
            start_redis,
        )


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def redis_prefix(redis_url: str) -> AsyncIterator[str]:
    """A key prefix unique to this session (`t-<hex>`); every key under it is deleted at the end."""
    from redis.asyncio import Redis

    prefix = f"t-{secrets.token_hex(6)}"
    yield prefix
    client = Redis.from_url(redis_url)
    try:
        keys = [key async for key in client.scan_iter(match=f"{prefix}*", count=500)]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def pg_admin_url() -> AsyncIterator[str]:
    """A Postgres URL allowed to create databases (see the module docstring for the search order)."""
    from btcbot.devstack.infra import pg_usable, start_postgres

    with ExitStack() as stack:
        yield await _find_server(
            stack,
            "Postgres",
            ("TEST_DATABASE_URL", "DATABASE_URL"),
            _LOCAL_PG_ADMIN_URL,
            pg_usable,
            _postgres_container,
            start_postgres,
        )


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def database_url(pg_admin_url: str) -> AsyncIterator[str]:
    """URL of a fresh database `btcbot_t_<hex>` for this session, dropped at the end."""
    from btcbot.devstack.infra import drop_database, ensure_database

    name = f"btcbot_t_{secrets.token_hex(6)}"
    url = await ensure_database(pg_admin_url, name)
    yield url
    await drop_database(pg_admin_url, name)
