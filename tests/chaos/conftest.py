"""The chaos rig: the simulator, ledger, risk and two execution replicas as real processes on a private NATS,
a private (persistent) Redis and a fresh database; intents are published straight onto `intent.<SYMBOL>`.

Strategy and marketdata are not run: the test is the only source of intents, so every intent is accounted for.
The simulator runs with `--no-rate-limits`: two replicas polling fills every half second would otherwise spend
BTCTurk's 120/min user-trades budget, which is a capacity question, not an exactly-once one.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import json
import os
import secrets
import shutil
import signal
import socket
import tempfile
import time
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from decimal import ROUND_DOWN, Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import pytest_asyncio

from btcbot.runtime.signing import RunKeys

if TYPE_CHECKING:
    from btcbot.devstack.procs import ManagedProcess

# The simulator's /sim/* admin endpoints need this token (the harness starts it with SIM_ADMIN_TOKEN).
SIM_ADMIN_TOKEN = "chaos-sim-admin-token"

SYMBOL = "BTCTRY"
FUNDS = "TRY=100000000,BTC=100"
REPLICAS = ("execution-a", "execution-b")
# Risk's in-flight limits (one open order per symbol, a 60 s cooldown, a 10000 TRY budget ...) would deny most of
# a flood of test intents; tests of other guarantees lift them, tests of the limits set their own.
RISK_UNLIMITED = {
    "RISK_MAX_OPEN_ORDERS_PER_SYMBOL": "100000",
    "RISK_MAX_OPEN_ORDERS": "100000",
    "RISK_ORDER_COOLDOWN": "0",
    "RISK_DENY_UNKNOWN_OUTCOME": "false",
    "RISK_CASH_RESERVE": "0",
    "RISK_MAX_SYMBOL_EXPOSURE": "1000000000000",
    "RISK_EXPOSURE_BUDGET": "1000000000000",
}


class PrivateRedis:
    """A redis-server of our own on a fixed port, with an fsync-always AOF so a stop and restart keeps every key.

    Execution's claims must survive a Redis restart (production runs Redis with persistence); the shared
    server on 6379 is never touched.
    """

    def __init__(self, base: Path) -> None:
        from btcbot.devstack.infra import find_executable, free_port

        binary = find_executable("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed")
        self.binary = binary
        self.port = free_port()
        self.dir = base / "redis"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.dir / "redis.log"
        self.process: ManagedProcess | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> None:
        from btcbot.devstack.procs import ManagedProcess

        args: list[str | Path] = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                "--appendonly", "yes", "--appendfsync", "always", "--dir", self.dir,
                "--logfile", self.log_path, "--daemonize", "no"]  # fmt: skip
        self.process = ManagedProcess("redis-server", args, self.log_path).start()
        self.process.wait_ready(self.pings, timeout)

    def pings(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is not None:
            process.stop()


@dataclass
class Chaos:
    """A running rig and what the test did to it."""

    base: Path
    sup: Any
    nats: Any
    redis: Any  # PrivateRedis, or a RedisGroup (master, replica, Sentinels) with `redis_ha=True`
    database_url: str
    sim_url: str = ""
    api_key: str = "chaos"
    key_prefix: str = field(default_factory=lambda: f"chaos-{secrets.token_hex(4)}")
    nc: Any = None
    published: list[str] = field(default_factory=list)
    kills: list[str] = field(default_factory=list)
    risk_replicas: tuple[str, ...] = ("risk",)
    ledger_replicas: tuple[str, ...] = ("ledger",)
    # The front of the pipeline, off by default (the test is then the only source of intents): children named
    # `<service>-<n>` of marketdata and strategy, with `front_env` on top of the common settings.
    front_replicas: tuple[str, ...] = ()
    front_env: dict[str, str] = field(default_factory=dict)
    # The test's own connection: a cluster run keeps it across the loss of any node.
    nats_reconnect_forever: bool = False
    risk_env: dict[str, str] = field(default_factory=lambda: dict(RISK_UNLIMITED))
    # This run's signing keys: risk signs orders, execution checks them; control events need the operator's key.
    keys: RunKeys = field(default_factory=RunKeys.generate)
    # Extra variables for every service (e.g. REDIS_SENTINELS ... of a RedisGroup).
    redis_env: dict[str, str] = field(default_factory=dict)

    # ---- processes ------------------------------------------------------------------------------

    async def start(self) -> None:
        from btcbot.contracts.streams import ALL_STREAMS
        from btcbot.runtime.jetstream import NatsPublisher, connect, provision

        self.nc = await connect(self.nats.url, "chaos-test", 10, reconnect_forever=self.nats_reconnect_forever)
        js = self.nc.jetstream()
        await provision(js, ALL_STREAMS)
        self.publisher = NatsPublisher(js)
        secret = base64.b64encode(secrets.token_bytes(32)).decode()
        port_file = self.base / "sim.port"
        sim_env = {"SIM_API_KEY": self.api_key, "SIM_API_SECRET": secret, "SIM_ADMIN_TOKEN": SIM_ADMIN_TOKEN}
        self.sup.add("sim", "btcbot.sim", sim_env,
                     ["--port", "0", "--port-file", str(port_file), "--seed", "11", "--symbols", SYMBOL,
                      "--fund", FUNDS, "--no-rate-limits", "--tick-interval", "0.1"], health=False)  # fmt: skip
        await self.sup.start("sim")
        deadline = time.monotonic() + 30
        while not (port_file.exists() and port_file.read_text().strip()):
            assert time.monotonic() < deadline, "the simulator did not report its port"
            await asyncio.sleep(0.05)
        self.sim_url = f"http://127.0.0.1:{int(port_file.read_text())}"
        common = {
            "NATS_URL": self.nats.url,
            "REDIS_URL": self.redis.url,
            "DATABASE_URL": self.database_url,
            "BTCBOT_KEY_PREFIX": self.key_prefix,
            "BTCBOT_SYMBOLS": SYMBOL,
            "BTCBOT_SHUTDOWN_GRACE": "3",
            "BTCBOT_LOG_LEVEL": "INFO",
            **self.redis_env,
        }
        exchange = {"BTCTURK_BASE_URL": self.sim_url, "BTCTURK_API_KEY": self.api_key, "BTCTURK_API_SECRET": secret}
        # The ledger gets no exchange credentials: its own reconciliation must not paper over a lost fill.
        for name in self.ledger_replicas:
            self.sup.add(name, "btcbot.ledger", {**common, "LEDGER_OPENING_BALANCES": FUNDS,
                                                 "LEDGER_RECONCILE_INTERVAL": "0", "BTCBOT_INSTANCE": name,
                                                 **self.keys.service_env("ledger")})  # fmt: skip
        # Intents come straight from the test, with no market data: risk's fresh-book check is off, and so is the
        # automatic budget (RISK_AUTO_MODE, docs/risk.md): with no marks the ledger's snapshots carry no PnL to judge,
        # and the test's intents are not the bot's trading. Each replica's instance name is fixed, so its fan-out
        # control durable survives restarts (the hard case for the kill switch).
        for name in self.risk_replicas:
            self.sup.add(name, "btcbot.risk", {**common, **exchange, "BTCBOT_INSTANCE": name,
                                               "RISK_MAX_INTENT_AGE": "60", "RISK_MAX_BOOK_AGE": "0",
                                               "RISK_AUTO_MODE": "false", **self.keys.service_env("risk"),
                                               **self.risk_env})  # fmt: skip
        for name in REPLICAS:
            self.sup.add(name, "btcbot.execution", {
                **common, **exchange,
                "BTCBOT_INSTANCE": name,
                "EXECUTION_FILL_POLL_INTERVAL": "0.5",
                "EXECUTION_LOCK_TTL": "5",
                "EXECUTION_LOCK_WAIT": "1",
                "EXECUTION_LOOKUP_DELAY": "1",
                "EXECUTION_SWEEP_INTERVAL": "2",
                "EXECUTION_SWEEP_SETTLE": "8",
                **self.keys.service_env("execution"),
            })  # fmt: skip
        ws_url = self.sim_url.replace("http://", "ws://") + "/ws"
        for name in self.front_replicas:
            service = name.rsplit("-", 1)[0]
            self.sup.add(name, f"btcbot.{service}", {**common, **exchange, "BTCTURK_WS_URL": ws_url,
                                                     "BTCBOT_INSTANCE": name, **self.keys.service_env(service),
                                                     **self.front_env})  # fmt: skip
        children = (*self.ledger_replicas, *self.risk_replicas, *REPLICAS, *self.front_replicas)
        for name in children:
            await self.sup.start(name)
        for name in children:
            await self.sup.wait_ready(name, 90)

    async def kill(self, name: str) -> None:
        """SIGKILL a child (no goodbye: no ack, no record, no release)."""
        child = self.sup.children[name]
        child.expected_exit = True
        with contextlib.suppress(ProcessLookupError):
            child.process.send_signal(signal.SIGKILL)
        await child.process.wait()
        self.kills.append(name)

    async def restart(self, name: str) -> None:
        self.sup.children[name].expected_exit = False
        await self.sup.start(name)

    def log_events(self, name: str, event: str) -> list[dict[str, Any]]:
        """The JSON log lines of a child with this event name (all its lives)."""
        path = self.sup.children[name].log_path
        found = []
        for line in path.read_text(errors="replace").splitlines():
            if f'"{event}"' in line:
                with contextlib.suppress(ValueError):
                    found.append(json.loads(line))
        return found

    async def ready(self, name: str) -> bool:
        port = self.sup.children[name].health_port
        status = await asyncio.to_thread(_status, f"http://127.0.0.1:{port}/readyz")
        return status == 200

    # ---- the exchange ---------------------------------------------------------------------------

    async def sim(self, path: str, body: dict[str, Any] | None = None) -> Any:
        return await asyncio.to_thread(_http_json, self.sim_url + path, body)

    async def state(self) -> dict[str, Any]:
        data: dict[str, Any] = await self.sim(f"/sim/state?apiKey={self.api_key}")
        return data

    async def faults(self, **changes: Any) -> None:
        await self.sim("/sim/faults", changes)

    async def top(self) -> tuple[Decimal, Decimal]:
        book = (await self.sim(f"/api/v2/orderbook?pairSymbol={SYMBOL}&limit=1"))["data"]
        return Decimal(str(book["bids"][0][0])), Decimal(str(book["asks"][0][0]))

    # ---- intents --------------------------------------------------------------------------------

    async def publish_intents(self, count: int, per_second: float, between: Callable[[int], Awaitable[None]]) -> None:
        """Limit intents, `per_second`, buys and sells mixed; `between(i)` runs after each.

        Of every ten after the first ten: one sell rests inside the spread (so our next buys, priced through the
        ask, cross it: a self-match, one exchange trade id on two of our orders), one sell takes the bid, and the
        rest buy through the ask. The buys run ahead of the sells, so the ledger's position never goes short.
        """
        _bid, ask = await self.top()
        started = time.monotonic()
        for i in range(count):
            if i % 10 == 0:
                bid, ask = await self.top()
            if i >= 10 and i % 10 == 4:
                # Inside the spread (at the ask if there is no room): the best ask until one of our buys takes it.
                side, price = "sell", max(((bid + ask) / 2).quantize(Decimal(1), rounding=ROUND_DOWN), bid + 1)
            elif i >= 10 and i % 10 == 8:
                side, price = "sell", (bid * Decimal("0.997")).quantize(Decimal(1), rounding=ROUND_DOWN)
            else:
                # Through the touch by 0.3%: it takes liquidity now, whatever the crowd did meanwhile.
                side, price = "buy", (ask * Decimal("1.003")).quantize(Decimal(1), rounding=ROUND_DOWN)
            await self.publish_intent(side, price)
            await between(i)
            lag = started + (i + 1) / per_second - time.monotonic()
            if lag > 0:
                await asyncio.sleep(lag)

    async def publish_intent(self, side: str, price: Decimal) -> None:
        from btcbot.contracts import ids, subjects
        from btcbot.contracts.messages import OrderIntent

        book = ids.book_id(SYMBOL, time.time_ns(), len(self.published))
        intent = OrderIntent(
            id=ids.intent_id("chaos", SYMBOL, book), ts_ns=time.time_ns(), strategy="chaos", symbol=SYMBOL,
            side=side, order_type="limit", price=price, quantity=Decimal("0.0005"),  # type: ignore[arg-type]
            reason="chaos test", book_id=book,
        )  # fmt: skip
        await self.publisher.publish(subjects.intent(SYMBOL), intent)
        self.published.append(intent.id)

    # ---- the verdict ----------------------------------------------------------------------------

    def sources(self) -> Any:
        from btcbot.cli.verify import Sources

        # A RedisGroup is read through its Sentinels, as an operator's `btcbot verify` would.
        sentinel = {"redis_sentinels": tuple(self.redis.sentinel_addresses), "redis_sentinel_master":
                    self.redis.master_name} if hasattr(self.redis, "sentinel_addresses") else {}  # fmt: skip
        return Sources(self.sim_url, self.api_key, self.nats.url, self.database_url, self.redis.url, self.key_prefix,
                       sim_admin_token=SIM_ADMIN_TOKEN, **sentinel)  # fmt: skip

    async def verdict(self) -> dict[str, Any]:
        from btcbot.cli.verify import compare, gather

        return compare(await gather(self.sources()))

    async def quiesce(self, timeout: float) -> dict[str, Any]:
        """Wait until verify finds nothing wrong twice in a row (or time runs out); returns the last verdict."""
        deadline = time.monotonic() + timeout
        clean = 0
        verdict: dict[str, Any] = {}
        while time.monotonic() < deadline:
            verdict = await self.verdict()
            clean = clean + 1 if verdict["ok"] and verdict["intents"] == len(self.published) else 0
            if clean >= 2:
                break
            if not verdict["ok"]:
                shown = {k: v for k, v in verdict.items() if v and k not in ("examples",)}
                print(
                    f"[chaos] {time.monotonic() - deadline + timeout:.0f}s not settled: {shown} {verdict['examples']}"
                )
            await asyncio.sleep(2.0)
        return verdict


def _http_json(url: str, body: dict[str, Any] | None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method="GET" if body is None else "POST",
                                     headers={"X-Sim-Admin-Token": SIM_ADMIN_TOKEN})  # fmt: skip
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def _status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return 0


@pytest_asyncio.fixture(loop_scope="session")
async def chaos(pg_admin_url: str) -> AsyncIterator[Chaos]:
    async with running_rig(pg_admin_url) as rig:
        yield rig


@pytest.fixture
def chaos_rig(pg_admin_url: str) -> Callable[..., contextlib.AbstractAsyncContextManager[Chaos]]:
    """A rig with options of one's own: `async with chaos_rig(risk_replicas=(...), risk_env={...}) as rig`."""
    return functools.partial(running_rig, pg_admin_url)


@contextlib.asynccontextmanager
async def running_rig(pg_admin_url: str, **options: Any) -> AsyncIterator[Chaos]:
    """A started rig (`options` are Chaos fields, e.g. risk_replicas, risk_env), torn down on exit.

    `redis_ha=True`: Redis is a master, a replica and three Sentinels (btcbot.devstack.redisha), which every
    service follows (REDIS_SENTINELS), with claims and tokens acknowledged by the replica.
    `nats_cluster=N`: N clustered NATS nodes (the stream replicas then come from BTCBOT_STREAM_REPLICAS).
    """
    from btcbot.devstack.infra import drop_database, ensure_database, start_nats
    from btcbot.devstack.natscluster import start_nats_cluster
    from btcbot.devstack.restarts import RestartPolicy
    from btcbot.devstack.supervisor import Supervisor

    base = Path(tempfile.mkdtemp(prefix="btcbot-chaos-"))
    base.chmod(0o711)
    nodes = options.pop("nats_cluster", 0)
    nats = start_nats_cluster(base / "nats", nodes, secured=False) if nodes else start_nats(base / "nats")
    redis: Any
    if options.pop("redis_ha", False):
        from btcbot.devstack.redisha import RedisGroup

        redis = RedisGroup(base / "redis").start()
        options["redis_env"] = redis.env(min_replicas_ack=1)
    else:
        redis = PrivateRedis(base)
        redis.start()
    db_name = f"btcbot_chaos_{secrets.token_hex(4)}"
    database_url = await ensure_database(pg_admin_url, db_name)
    # No restarts: the test restarts what it kills, when it chooses to.
    rig = Chaos(base, Supervisor(base / "logs", RestartPolicy(max_restarts=0)), nats, redis, database_url, **options)
    try:
        await rig.start()
        yield rig
    finally:
        with contextlib.suppress(Exception):
            await rig.sup.close()
        if rig.nc is not None:
            with contextlib.suppress(Exception):
                await rig.nc.close()
        redis.stop()
        nats.stop()
        with contextlib.suppress(Exception):
            await drop_database(pg_admin_url, db_name)
        if os.environ.get("BTCBOT_KEEP_CHAOS") != "1":
            shutil.rmtree(base, ignore_errors=True)
        else:
            print(f"chaos state kept in {base}")


# Figures chaos tests measure (handover and recovery times), shown in a section of the terminal summary so that
# a run's log (CI's) carries them even though pytest captures the output of passing tests.
FIGURES: list[str] = []


@pytest.fixture
def figures() -> Callable[[str], None]:
    """`figures(line)`: print a measured figure and keep it for the summary at the end of the run."""

    def say(line: str) -> None:
        print(line)
        FIGURES.append(line)

    return say


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """The chaos tests' measured figures, after the results."""
    if FIGURES:
        terminalreporter.section("chaos figures")
        for line in FIGURES:
            terminalreporter.write_line(line)
