"""Every ordinary mistake of issue 10 (items 3 and 5, live arming, bad numbers), run as the user runs it: the real
`btcbot` in a subprocess. Each must print one line naming the real variable or value, exit 2, and no traceback.

"Down" is a port nothing listens on; the unknown database is a random name on the test Postgres; the unmigrated
database is a fresh empty one created for the test and dropped after it.
"""

from __future__ import annotations

import base64
import os
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
import pytest_asyncio

from btcbot.cli.preflight import offered_symbols

pytestmark = pytest.mark.integration

BTCBOT = [sys.executable, "-m", "btcbot.cli"]
# Prefixes of every variable a command or service reads: none may leak in from the shell running the tests.
_OURS = ("BTCBOT_", "BTCTURK_", "NATS_", "REDIS_", "DATABASE_", "SIM_", "LEDGER_", "EXECUTION_", "RISK_")
_OURS += ("STRATEGY_", "MARKETDATA_", "CANARY_", "TEST_")
# Real BTCTurk pairs, in case the simulator comes to offer some of them: the test takes the first it does not.
SIM_ADMIN_TOKEN = secrets.token_urlsafe(16)
REAL_PAIRS = ("XRPTRY", "DOGETRY", "AVAXTRY", "SHIBTRY", "ADATRY", "SOLTRY", "LINKTRY", "TRXTRY", "NEARTRY")


@dataclass(frozen=True)
class Case:
    """One bad input: the command line, the environment it adds, what the one line must (and must not) say."""

    argv: tuple[str, ...]
    env: dict[str, str]
    needles: tuple[str, ...]
    forbidden: tuple[str, ...] = ()
    prefix: str = ""  # the line starts with this; default `btcbot <command>:`


def closed_port() -> int:
    """A local port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def with_database(url: str, name: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path=f"/{name}"))


def clean_env(extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(_OURS)}
    return {**env, **extra}


def run_btcbot(argv: tuple[str, ...], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*BTCBOT, *argv], env=clean_env(env), cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )


def _is_using_line(line: str) -> bool:
    from btcbot.cli.runs import USING

    command, _, rest = line.partition(": ")
    return command.startswith("btcbot ") and rest.startswith(USING)


def assert_one_line_error(case: Case, done: subprocess.CompletedProcess[str]) -> None:
    output = done.stdout + done.stderr
    assert "Traceback" not in output, output
    assert done.returncode == 2, f"exit {done.returncode}: {output}"
    # The line saying which run and servers a command uses is information, not part of the error.
    lines = [line for line in done.stderr.splitlines() if line.strip() and not _is_using_line(line)]
    assert len(lines) == 1, f"expected one line, got {lines}"
    command = next(a for a in case.argv if not a.startswith("-"))
    assert lines[0].startswith(case.prefix or f"btcbot {command}:"), lines[0]
    for needle in case.needles:
        assert needle in lines[0], f"{needle!r} not named in: {lines[0]}"
    for wrong in case.forbidden:
        assert wrong not in lines[0], f"{wrong!r} named in: {lines[0]}"


@pytest.fixture(scope="module")
def down() -> tuple[str, str, str, int]:
    """URLs of NATS, Redis and Postgres on a port where nothing answers."""
    port = closed_port()
    return (
        f"nats://127.0.0.1:{port}",
        f"redis://127.0.0.1:{port}/0",
        f"postgresql://postgres@127.0.0.1:{port}/btcbot",
        port,
    )


@pytest_asyncio.fixture(loop_scope="session")
async def empty_database(pg_admin_url: str) -> AsyncIterator[str]:
    """A database with no tables (never migrated), dropped after the test."""
    from btcbot.devstack.infra import drop_database, ensure_database

    name = f"btcbot_t_empty_{secrets.token_hex(4)}"
    url = await ensure_database(pg_admin_url, name)
    yield url
    await drop_database(pg_admin_url, name)


@pytest.fixture(scope="module")
def simulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A simulator of its own (verify reads it first), stopped after the module."""
    base = tmp_path_factory.mktemp("sim")
    port_file = base / "sim.port"
    secret = base64.b64encode(secrets.token_bytes(32)).decode()
    argv = ["--port", "0", "--port-file", str(port_file), "--symbols", "BTCTRY", "--fund", "TRY=1000"]
    argv += ["--api-key", "k", "--api-secret", secret, "--admin-token", SIM_ADMIN_TOKEN, "--no-rate-limits"]
    with (base / "sim.log").open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "btcbot.sim", *argv], stdout=log, stderr=subprocess.STDOUT, env=clean_env({})
        )
    try:
        deadline = time.monotonic() + 30
        while not (port_file.exists() and port_file.read_text().strip()):
            assert process.poll() is None, (base / "sim.log").read_text()
            assert time.monotonic() < deadline, "the simulator did not report its port"
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port_file.read_text().strip()}"
    finally:
        process.terminate()
        process.wait(10)


@pytest_asyncio.fixture(loop_scope="session")
async def migrated_database(pg_admin_url: str) -> AsyncIterator[str]:
    """A database with the ledger's tables and no rows, dropped after the test."""
    from btcbot.devstack.infra import drop_database, ensure_database
    from btcbot.ledger.migrations import migrate

    name = f"btcbot_t_ledger_{secrets.token_hex(4)}"
    url = await ensure_database(pg_admin_url, name)
    await migrate(url)
    yield url
    await drop_database(pg_admin_url, name)


def no_server_cases(down: tuple[str, str, str, int], state: Path) -> dict[str, Case]:
    nats, redis, postgres, port = down
    unlisted = next(p for p in REAL_PAIRS if p not in offered_symbols())
    keys = {"BTCTURK_API_KEY": "k", "BTCTURK_API_SECRET": "c2VjcmV0"}
    since = ("--since", "2026-01-01T00:00:00Z", "--until", "2026-01-01T01:00:00Z")
    sim = f"http://127.0.0.1:{port}"
    verify = ("verify", "--sim-url", sim, "--api-key", "k", "--nats-url", nats, "--database-url", postgres)
    return {
        "report, Postgres down": Case(("report",), {"DATABASE_URL": postgres}, ("DATABASE_URL", str(port))),
        "migrate, Postgres down": Case(("migrate",), {"DATABASE_URL": postgres}, ("DATABASE_URL", str(port))),
        "ledger quarantine, Postgres down": Case(
            ("ledger", "quarantine"),
            {"DATABASE_URL": postgres},
            ("DATABASE_URL", str(port)),
            prefix="btcbot ledger quarantine:",
        ),
        "verify, simulator down": Case(verify, {}, (sim,)),
        "dlq, NATS down": Case(("dlq",), {"NATS_URL": nats}, (nats, "NATS_URL")),
        "control status, NATS down": Case(("control", "status"), {"NATS_URL": nats}, (nats, "NATS_URL")),
        "replay, NATS down": Case(("replay", *since), {"NATS_URL": nats}, (nats, "NATS_URL")),
        "up, Redis down": Case(
            ("up", "--state-dir", str(state), "--duration", "5"), {"REDIS_URL": redis}, ("REDIS_URL", str(port))
        ),
        "up, unknown symbol": Case(("up", "--symbols", "NOPE"), {}, ("NOPE", "offers", "BTCTRY")),
        "up, a real pair the simulator does not list": Case(("up", "--symbols", unlisted), {}, (unlisted, "BTCTRY")),
        "up, live armed": Case(("up",), {"EXECUTION_LIVE": "true"}, ("EXECUTION_LIVE=true",)),
        "up, negative duration": Case(("up", "--duration", "-3"), {}, ("--duration", "-3")),
        "up, duration not a number": Case(("up", "--duration", "soon"), {}, ("--duration", "soon")),
        "dlq, limit not a number": Case(("dlq", "--limit", "many"), {}, ("--limit", "many")),
        "up, bad common setting": Case(
            ("up",), {"BTCBOT_LOG_LEVEL": "LOUD"}, ("BTCBOT_LOG_LEVEL",), forbidden=("STRATEGY_BTCBOT", "LEDGER_BTCBOT")
        ),
        "up, bad service setting": Case(("up",), {"STRATEGY_COOLDOWN": "x"}, ("STRATEGY_COOLDOWN",)),
        "report --exchange without credentials": Case(
            ("report", "--exchange"), {"DATABASE_URL": postgres}, ("--exchange", "BTCTURK_API_KEY")
        ),
        "execution without its exchange key": Case(
            ("service", "execution"),
            {"NATS_URL": nats},
            ("BTCTURK_API_KEY", "BTCTURK_API_SECRET"),
            forbidden=("EXECUTION_BTCTURK",),
            prefix="execution:",
        ),
        "strategy with a bad log level": Case(
            ("service", "strategy"),
            {"NATS_URL": nats, "BTCBOT_LOG_LEVEL": "LOUD"},
            ("BTCBOT_LOG_LEVEL",),
            forbidden=("STRATEGY_BTCBOT",),
            prefix="strategy:",
        ),
        "ledger with a bad shutdown grace": Case(
            ("service", "ledger"),
            {"NATS_URL": nats, "BTCBOT_SHUTDOWN_GRACE": "-1"},
            ("BTCBOT_SHUTDOWN_GRACE",),
            forbidden=("LEDGER_BTCBOT",),
            prefix="ledger:",
        ),
        "risk without its signing key": Case(
            ("service", "risk"), {"NATS_URL": nats, **keys}, ("BTCBOT_SIGNING_KEY_ID",), prefix="risk:"
        ),
        # NATS is down: had the arming check waited for NATS, this would be a NATS error (exit 3), not this line.
        "execution armed without the acknowledgement": Case(
            ("service", "execution"),
            {"NATS_URL": nats, "EXECUTION_LIVE": "true", **keys},
            ("EXECUTION_LIVE_ACK",),
            prefix="execution:",
        ),
    }


NO_SERVER_CASES = tuple(no_server_cases(("nats://x", "redis://x", "postgresql://x", 1), Path()))


@pytest.mark.parametrize("name", NO_SERVER_CASES)
def test_a_mistake_is_one_line_and_exit_2(name: str, down: tuple[str, str, str, int], tmp_path: Path) -> None:
    case = no_server_cases(down, tmp_path / "state")[name]
    assert_one_line_error(case, run_btcbot(case.argv, case.env, tmp_path))


async def test_an_unknown_database_is_named(pg_admin_url: str, tmp_path: Path) -> None:
    name = f"btcbot_t_missing_{secrets.token_hex(4)}"
    case = Case(("report",), {"DATABASE_URL": with_database(pg_admin_url, name)}, (name, "DATABASE_URL"))
    assert_one_line_error(case, run_btcbot(case.argv, case.env, tmp_path))


async def test_an_unmigrated_database_says_to_migrate(empty_database: str, tmp_path: Path) -> None:
    case = Case(("report",), {"DATABASE_URL": empty_database}, ("btcbot migrate", "DATABASE_URL"))
    assert_one_line_error(case, run_btcbot(case.argv, case.env, tmp_path))


def verify_argv(sim: str, nats: str, database: str, *more: str) -> tuple[str, ...]:
    return ("verify", "--sim-url", sim, "--api-key", "k", "--nats-url", nats, "--database-url", database, *more)


def test_verify_with_nats_down(simulator: str, down: tuple[str, str, str, int], tmp_path: Path) -> None:
    nats = down[0]
    case = Case(verify_argv(simulator, nats, down[2]), {"SIM_ADMIN_TOKEN": SIM_ADMIN_TOKEN}, (nats, "NATS_URL"))
    assert_one_line_error(case, run_btcbot(case.argv, case.env, tmp_path))


async def test_verify_on_an_unmigrated_database(
    simulator: str, nats_url: str, empty_database: str, tmp_path: Path
) -> None:
    argv = verify_argv(simulator, nats_url, empty_database)
    case = Case(argv, {"SIM_ADMIN_TOKEN": SIM_ADMIN_TOKEN}, ("btcbot migrate", "DATABASE_URL"))
    assert_one_line_error(case, run_btcbot(case.argv, case.env, tmp_path))


async def test_verify_with_redis_down(
    simulator: str, nats_url: str, migrated_database: str, down: tuple[str, str, str, int], tmp_path: Path
) -> None:
    argv = verify_argv(simulator, nats_url, migrated_database, "--redis-url", down[1])
    case = Case(argv, {"SIM_ADMIN_TOKEN": SIM_ADMIN_TOKEN}, ("Redis", "REDIS_URL", str(down[3])))
    assert_one_line_error(case, run_btcbot(case.argv, case.env, tmp_path))


def test_debug_shows_the_traceback(down: tuple[str, str, str, int], tmp_path: Path) -> None:
    done = run_btcbot(("--debug", "report"), {"DATABASE_URL": down[2]}, tmp_path)
    assert done.returncode != 0
    assert "Traceback" in done.stderr


def test_sim_help_is_the_simulators_help(tmp_path: Path) -> None:
    done = run_btcbot(("sim", "--help"), {}, tmp_path)
    assert done.returncode == 0, done.stderr
    assert "--port" in done.stdout
    assert "default 8800" in done.stdout


def test_a_command_that_closes_its_nats_connection_prints_no_warning(nats_url: str, tmp_path: Path) -> None:
    done = run_btcbot(("dlq",), {"NATS_URL": nats_url}, tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "nats.disconnected" not in done.stdout + done.stderr
