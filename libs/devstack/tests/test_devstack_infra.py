"""Tests of local infrastructure discovery and embedded servers (btcbot.devstack.infra and helpers)."""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import nats
import pytest
from nats.js.api import StreamConfig
from redis.asyncio import Redis

from btcbot.devstack import infra
from btcbot.devstack.embedded import find_postgres_bindir
from btcbot.devstack.endpoints import (
    check_database_name,
    parse_nats_ports_file,
    parse_version,
    postmaster_ready,
    redact_url,
    version_reason,
    with_database,
)
from btcbot.devstack.infra import _start_in_thread
from btcbot.devstack.procs import EmbeddedServer, ManagedProcess, find_executable, free_port, log_tail, running_pid

LOCAL_NATS = "nats://127.0.0.1:4222"
LOCAL_REDIS = "redis://127.0.0.1:6379/0"
LOCAL_PG = "postgresql://postgres@127.0.0.1:5432/postgres"


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _dead_port() -> int:
    return free_port()  # nothing listens on it right after the probe socket closed


@pytest.fixture
def state_dir() -> Iterator[Path]:
    """A state dir the `postgres` user can traverse when the tests run as root (tmp_path is 0700)."""
    path = Path(tempfile.mkdtemp(prefix="btcbot-infra-test-"))
    path.chmod(0o711)
    yield path
    shutil.rmtree(path, ignore_errors=True)


# --- pure helpers -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2.9.10", (2, 9, 10)),
        ("v2.15.1", (2, 15, 1)),
        ("15.20 (Debian 15.20-0+deb12u1)", (15, 20, 0)),
        ("7", (7, 0, 0)),
        ("2.11.0-beta.2", (2, 11, 0)),
        ("unknown", None),
        ("", None),
    ],
)
def test_parse_version(text: str, expected: tuple[int, int, int] | None) -> None:
    assert parse_version(text) == expected


def test_version_reason_compares_numerically_not_lexically() -> None:
    assert version_reason("NATS server", "2.10.0", (2, 10, 0)) is None
    assert version_reason("NATS server", "2.15.1", (2, 10, 0)) is None
    reason = version_reason("NATS server", "2.9.10", (2, 10, 0))
    assert reason == "NATS server 2.9.10 is older than the required 2.10.0"
    assert "unreadable" in (version_reason("Redis", "", (6, 2, 0)) or "")


def test_redact_url_masks_only_the_password() -> None:
    assert redact_url("postgresql://app:s3cret@db:5432/btcbot") == "postgresql://app:***@db:5432/btcbot"
    assert redact_url("redis://:pw@127.0.0.1:6379/0") == "redis://:***@127.0.0.1:6379/0"
    assert redact_url("nats://127.0.0.1:4222") == "nats://127.0.0.1:4222"
    assert "s3cret" not in redact_url("nats://u:s3cret@[::1]:4222")
    # A token alone (nats://TOKEN@host) is a secret too: it is masked whole.
    assert redact_url("nats://s3cr3tT0ken@127.0.0.1:4222") == "nats://***@127.0.0.1:4222"


def test_with_database_keeps_credentials_host_and_query() -> None:
    url = "postgresql://app:pw@db.local:5433/postgres?sslmode=require"
    assert with_database(url, "btcbot") == "postgresql://app:pw@db.local:5433/btcbot?sslmode=require"
    assert with_database("postgresql://postgres@127.0.0.1:5432", "x") == "postgresql://postgres@127.0.0.1:5432/x"


@pytest.mark.parametrize("name", ["btcbot", "btcbot_t_0a1b", "_x"])
def test_check_database_name_accepts_plain_identifiers(name: str) -> None:
    assert check_database_name(name) == name


@pytest.mark.parametrize("name", ["", "Btcbot", "1db", 'x"; DROP DATABASE y; --', "a-b", "a" * 64])
def test_check_database_name_rejects_anything_needing_quotes(name: str) -> None:
    with pytest.raises(ValueError, match="invalid database name"):
        check_database_name(name)


def test_parse_nats_ports_file() -> None:
    text = '{"nats":["nats://127.0.0.1:40615"],"monitoring":["http://127.0.0.1:36533"]}'
    assert parse_nats_ports_file(text) == ("nats://127.0.0.1:40615", "http://127.0.0.1:36533")
    assert parse_nats_ports_file('{"nats":["nats://127.0.0.1:1"]}') == ("nats://127.0.0.1:1", None)
    with pytest.raises(ValueError, match="no client URL"):
        parse_nats_ports_file('{"nats":[]}')
    with pytest.raises(ValueError, match="line 1"):  # caught half-written: the caller polls again
        parse_nats_ports_file('{"nats":["nats://127.0.0.1:4')


def test_postmaster_ready_needs_our_pid_and_ready_status() -> None:
    lines = ["4242", "/data", "1700000000", "5433", "", "127.0.0.1", "  1234 5678"]
    assert not postmaster_ready("\n".join([*lines, "starting"]), 4242)
    assert postmaster_ready("\n".join([*lines, "ready   "]), 4242)
    assert not postmaster_ready("\n".join([*lines, "ready"]), 999)  # stale file of an earlier run
    assert not postmaster_ready("4242\n/data\n", 4242)


def test_free_port_is_bindable() -> None:
    port = free_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))


def test_find_executable_prefers_the_venv_scripts_dir() -> None:
    found = find_executable("python")
    assert found is not None
    assert found.parent == Path(sys.executable).parent
    assert find_executable("no-such-binary-btcbot") is None


def test_log_tail_returns_the_end_of_the_file(tmp_path: Path) -> None:
    log = tmp_path / "x.log"
    log.write_text("a" * 5000 + "THE END")
    assert log_tail(log, 10) == "aaaTHE END"
    assert log_tail(tmp_path / "missing.log") == ""


def test_embedded_server_stop_escalates_to_sigkill(tmp_path: Path) -> None:
    # A child that ignores SIGTERM must still be gone after stop().
    ready = tmp_path / "ready"
    code = (
        "import pathlib, signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        f"pathlib.Path({str(ready)!r}).touch(); time.sleep(60)"
    )
    process = ManagedProcess("stubborn", [sys.executable, "-c", code], tmp_path / "log", stop_signals=(signal.SIGTERM,))
    process.start()
    process.wait_ready(ready.exists, 10)
    server = EmbeddedServer(process, "x://")
    started = time.monotonic()
    server.stop(timeout=0.3)
    assert not server.running
    assert process.returncode == -signal.SIGKILL
    assert time.monotonic() - started < 5
    server.stop()  # idempotent


def test_running_pid_checks_liveness_and_name(tmp_path: Path) -> None:
    child = subprocess.Popen(["sleep", "30"])
    pid_file = tmp_path / "x.pid"
    try:
        # With vfork, Popen can return just before the kernel renames the child to the new program.
        deadline = time.monotonic() + 2
        while Path(f"/proc/{child.pid}/comm").read_text().strip() != "sleep" and time.monotonic() < deadline:
            time.sleep(0.01)
        pid_file.write_text(f"{child.pid}\n/data\n")
        assert running_pid(pid_file, "sleep") == child.pid
        assert running_pid(pid_file, "postgres") is None  # a recycled pid of another program
    finally:
        child.kill()
        child.wait()
    assert running_pid(pid_file, "sleep") is None
    assert running_pid(tmp_path / "missing.pid", "sleep") is None
    pid_file.write_text("garbage")
    assert running_pid(pid_file, "sleep") is None


async def test_cancelled_embedded_start_stops_the_server(tmp_path: Path) -> None:
    processes: list[ManagedProcess] = []

    def slow_start(state_dir: Path) -> EmbeddedServer:
        time.sleep(0.3)
        process = ManagedProcess("sleep", ["sleep", "30"], state_dir / "log").start()
        processes.append(process)
        return EmbeddedServer(process, "x://")

    task = asyncio.ensure_future(_start_in_thread(slow_start, tmp_path))
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert len(processes) == 1
    assert processes[0].returncode is not None


# --- probes -------------------------------------------------------------------------------------


@pytest.mark.integration
async def test_nats_usable_refuses_the_old_local_server() -> None:
    if not _listening(4222):
        pytest.skip("nothing listens on 127.0.0.1:4222")
    reason = await infra.nats_usable(LOCAL_NATS)
    assert reason is not None
    assert "older than the required 2.10.0" in reason
    assert "2.9" in reason


@pytest.mark.integration
async def test_nats_usable_accepts_the_embedded_server(nats_url: str) -> None:
    assert await infra.nats_usable(nats_url) is None


@pytest.mark.integration
async def test_nats_usable_reports_a_dead_port_quickly() -> None:
    started = time.monotonic()
    reason = await infra.nats_usable(f"nats://127.0.0.1:{_dead_port()}", timeout=1.0)
    assert reason is not None
    assert reason.startswith("cannot connect to NATS")
    assert time.monotonic() - started < 3


@pytest.mark.integration
async def test_redis_usable_on_local_and_dead_ports() -> None:
    if not _listening(6379):
        pytest.skip("no local Redis on 127.0.0.1:6379")
    assert await infra.redis_usable(LOCAL_REDIS) is None
    reason = await infra.redis_usable(f"redis://127.0.0.1:{_dead_port()}/0", timeout=1.0)
    assert reason is not None
    assert reason.startswith("cannot reach Redis")


@pytest.mark.integration
async def test_pg_usable_on_local_and_dead_ports() -> None:
    if not _listening(5432):
        pytest.skip("no local Postgres on 127.0.0.1:5432")
    assert await infra.pg_usable(LOCAL_PG) is None
    reason = await infra.pg_usable(f"postgresql://postgres@127.0.0.1:{_dead_port()}/postgres", timeout=1.0)
    assert reason is not None
    assert reason.startswith("cannot connect to Postgres")
    missing = await infra.pg_usable(with_database(LOCAL_PG, f"btcbot_missing_{secrets.token_hex(4)}"))
    assert missing is not None
    assert "does not exist" in missing


@pytest.mark.integration
async def test_ensure_and_drop_database(pg_admin_url: str) -> None:
    name = f"btcbot_t_{secrets.token_hex(6)}"
    try:
        url = await infra.ensure_database(pg_admin_url, name)
        assert url == with_database(pg_admin_url, name)
        assert await infra.ensure_database(pg_admin_url, name) == url  # idempotent
        conn = await asyncpg.connect(url)
        try:
            assert await conn.fetchval("SELECT current_database()") == name
        finally:
            await conn.close()
    finally:
        await infra.drop_database(pg_admin_url, name)
    assert "does not exist" in (await infra.pg_usable(url) or "")
    await infra.drop_database(pg_admin_url, name)  # dropping a missing database is fine


# --- embedded servers ---------------------------------------------------------------------------


@pytest.mark.integration
async def test_start_nats_gives_a_jetstream_server(state_dir: Path) -> None:
    server = infra.start_nats(state_dir)
    try:
        assert server.url.startswith("nats://127.0.0.1:")
        assert server.monitor_url is not None
        nc = await nats.connect(server.url, max_reconnect_attempts=1)
        try:
            js = nc.jetstream()
            await js.add_stream(StreamConfig(name="INFRA_TEST", subjects=["infra.test.>"]))
            ack = await js.publish("infra.test.one", b"hello")
            assert (ack.stream, ack.seq) == ("INFRA_TEST", 1)
            assert (await js.get_msg("INFRA_TEST", 1)).data == b"hello"
        finally:
            await nc.close()
        with pytest.raises(infra.InfraError, match="still uses"):
            infra.start_nats(state_dir)  # a second server on the same JetStream store
    finally:
        server.stop()
    assert not server.running
    assert server.log_path.exists()
    server.stop()
    again = infra.start_nats(state_dir)  # the store survives a restart
    try:
        nc = await nats.connect(again.url, max_reconnect_attempts=1)
        try:
            assert (await nc.jetstream().get_msg("INFRA_TEST", 1)).data == b"hello"
        finally:
            await nc.close()
    finally:
        again.stop()


@pytest.mark.integration
async def test_start_redis_embedded(state_dir: Path) -> None:
    if find_executable("redis-server") is None:
        pytest.skip("redis-server is not installed")
    server = infra.start_redis(state_dir)
    try:
        client = Redis.from_url(server.url)
        try:
            assert await client.set("k", "v")
            assert await client.get("k") == b"v"
            assert (await client.config_get("save"))["save"] == ""
            assert (await client.config_get("bind"))["bind"] == "127.0.0.1"
        finally:
            await client.aclose()
    finally:
        server.stop()
    assert not server.running


@pytest.mark.integration
async def test_start_postgres_embedded_restarts_on_existing_data(state_dir: Path) -> None:
    if find_postgres_bindir() is None:
        pytest.skip("PostgreSQL server binaries are not installed")
    server = infra.start_postgres(state_dir)
    try:
        url = await infra.ensure_database(server.url, "btcbot")
        conn = await asyncpg.connect(url)
        try:
            await conn.execute("CREATE TABLE kept (v int); INSERT INTO kept VALUES (7)")
        finally:
            await conn.close()
        with pytest.raises(infra.InfraError, match="still uses"):
            infra.start_postgres(state_dir)  # the running cluster holds the data dir
    finally:
        server.stop()
    assert not server.running
    again = infra.start_postgres(state_dir)
    try:
        conn = await asyncpg.connect(with_database(again.url, "btcbot"))
        try:
            assert await conn.fetchval("SELECT v FROM kept") == 7
        finally:
            await conn.close()
    finally:
        again.stop()


@pytest.mark.integration
def test_start_postgres_as_root_explains_an_unreachable_state_dir(tmp_path: Path) -> None:
    if os.geteuid() != 0 or find_postgres_bindir() is None:
        pytest.skip("only root hands the cluster to the postgres user")
    hidden = tmp_path / "hidden"
    hidden.mkdir(mode=0o700)
    with pytest.raises(infra.InfraError, match=f"cannot reach .*{hidden} is not searchable"):
        infra.start_postgres(hidden / "state")


# --- resolve_infra ------------------------------------------------------------------------------


@pytest.mark.integration
async def test_resolve_infra_uses_env_urls_as_given(
    state_dir: Path, nats_url: str, redis_url: str, database_url: str
) -> None:
    env = {"NATS_URL": nats_url, "REDIS_URL": redis_url, "DATABASE_URL": database_url}
    resolved = await infra.resolve_infra(state_dir, env)
    try:
        assert resolved.env() == env
        assert resolved.servers == []
        assert [dep.embedded for dep in (resolved.nats, resolved.redis, resolved.postgres)] == [False] * 3
        assert resolved.describe()[0] == f"NATS: {nats_url} (external; from NATS_URL)"
    finally:
        resolved.stop()


@pytest.mark.integration
@pytest.mark.parametrize("variable", ["NATS_URL", "REDIS_URL", "DATABASE_URL"])
async def test_resolve_infra_refuses_an_unusable_env_url(state_dir: Path, variable: str) -> None:
    dead = {
        "NATS_URL": f"nats://127.0.0.1:{_dead_port()}",
        "REDIS_URL": f"redis://127.0.0.1:{_dead_port()}/0",
        "DATABASE_URL": f"postgresql://postgres:pw@127.0.0.1:{_dead_port()}/x",
    }
    env = {variable: dead[variable]}  # with NATS_URL unset, a late check would have started a nats-server
    with pytest.raises(infra.InfraError, match=f"^{variable} is set but not usable") as caught:
        await infra.resolve_infra(state_dir, env)
    assert "pw" not in str(caught.value)
    assert not any(state_dir.iterdir())  # env URLs are checked before anything is started


@pytest.mark.integration
async def test_resolve_infra_embeds_what_does_not_answer(state_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if find_executable("redis-server") is None or find_postgres_bindir() is None:
        pytest.skip("redis-server or PostgreSQL binaries are not installed")
    monkeypatch.setattr(infra, "DEFAULT_NATS_URL", f"nats://127.0.0.1:{_dead_port()}")
    monkeypatch.setattr(infra, "DEFAULT_REDIS_URL", f"redis://127.0.0.1:{_dead_port()}/0")
    monkeypatch.setattr(infra, "DEFAULT_PG_ADMIN_URL", f"postgresql://postgres@127.0.0.1:{_dead_port()}/postgres")
    resolved = await infra.resolve_infra(state_dir, {"NATS_URL": "  "})  # blank counts as unset
    try:
        assert [s.name for s in resolved.servers] == ["nats-server", "redis-server", "postgres"]
        assert all(dep.embedded for dep in (resolved.nats, resolved.redis, resolved.postgres))
        assert resolved.database_url.endswith("/btcbot")
        assert "local default is not usable: cannot connect to NATS" in resolved.describe()[0]
        assert await infra.nats_usable(resolved.nats_url) is None
        assert await infra.redis_usable(resolved.redis_url) is None
        assert await infra.pg_usable(resolved.database_url) is None
        pids = [s.pid for s in resolved.servers]
    finally:
        resolved.stop()
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    resolved.stop()  # idempotent


@pytest.mark.integration
async def test_resolve_infra_with_local_defaults(state_dir: Path) -> None:
    if not (_listening(6379) and _listening(5432)):
        pytest.skip("needs the local Redis and Postgres")
    database = f"btcbot_t_{secrets.token_hex(6)}"
    resolved = await infra.resolve_infra(state_dir, {}, database=database)
    try:
        assert resolved.redis == infra.Dependency(
            "Redis", LOCAL_REDIS, embedded=False, reason="REDIS_URL unset; local server answers"
        )
        assert resolved.database_url == with_database(LOCAL_PG, database)
        assert await infra.pg_usable(resolved.database_url) is None
        if _listening(4222):  # the machine's NATS is 2.9, so ours must have been embedded
            assert resolved.nats.embedded
            assert "older than the required 2.10.0" in resolved.nats.reason
    finally:
        resolved.stop()
        await infra.drop_database(LOCAL_PG, database)


# --- shared fixtures ----------------------------------------------------------------------------


@pytest.mark.integration
async def test_redis_fixture_gives_a_session_prefix(redis_url: str, redis_prefix: str) -> None:
    assert redis_prefix.startswith("t-")
    client = Redis.from_url(redis_url)
    try:
        await client.set(f"{redis_prefix}:probe", "1", ex=60)
        assert await client.get(f"{redis_prefix}:probe") == b"1"
    finally:
        await client.aclose()


@pytest.mark.integration
async def test_database_fixture_is_a_fresh_database(database_url: str) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        name = await conn.fetchval("SELECT current_database()")
        tables = await conn.fetchval("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'")
    finally:
        await conn.close()
    assert name.startswith("btcbot_t_")
    assert tables == 0
