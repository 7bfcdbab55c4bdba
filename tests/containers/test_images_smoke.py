"""Smoke test of the container images: the simulator and the five services, each from its own image, find each
other on the host network and a fill is booked in the ledger.

Runs where a container engine answers (`deploy/images/build.sh --check`), else skips and says why. The images are
built (or brought up to date: a second build reuses its layers) by `deploy/images/build.sh` first, so the test
always runs the current sources. Infrastructure runs on the host, as it would for compose's services: a private
nats-server from the pinned wheel, the session's Redis (own key prefix) and a fresh Postgres database.
Every container runs with compose's hardening: read-only root fs, a tmpfs /tmp, no capabilities, no new privileges,
the image's uid 10001. Containers are removed at the end whatever happened.

    make test-containers     # = .venv/bin/pytest -q -m container (docs/operations.md "Container images")
"""

from __future__ import annotations

import asyncio
import base64
import os
import secrets
import socket
import subprocess
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

pytestmark = [pytest.mark.container, pytest.mark.e2e, pytest.mark.integration]

ROOT = Path(__file__).resolve().parents[2]
BUILD = ROOT / "deploy" / "images" / "build.sh"
CONTAINERS_CONF = ROOT / "deploy" / "images" / "containers.conf"
TAG = os.environ.get("BTCBOT_IMAGE_TAG", "dev")
SERVICES = ("ledger", "execution", "risk", "strategy", "marketdata")
SYMBOLS = "BTCTRY,ETHTRY"
FUNDS = "TRY=1000000,BTC=1,ETH=20"
# compose's x-service hardening (docker-compose.yml), as podman/docker run flags.
HARDENING = ("--read-only", "--tmpfs", "/tmp", "--cap-drop", "ALL", "--security-opt", "no-new-privileges")
BUILD_TIMEOUT = 1200.0  # a first build here: base image ~35 s, six images ~100 s; far less when cached
READY_TIMEOUT = 60.0
FILL_TIMEOUT = 150.0


def free_port() -> int:
    """A TCP port nothing listens on right now (the containers share the host's network)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def engine_env() -> dict[str, str]:
    """The environment for engine commands: podman gets the repo's containers.conf unless one is given."""
    return {**os.environ, "CONTAINERS_CONF": os.environ.get("CONTAINERS_CONF") or str(CONTAINERS_CONF)}


def run_args(name: str, image: str, env_file: Path, label: str, args: tuple[str, ...] = ()) -> list[str]:
    """`<engine> run ...` for one detached, hardened container on the host network."""
    return [
        *("run", "--detach", "--name", name, "--label", label, "--network", "host"),
        *HARDENING,
        *("--env-file", str(env_file), image, *args),
    ]


def write_env_file(path: Path, env: Mapping[str, str]) -> Path:
    """An env file readable only by its owner (it holds the run's exchange secret and signing keys)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.writelines(f"{key}={value}\n" for key, value in env.items())
    return path


def engine_or_skip() -> str:
    """The engine that answers, or skip the test with the reason none does."""
    try:
        done = subprocess.run(
            [str(BUILD), "--check"], check=False, capture_output=True, text=True, timeout=60, env=engine_env()
        )
    except subprocess.TimeoutExpired:
        pytest.skip("container engine check timed out after 60 s")
    if done.returncode == 3:
        pytest.skip(done.stdout.strip())
    assert done.returncode == 0, f"{BUILD} --check failed: {done.stdout}{done.stderr}"
    return done.stdout.strip()


@pytest.fixture
def containers() -> Iterator[tuple[str, str, list[str]]]:
    """The engine, a label unique to this test and the names of its containers, all removed at the end."""
    engine = engine_or_skip()
    label = f"btcbot.smoke={secrets.token_hex(4)}"
    names: list[str] = []
    yield engine, label, names
    for name in reversed(names):
        subprocess.run(
            [engine, "rm", "--force", "--time", "5", name],
            check=False,
            capture_output=True,
            timeout=60,
            env=engine_env(),
        )


def engine_cmd(engine: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """One engine command; raises with its output when it fails."""
    done = subprocess.run(
        [engine, *args], check=False, capture_output=True, text=True, timeout=timeout, env=engine_env()
    )
    if done.returncode != 0:
        raise AssertionError(f"{engine} {' '.join(args)} exited {done.returncode}: {done.stdout}{done.stderr}")
    return done


def logs_of(engine: str, names: list[str]) -> str:
    """The last lines of every container's log, for a failure message."""
    parts = []
    for name in names:
        done = subprocess.run(
            [engine, "logs", "--tail", "15", name],
            check=False,
            capture_output=True,
            text=True,
            timeout=30,
            env=engine_env(),
        )
        parts.append(f"--- {name}\n{done.stdout}{done.stderr}")
    return "\n".join(parts)


async def wait_for(check: Callable[[], Awaitable[Any]], timeout: float, what: str, details: Callable[[], str]) -> float:
    """Poll `check` until it returns something true; the seconds it took. Fails after `timeout` with `details()`."""
    started = time.monotonic()
    last: Any = None
    while time.monotonic() - started < timeout:
        try:
            last = await check()
        except Exception as exc:  # a server still starting: connection refused, table not created yet
            last = exc
        else:
            if last:
                return time.monotonic() - started
        await asyncio.sleep(0.5)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}; last: {last!r}\n{details()}")


async def answers(url: str) -> bool:
    """True when GET url answers 200."""
    async with httpx.AsyncClient(timeout=2) as client:
        return (await client.get(url)).status_code == 200


@pytest.mark.timeout(BUILD_TIMEOUT + 600)
async def test_images_run_the_pipeline_and_book_a_fill(
    containers: tuple[str, str, list[str]],
    redis_url: str,
    redis_prefix: str,
    pg_admin_url: str,
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    from btcbot.cli.profiles import apply_profile
    from btcbot.contracts.streams import ALL_STREAMS
    from btcbot.ledger.queries import fill_count
    from btcbot.runtime.jetstream import connect, provision
    from btcbot.runtime.signing import RunKeys

    engine, label, names = containers

    def logs() -> str:
        return logs_of(engine, names)

    started = time.monotonic()
    build = await asyncio.create_subprocess_exec(str(BUILD), env=engine_env(), stderr=asyncio.subprocess.PIPE)
    _, err = await asyncio.wait_for(build.communicate(), BUILD_TIMEOUT)
    assert build.returncode == 0, f"make images failed:\n{err.decode(errors='replace')[-4000:]}"
    built = time.monotonic() - started

    # A NATS of its own: the session's carries other tests' control events (alarms, kill switches), which would
    # rightly keep risk from approving anything here.
    from btcbot.devstack.infra import drop_database, ensure_database, start_nats

    nats = start_nats(tmp_path / "nats")
    request.addfinalizer(nats.stop)
    nats_url = nats.url
    # And a database of its own: the ledger seeds opening balances, which other tests' ledgers must not see.
    db_name = f"btcbot_smoke_{secrets.token_hex(4)}"
    database_url = await ensure_database(pg_admin_url, db_name)

    def drop() -> None:  # a finalizer runs outside the test's loop: drop from a loop of its own
        with ThreadPoolExecutor(1) as pool:
            pool.submit(asyncio.run, drop_database(pg_admin_url, db_name)).result(timeout=60)

    request.addfinalizer(drop)
    nc = await connect(nats_url, "container-smoke", 5, reconnect_forever=False)
    try:
        await provision(nc.jetstream(), ALL_STREAMS)
    finally:
        await nc.close()

    demo = apply_profile("demo", {})  # trades within seconds instead of minutes
    sim_port = free_port()
    api_key, api_secret = "btcbot-smoke", base64.b64encode(secrets.token_bytes(32)).decode()
    suffix = label.rpartition("=")[2]
    sim_env = {"SIM_API_KEY": api_key, "SIM_API_SECRET": api_secret, "SIM_ADMIN_TOKEN": secrets.token_urlsafe(16)}
    sim_args = ("--host", "127.0.0.1", "--port", str(sim_port), "--seed", "7", "--symbols", SYMBOLS)
    sim_args += ("--fund", FUNDS, *demo.sim_args)
    name = f"btcbot-smoke-{suffix}-sim"
    names.append(name)
    env_file = write_env_file(tmp_path / "sim.env", sim_env)
    engine_cmd(engine, *run_args(name, f"btcbot/sim:{TAG}", env_file, label, sim_args))
    sim_url = f"http://127.0.0.1:{sim_port}"
    await wait_for(lambda: answers(f"{sim_url}/sim/health"), READY_TIMEOUT, "the simulator container", logs)

    keys = RunKeys.generate()
    common = {
        "NATS_URL": nats_url,
        "REDIS_URL": redis_url,
        "DATABASE_URL": database_url,
        "BTCBOT_KEY_PREFIX": redis_prefix,
        "BTCBOT_SYMBOLS": SYMBOLS,
        "BTCBOT_SHUTDOWN_GRACE": "5",
        "BTCBOT_LOG_FORMAT": "json",
        "BTCTURK_BASE_URL": sim_url,
        "BTCTURK_WS_URL": f"ws://127.0.0.1:{sim_port}/ws",
        "BTCTURK_API_KEY": api_key,
        "BTCTURK_API_SECRET": api_secret,
        "LEDGER_OPENING_BALANCES": FUNDS,
        "EXECUTION_FILL_POLL_INTERVAL": "1.5",
        **demo.service_env,
    }
    health = {service: free_port() for service in SERVICES}
    launched = time.monotonic()
    for service in SERVICES:
        env = {**common, **keys.service_env(service), "BTCBOT_HEALTH_PORT": str(health[service])}
        name = f"btcbot-smoke-{suffix}-{service}"
        names.append(name)
        env_file = write_env_file(tmp_path / f"{service}.env", env)
        engine_cmd(engine, *run_args(name, f"btcbot/{service}:{TAG}", env_file, label))
    ready = {}
    for service in SERVICES:
        url = f"http://127.0.0.1:{health[service]}/readyz"
        await wait_for(lambda u=url: answers(u), READY_TIMEOUT, f"{service}'s /readyz", logs)  # type: ignore[misc]
        ready[service] = time.monotonic() - launched
    services_up = time.monotonic()

    async def booked() -> int:
        return await fill_count(database_url)

    await wait_for(booked, FILL_TIMEOUT, "a fill booked in the ledger", logs)
    fill_after = time.monotonic() - services_up

    for name in names:
        inspected = engine_cmd(engine, "inspect", "--format", "{{.Config.User}} {{.HostConfig.ReadonlyRootfs}}", name)
        assert inspected.stdout.split() == ["10001:10001", "true"], f"{name}: {inspected.stdout}"
        # The image kept its HEALTHCHECK (buildah drops it without --format docker) and it passes. Podman's timed
        # checks need systemd, which these machines lack; `healthcheck run` runs the image's command once.
        assert engine_cmd(engine, "inspect", "--format", "{{.Config.Healthcheck}}", name).stdout.strip() not in {
            "",
            "<nil>",
            "map[]",
        }, f"{name} has no HEALTHCHECK"
        # The simulator's check asks port 8800 (compose's); this one listens on a free port, so only the services'.
        if engine == "podman" and not name.endswith("-sim"):
            engine_cmd(engine, "healthcheck", "run", name)
    stops = {}
    for name in reversed(names):  # marketdata first, the simulator last, as compose's dependencies would
        stop_started = time.monotonic()
        engine_cmd(engine, "stop", "--time", "20", name, timeout=60)
        stops[name.rpartition("-")[2]] = time.monotonic() - stop_started
        code = engine_cmd(engine, "inspect", "--format", "{{.State.ExitCode}}", name).stdout.strip()
        assert code == "0", f"{name} exited {code} on SIGTERM\n{logs_of(engine, [name])}"
    print(
        f"\ncontainer smoke ({engine}): images built/updated in {built:.1f}s; ready (s after start) "
        + ", ".join(f"{s} {t:.1f}s" for s, t in ready.items())
        + f"; first fill booked {fill_after:.1f}s after all were ready; stopped in "
        + ", ".join(f"{s} {t:.1f}s" for s, t in stops.items())
    )
