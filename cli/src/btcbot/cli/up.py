"""`btcbot up`: the whole system on one machine, against the simulator.

Order of events: resolve NATS, Redis and Postgres (or start embedded ones), provision streams, start the
simulator, then ledger, execution, risk, strategy and marketdata as separate processes. At the end (the
`--duration` elapsed, or Ctrl-C) the pipeline is drained from the front: marketdata and strategy stop first,
execution stops once risk's and its own inputs are consumed, the ledger stops once it has booked every fill.
The last line printed is one JSON object that says what the run did.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import secrets
import shutil
import signal
import sys
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import msgspec

from btcbot.btcturk.rest import BtcTurkClient
from btcbot.cli.preflight import settings_class
from btcbot.cli.profiles import Applied, apply_profile
from btcbot.cli.progress import Progress
from btcbot.cli.rundb import RunDatabase, prepare_database
from btcbot.cli.runplan import RunPlan, plan_run
from btcbot.cli.runs import SUMMARY_FILE, RunError, set_current
from btcbot.cli.summary import check_trace_file, trading_summary
from btcbot.cli.topology import Topology, plan_topology
from btcbot.contracts import ids, subjects
from btcbot.contracts.codec import decode
from btcbot.contracts.messages import CancelOrder, OrderIntent
from btcbot.contracts.streams import ALL_STREAMS, EXECUTION_ORDERS, LEDGER_EXECUTION, RISK_INTENTS
from btcbot.devstack.infra import Dependency, Infra, InfraError, resolve_infra
from btcbot.devstack.natsusers import IDENTITIES_FILE, NatsUser, load_users, user_auth
from btcbot.devstack.restarts import RestartPolicy, RestartSettingError
from btcbot.devstack.supervisor import Supervisor
from btcbot.ledger.queries import fill_count
from btcbot.runtime.errors import SettingsError
from btcbot.runtime.inspect import last_sequence, read_stream
from btcbot.runtime.jetstream import (
    STREAM_REPLICAS_VARIABLE,
    NatsAuth,
    NatsPublisher,
    connect,
    nats_auth_from_env,
    provision,
)
from btcbot.runtime.settings import CommonSettings, ExchangeSettings, env_name
from btcbot.runtime.signing import RunKeys

SERVICES_IN_START_ORDER = ("ledger", "execution", "risk", "strategy", "marketdata")
DEFAULT_FUNDS = "TRY=1000000,BTC=1,ETH=20,USDT=10000"
# Quote assets BTCTurk lists pairs against, longest first so BTCUSDT splits as BTC/USDT.
_QUOTES = ("USDT", "USDC", "TRY", "EUR", "BTC")


def assets_of(symbols: tuple[str, ...]) -> set[str]:
    """Base and quote assets of pair symbols (BTCTRY -> BTC, TRY)."""
    assets: set[str] = set()
    for symbol in symbols:
        quote = next((q for q in _QUOTES if symbol.endswith(q) and len(symbol) > len(q)), None)
        if quote is None:
            raise ValueError(f"cannot tell the quote asset of {symbol!r}")
        assets.update((symbol[: -len(quote)], quote))
    return assets


def funds_for(symbols: tuple[str, ...], funds: str) -> str:
    """The funding entries for the assets these symbols trade: the simulator lists no other asset, so the
    ledger must not be seeded with one either."""
    wanted = assets_of(symbols)
    return ",".join(e for e in funds.split(",") if e.partition("=")[0].strip().upper() in wanted)


@dataclass(frozen=True)
class UpOptions:
    """What `btcbot up` was asked to do."""

    duration: float | None
    state_dir: Path
    symbols: tuple[str, ...]
    seed: int
    keep_state: bool
    funds: str = DEFAULT_FUNDS
    universe: str = "static"
    quiet: bool = False  # no progress lines on stderr (progress.json is still written)
    profile: str | None = None  # a named set of settings (cli/profiles.py)
    plan: RunPlan | None = None  # None: a run in state_dir with a generated name (what tests build)
    strategies: str | None = None  # STRATEGY_STRATEGIES for the strategy service (None: its default)
    nats_cluster: int = 0  # --nats-cluster: clustered NATS nodes to start (0: one server)
    replicas: int = 1  # --replicas: processes per service


def say(text: str) -> None:
    """Progress for the operator (stderr, so stdout's last line stays the JSON summary)."""
    print(text, file=sys.stderr, flush=True)


async def run_up(opts: UpOptions) -> int:
    """Run the system; returns the process exit code."""
    plan = opts.plan or plan_run(
        name=None, resume=None, state_dir=opts.state_dir, root_option=None, env=os.environ, now=datetime.now(UTC)
    )
    state = plan.directory.resolve()
    try:
        policy = RestartPolicy.from_env(os.environ)
        topology = plan_topology(opts.nats_cluster, opts.replicas, os.environ)
    except (RestartSettingError, SettingsError) as exc:
        say(f"btcbot up: {exc}")
        return 2
    if not (opts.keep_state or plan.resume):
        for sub in ("infra", "logs", "sim.port", "traces.jsonl", "run.json"):
            target = state / sub
            if target.is_dir():
                shutil.rmtree(target)
            elif target.exists():
                target.unlink()
    (state / "infra").mkdir(parents=True, exist_ok=True)
    if plan.root is not None:
        set_current(plan.root, plan.name)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    try:
        # The maintenance database first: the run's own is created (or found, on --resume) by prepare_database.
        infra = await resolve_infra(
            state / "infra",
            os.environ,
            database="postgres",
            secure_nats=True,
            nats_auth=_given_admin_auth(os.environ),
            nats_cluster=topology.nats_nodes,
        )
    except InfraError as exc:
        say(f"btcbot up: {exc}")
        return 2
    supervisor = Supervisor(state / "logs", policy)
    try:
        try:
            database = await prepare_database(infra.database_url, plan, os.environ)
        except RunError as exc:
            say(f"btcbot up: {exc}")
            return 2
        infra.postgres = Dependency(infra.postgres.name, database.url, infra.postgres.embedded, infra.postgres.reason)
        code = await _run(opts, plan, state, infra, database, supervisor, stop, topology)
    finally:
        await supervisor.close()
        infra.stop()
        _mark_run(state / "run.json", "failed", only_if="running")  # an exception or a failed start
    if code != 0:
        _mark_run(state / "run.json", "failed", only_if="running")
    return code


async def _run(
    opts: UpOptions,
    plan: RunPlan,
    state: Path,
    infra: Infra,
    database: RunDatabase,
    sup: Supervisor,
    stop: asyncio.Event,
    topology: Topology,
) -> int:
    say(f"   run {plan.name}{' (resumed)' if plan.resume else ''}: {state}")
    for line in infra.describe():
        say(f"   {line}")
    say(f"   {topology.describe()}")
    users = nats_users(infra, state, os.environ)
    # Reconnect forever: a NATS restart during the run must not cost the drain and the summary.
    nc = await connect(infra.nats_url, "btcbot-up", 10, reconnect_forever=True, auth=_up_auth(users, os.environ))
    js = nc.jetstream()
    await provision(js, ALL_STREAMS, replicas=topology.stream_replicas)
    start_seqs = {spec.name: await last_sequence(js, spec.name) for spec in ALL_STREAMS}

    api_key, api_secret, sim_admin = exchange_account(plan.previous)
    trace_file = state / "traces.jsonl"
    symbols = ",".join(opts.symbols)
    funds = funds_for(opts.symbols, opts.funds)
    profile = _profile(opts.profile)
    sim_port = await _start_sim(
        sup,
        sim_args(state / "sim.port", opts.seed, symbols, funds, plan.sim_state_file),
        (api_key, api_secret, sim_admin),
        profile,
    )
    base_url = f"http://127.0.0.1:{sim_port}"
    say(f"   simulator: {base_url} (seed {opts.seed}, symbols {symbols})")

    common = {
        **infra.env(),
        "BTCBOT_KEY_PREFIX": plan.key_prefix,
        "BTCBOT_SYMBOLS": symbols,
        "MARKETDATA_UNIVERSE": opts.universe,
        "BTCBOT_TRACE_FILE": str(trace_file),
        # Names from the settings classes (env_name), so a renamed setting cannot be set under its old name.
        env_name(ExchangeSettings, "btcturk_base_url"): base_url,
        env_name(ExchangeSettings, "btcturk_ws_url"): f"ws://127.0.0.1:{sim_port}/ws",
        env_name(ExchangeSettings, "btcturk_api_key"): api_key,
        env_name(ExchangeSettings, "btcturk_api_secret"): api_secret,
        env_name(settings_class("ledger"), "opening_balances"): funds,
        env_name(CommonSettings, "shutdown_grace"): "5",
        # BTCTurk allows 120 user-trade reads a minute per IP, shared by every process here: polling two
        # symbols every 1.5 s leaves room for the ledger's reconciliation.
        "EXECUTION_FILL_POLL_INTERVAL": os.environ.get("EXECUTION_FILL_POLL_INTERVAL", "1.5"),
        **({"STRATEGY_STRATEGIES": opts.strategies} if opts.strategies else {}),
        **profile.service_env,
        **({STREAM_REPLICAS_VARIABLE: str(topology.stream_replicas)} if topology.stream_replicas else {}),
    }
    keys = RunKeys.generate()
    children = _add_services(sup, topology, common, keys, users)
    started = time.monotonic()
    try:
        for child in children:
            await sup.start(child)
        for child in children:
            await sup.wait_ready(child)
    except RuntimeError as exc:
        say(f"btcbot up: {exc}")
        await nc.close()
        return 1
    say(f"   services ready in {time.monotonic() - started:.1f}s: {', '.join(children)}")
    _write_run_file(
        state / "run.json",
        {
            **_run_record(plan, state, infra, database, symbols, opts.seed),
            "pid": os.getpid(),
            "sim_url": base_url,
            "api_key": api_key,
            "api_secret": api_secret,
            "sim_admin_token": sim_admin,
            "nats_url": infra.nats_url,
            "redis_url": infra.redis_url,
            "database_url": infra.database_url,
            "key_prefix": common["BTCBOT_KEY_PREFIX"],
            "trace_file": str(trace_file),
            "logs": str(sup.log_dir),
            "health_ports": {c.name: c.health_port for c in sup.children.values() if c.health_port},
            **_signing_run_info(keys),
            **run_file_nats(users),
        },
    )
    health_ports = {c.name: c.health_port for c in sup.children.values() if c.health_port}
    (state / PROMETHEUS_TARGETS).write_text(json.dumps(prometheus_targets(health_ports), indent=2))
    say(f"   logs: {sup.log_dir}/<name>.log   traces: {trace_file}   metrics targets: {state / PROMETHEUS_TARGETS}")
    say("   running" + (f" for {opts.duration:.0f}s" if opts.duration else "; Ctrl-C stops") + " ...")
    say(f"   restarts: {sup.policy.describe()}")
    progress = Progress(js, start_seqs, state, quiet=opts.quiet, say=say).start()

    await sup.wait_for_stop(stop, opts.duration)
    say("   stopping: draining the pipeline from the front")
    async with BtcTurkClient(base_url, api_key, api_secret, timeout=5.0) as exchange:
        await _drain_pipeline(
            js, sup, exchange, (base_url, sim_admin), api_key, opts.symbols, start_seqs["EXECUTION"], topology
        )
    await progress.stop()
    await asyncio.sleep(1.0)  # span exporters flush on their schedule
    summary = await _summarize(js, start_seqs, infra.database_url, trace_file)
    summary.update(await _balances(infra.database_url, base_url, api_key, api_secret))
    summary["seconds"] = round(time.monotonic() - started, 1)
    summary["restarts"] = {c.name: c.restarts for c in sup.children.values() if c.restarts}
    summary["events"] = sup.events
    summary.update(sup.verdict())
    await sup.close()
    await nc.close()
    _save_summary(state, plan.name, summary)
    print(json.dumps(summary, sort_keys=False), flush=True)
    return sup.exit_code()


def _add_services(
    sup: Supervisor,
    topology: Topology,
    common: Mapping[str, str],
    keys: RunKeys,
    users: Mapping[str, NatsUser] | None,
) -> list[str]:
    """Declare every replica of every service, in start order; returns their children's names."""
    children = []
    for name in SERVICES_IN_START_ORDER:
        env = {**common, **_signing_env(keys, name), **service_nats_env(users, name)}
        for child in topology.children(name):
            # A fixed instance per child: a restarted replica resumes its own fan-out durables and leases.
            instance = {"BTCBOT_INSTANCE": child} if topology.service_replicas > 1 else {}
            sup.add(child, f"btcbot.{name}", {**env, **instance})
            children.append(child)
    return children


def _profile(name: str | None) -> Applied:
    """The profile's settings (the environment's own values win), said once."""
    profile = apply_profile(name, os.environ)
    if profile.name:
        shown = [*profile.service_env.items(), *zip(profile.sim_args[::2], profile.sim_args[1::2], strict=True)]
        say(f"   profile {profile.name}: " + " ".join(f"{k}={v}" for k, v in shown))
    return profile


async def _start_sim(sup: Supervisor, args: list[str], creds: tuple[str, str, str], profile: Applied) -> int:
    """Start the simulator with `args` (sim_args) and the profile's market options; returns its port."""
    api_key, api_secret, admin = creds
    env = {"SIM_API_KEY": api_key, "SIM_API_SECRET": api_secret, "SIM_ADMIN_TOKEN": admin}
    port_file = Path(args[args.index("--port-file") + 1])
    port_file.unlink(missing_ok=True)  # a resumed run's file names the port of its earlier simulator
    sup.add("sim", "btcbot.sim", env, [*args, *profile.sim_args], health=False)
    await sup.start("sim")
    return await _wait_for_port(port_file, sup, 30)


def exchange_account(previous: Mapping[str, Any]) -> tuple[str, str, str]:
    """API key, secret and admin token of the run's account; a resumed run keeps its own (the simulator
    restores that account from its saved state)."""
    api_key = str(previous.get("api_key") or "btcbot-demo")
    api_secret = str(previous.get("api_secret") or base64.b64encode(secrets.token_bytes(32)).decode())
    return api_key, api_secret, str(previous.get("sim_admin_token") or sim_admin_token())


def _save_summary(state: Path, name: str, summary: dict[str, Any]) -> None:
    """summary.json (what `btcbot down` prints), and run.json marked stopped."""
    summary["run"] = name
    write_private(state / SUMMARY_FILE, json.dumps(summary, indent=2))
    _mark_run(state / "run.json", "stopped")


def sim_args(port_file: Path, seed: int, symbols: str, funds: str, state_file: Path) -> list[str]:
    """The simulator's options: a free port reported in `port_file`, its exchange state saved in `state_file`."""
    return [
        *("--port", "0", "--port-file", str(port_file), "--seed", str(seed)),
        *("--symbols", symbols, "--fund", funds, "--state-file", str(state_file)),
    ]


def _run_record(
    plan: RunPlan, state: Path, infra: Infra, database: RunDatabase, symbols: str, seed: int
) -> dict[str, Any]:
    """run.json's description of the run itself (name, status, database, servers, where its files are)."""
    return {
        "name": plan.name,
        "status": "running",
        "state_dir": str(state),
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "resumed": plan.resume,
        "symbols": symbols,
        "seed": seed,
        "database_name": database.name,
        "database_created": database.created,
        "infra": _infra_record(infra),
        "sim_state_file": str(plan.sim_state_file),
        "summary_file": str(state / SUMMARY_FILE),
    }


def _infra_record(infra: Infra) -> dict[str, Any]:
    """What `btcbot verify`/`report` need to bring a stopped run's embedded servers back (runs.py, revive)."""
    return {
        dep.name.lower(): {"embedded": dep.embedded, "url": dep.url}
        for dep in (infra.nats, infra.redis, infra.postgres)
    }


def _mark_run(run_file: Path, status: str, only_if: str | None = None) -> None:
    """Record in run.json that the run ended (its `up` is gone; `btcbot status` shows it down)."""
    if not run_file.exists():
        return
    data = json.loads(run_file.read_text())
    if only_if is not None and data.get("status") != only_if:
        return
    data.update({"status": status, "ended": datetime.now(UTC).isoformat(timespec="seconds")})
    write_private(run_file, json.dumps(data, indent=2))


PROMETHEUS_TARGETS = "prometheus-targets.json"


def prometheus_targets(health_ports: Mapping[str, int]) -> list[dict[str, Any]]:
    """A Prometheus file_sd target list of the services' /metrics (deploy/prometheus/prometheus-local.yml)."""
    return [
        {"targets": [f"127.0.0.1:{port}"], "labels": {"service": name}} for name, port in sorted(health_ports.items())
    ]


def nats_users(infra: Infra, state: Path, env: Mapping[str, str]) -> dict[str, NatsUser] | None:
    """The identities' credentials: generated with the embedded NATS, or from NATS_IDENTITIES_FILE (what
    `btcbot nats-config` wrote for an external server); None: the server has no authorization we know of."""
    if infra.nats.embedded:
        path = state / "infra" / "nats" / IDENTITIES_FILE
        return load_users(path) if path.exists() else None
    given = (env.get("NATS_IDENTITIES_FILE") or "").strip()
    return load_users(Path(given)) if given else None


def _given_admin_auth(env: Mapping[str, str]) -> NatsAuth | None:
    """The admin identity of NATS_IDENTITIES_FILE, or NATS_USER/NATS_PASSWORD: how `up` reaches a given NATS."""
    given = (env.get("NATS_IDENTITIES_FILE") or "").strip()
    if given:
        return user_auth(load_users(Path(given))["admin"])
    return nats_auth_from_env(env)


def _up_auth(users: Mapping[str, NatsUser] | None, env: Mapping[str, str]) -> NatsAuth | None:
    """`up` provisions streams and drains the pipeline: the admin identity when there are identities."""
    return user_auth(users["admin"]) if users is not None else nats_auth_from_env(env)


def service_nats_env(users: Mapping[str, NatsUser] | None, service: str) -> dict[str, str]:
    """A service's own credentials (none: it inherits whatever NATS_USER/NATS_PASSWORD `up` was given)."""
    return users[service].env() if users is not None else {}


def run_file_nats(users: Mapping[str, NatsUser] | None) -> dict[str, Any]:
    """The operator, reader and canary identities for CLI commands run against this system (run.json is 0600)."""
    if users is None:
        return {}
    # An identities file rendered before the canary identity existed lacks it: `btcbot canary` then needs
    # NATS_USER/NATS_PASSWORD (re-render with `btcbot nats-config` to add it; existing passwords are kept).
    roles = [role for role in ("operator", "reader", "canary") if role in users]
    return {"nats_auth": {role: {"user": users[role].user, "password": users[role].password} for role in roles}}


def _signing_env(keys: RunKeys, service: str) -> dict[str, str]:
    """A service's signing keys for this run: risk signs orders, execution checks them, risk and the ledger check
    the operator's control events (docs/security.md "Signatures and key rotation")."""
    return keys.service_env(service)


def _signing_run_info(keys: RunKeys) -> dict[str, Any]:
    """What run.json (0600) holds for `btcbot control` against this run: the operator's key, as env variables."""
    return {"operator_env": keys.operator_env()}


def sim_admin_token() -> str:
    """A fresh token for the simulator's /sim/* admin endpoints (recorded in run.json for tools and tests)."""
    return secrets.token_urlsafe(24)


def write_private(path: Path, text: str) -> None:
    """Write a file only its owner can read, private from its first byte (created 0600, then renamed in place)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)
    tmp.replace(path)


def _write_run_file(path: Path, data: dict[str, Any]) -> None:
    """Where everything of this run is, for tools and tests (it holds the run's secrets: 0600 from the start)."""
    write_private(path, json.dumps(data, indent=2))


async def _wait_for_port(port_file: Path, sup: Supervisor, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if port_file.exists() and port_file.read_text().strip():
            return int(port_file.read_text().strip())
        if not sup.children["sim"].running:
            raise RuntimeError("the simulator exited during start-up; see its log")
        await asyncio.sleep(0.05)
    raise RuntimeError("the simulator did not report its port")


async def _drain(js: Any, stream: str, durable: str, timeout: float) -> bool:
    """Wait until a durable consumer has nothing pending or unacknowledged."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        info = await js.consumer_info(stream, durable)
        if info.num_pending == 0 and info.num_ack_pending == 0:
            return True
        await asyncio.sleep(0.2)
    say(f"   warning: {durable} still had work after {timeout:.0f}s")
    return False


async def _drain_pipeline(
    js: Any,
    sup: Supervisor,
    exchange: BtcTurkClient,
    sim: tuple[str, str],
    api_key: str,
    symbols: tuple[str, ...],
    exec_start: int,
    topology: Topology | None = None,
) -> None:
    """Stop from the front so every decision taken reaches the ledger (what a service that stayed down would have
    consumed is left in its stream: waiting for it would only delay the verdict). Every replica of a service stops;
    a service is drained while any of its replicas is still up."""
    shape = topology or Topology()

    def alive(service: str) -> bool:
        return any(child not in sup.failed for child in shape.children(service))

    for service in ("marketdata", "strategy"):
        for child in shape.children(service):
            await sup.stop(child)
    if alive("risk"):
        await _drain(js, RISK_INTENTS.stream, RISK_INTENTS.durable, 20)
    if alive("execution"):
        await _drain_execution(js, exchange, sim, api_key, symbols, exec_start)
    for child in shape.children("execution"):
        await sup.stop(child)
    if alive("ledger"):
        await _drain(js, LEDGER_EXECUTION.stream, LEDGER_EXECUTION.durable, 30)


async def _drain_execution(
    js: Any, exchange: BtcTurkClient, sim: tuple[str, str], api_key: str, symbols: tuple[str, ...], exec_start: int
) -> None:
    """Until execution has handled every order and published a fill per trade the account made."""
    await _drain(js, EXECUTION_ORDERS.stream, EXECUTION_ORDERS.durable, 30)
    # Orders still resting would fill after execution stops and never reach the ledger: cancel them through
    # execution, then wait until every trade of the account at the exchange has been published as a fill.
    canceled = await _cancel_resting(js, exchange, symbols)
    if canceled:
        say(f"   canceled {canceled} resting order(s)")
        await _drain(js, EXECUTION_ORDERS.stream, EXECUTION_ORDERS.durable, 30)
    await _settle_fills(js, sim, api_key, exec_start, 45)


async def _cancel_resting(js: Any, exchange: BtcTurkClient, symbols: tuple[str, ...]) -> int:
    """Publish a CancelOrder for every open order of ours (those with a client order id) at the exchange."""
    publisher = NatsPublisher(js)
    count = 0
    for symbol in symbols:
        for order in await exchange.open_orders(symbol):
            if not order.client_order_id:
                continue
            reason = "shutdown"
            await publisher.publish(
                subjects.cancel(symbol),
                CancelOrder(
                    id=ids.cancel_command_id(order.client_order_id, reason),
                    ts_ns=time.time_ns(),
                    client_order_id=order.client_order_id,
                    symbol=symbol,
                    reason=reason,
                    requested_by="btcbot-up",
                ),
            )
            count += 1
    return count


async def _settle_fills(js: Any, sim: tuple[str, str], api_key: str, exec_start: int, timeout: float) -> bool:
    """Wait until execution has published one OrderFilled per trade the simulator recorded for the account.

    The simulator's admin view is used rather than the trades endpoint: the latter's rate limit (120/min per
    IP) is shared with execution's own polling, and waiting out a 429 would stall the shutdown.
    """
    deadline = time.monotonic() + timeout
    at_exchange = published = -1
    sim_url, admin_token = sim
    headers = {"X-Sim-Admin-Token": admin_token}
    async with httpx.AsyncClient(base_url=sim_url, timeout=5.0, headers=headers) as admin:
        while time.monotonic() < deadline:
            state = (await admin.get("/sim/state", params={"apiKey": api_key})).json()
            at_exchange = len(state["trades"])
            published = len(
                {
                    m.headers.get("Nats-Msg-Id")
                    async for m in read_stream(js, "EXECUTION", exec_start + 1, "exec.filled.*")
                }
            )
            if published >= at_exchange:
                return True
            await asyncio.sleep(1.0)
    say(f"   warning: {at_exchange} trades at the exchange but {published} fills published after {timeout:.0f}s")
    return False


async def _summarize(js: Any, start_seqs: dict[str, int], database_url: str, trace_file: Path) -> dict[str, Any]:
    counts: Counter[str] = Counter()
    by_strategy: Counter[str] = Counter()
    for stream, start in start_seqs.items():
        async for stored in read_stream(js, stream, start + 1):
            counts[f"stream:{stream}"] += 1
            try:
                message = decode(stored.data)
            except (msgspec.DecodeError, msgspec.ValidationError):
                counts["undecodable"] += 1
                continue
            counts[type(message).__name__] += 1
            if isinstance(message, OrderIntent):
                by_strategy[message.strategy] += 1
    ledger_fills = await fill_count(database_url)
    traces = check_trace_file(trace_file)
    return {
        "books": counts["BookSnapshot"],
        "trades": counts["TradeTick"],
        "intents": counts["OrderIntent"],
        "intents_by_strategy": dict(sorted(by_strategy.items())),
        "orders": counts["SubmitOrder"],
        "denied": counts["OrderDenied"],
        "accepted": counts["OrderAccepted"],
        "rejected": counts["OrderRejected"],
        "canceled": counts["OrderCanceled"],
        "fills": counts["OrderFilled"],
        "ledger_fills": ledger_fills,
        "dead_letters": counts["DeadLetter"],
        "undecodable": counts["undecodable"],
        "trace_complete": traces.complete,
        "trace_id": traces.trace_id,
    }


async def _balances(database_url: str, base_url: str, api_key: str, api_secret: str) -> dict[str, Any]:
    """The ledger's balances against the exchange's, per asset (the simulator is still running here)."""
    from btcbot.cli.report import Exchange, add_exchange, load_report

    report = await load_report(database_url, "TRY")
    await add_exchange(report, Exchange(base_url, api_key, api_secret))
    lines = report.exchange or []
    return {
        "balances_match": report.balances_match,
        "balance_mismatches": [str(line["asset"]) for line in lines if not line["match"]],
        **trading_summary(report),
    }
