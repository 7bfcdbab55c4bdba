"""`btcbot doctor` and `btcbot migrate`: check every dependency with one clear line each."""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any

from btcbot.cli.natsconfig import cli_auth
from btcbot.contracts.streams import ALL_CONSUMERS, ALL_STREAMS, ConsumerSpec
from btcbot.devstack.endpoints import redact_url
from btcbot.devstack.infra import DEFAULT_NATS_URL, DEFAULT_REDIS_URL
from btcbot.devstack.probes import nats_usable, pg_usable, redis_usable
from btcbot.runtime.jetstream import NatsAuth

DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/btcbot"


@dataclass(frozen=True)
class Check:
    """One line of the doctor's report."""

    name: str
    ok: bool
    detail: str

    def line(self) -> str:
        """`OK   nats: ...` or `FAIL nats: ...`."""
        return f"{'OK  ' if self.ok else 'FAIL'} {self.name}: {self.detail}"


async def _guard(name: str, fn: Callable[[], Awaitable[Check]]) -> Check:
    try:
        return await fn()
    except Exception as exc:
        return Check(name, False, f"{type(exc).__name__}: {exc}")


async def check_streams(nats_url: str, auth: NatsAuth | None = None) -> list[Check]:
    """Every stream and durable consumer of the contracts exists."""
    from btcbot.runtime.jetstream import connect

    nc = await connect(nats_url, "btcbot-doctor", 5, reconnect_forever=False, auth=auth)
    checks: list[Check] = []
    try:
        js = nc.jetstream()
        for spec in ALL_STREAMS:
            try:
                info = await js.stream_info(spec.name)
                checks.append(Check(f"stream {spec.name}", True, f"{info.state.messages} messages"))
            except Exception as exc:
                checks.append(
                    Check(
                        f"stream {spec.name}",
                        False,
                        f"missing ({type(exc).__name__}); start any service or `btcbot up` to provision it",
                    )
                )
        checks.extend([await _check_consumer(js, consumer) for consumer in ALL_CONSUMERS])
    finally:
        await nc.close()
    return checks


async def _check_consumer(js: Any, consumer: ConsumerSpec) -> Check:
    name = f"consumer {consumer.durable}"
    if consumer.fanout:
        # One durable per replica: `<name>-<instance>`.
        replicas = [c for c in await js.consumers_info(consumer.stream) if c.name.startswith(f"{consumer.durable}-")]
        if not replicas:
            return Check(name, False, "no replica consumer yet; its service has not started")
        behind = max(c.num_pending for c in replicas)
        return Check(name, True, f"{len(replicas)} replica(s), most pending {behind}")
    try:
        info = await js.consumer_info(consumer.stream, consumer.durable)
    except Exception as exc:
        return Check(name, False, f"missing ({type(exc).__name__}); its service has not started yet")
    return Check(name, True, f"pending {info.num_pending}, unacked {info.num_ack_pending}")


async def check_exchange(env: Mapping[str, str]) -> Check:
    """The exchange (or simulator) answers, and the credentials work when given."""
    from btcbot.btcturk.rest import BtcTurkClient

    base = env.get("BTCTURK_BASE_URL", "http://127.0.0.1:8800")
    key, secret = env.get("BTCTURK_API_KEY"), env.get("BTCTURK_API_SECRET")
    async with BtcTurkClient(base, key, secret, timeout=3.0) as client:
        server = await client.server_time()
        detail = f"{base} answers (server time {server.server_time_ms} ms)"
        if key and secret:
            balances = await client.balances()
            detail += f"; credentials accepted ({len(balances)} balances)"
        else:
            detail += "; BTCTURK_API_KEY/BTCTURK_API_SECRET not set, private API not checked"
    return Check("exchange", True, detail)


async def run_doctor(env: Mapping[str, str]) -> int:
    """Print one line per check; exit 1 when any fails."""
    checks = await doctor_checks(env)
    for check in checks:
        print(check.line())
    failed = [c for c in checks if not c.ok]
    print(f"{len(checks) - len(failed)} ok, {len(failed)} failed", file=sys.stderr)
    return 1 if failed else 0


async def doctor_checks(env: Mapping[str, str]) -> list[Check]:
    """Every check of `btcbot doctor` (also the first step of `btcbot canary`)."""
    nats_url = env.get("NATS_URL", DEFAULT_NATS_URL)
    redis_url = env.get("REDIS_URL", DEFAULT_REDIS_URL)
    database_url = env.get("DATABASE_URL", DEFAULT_DATABASE_URL)
    checks: list[Check] = []

    async def probe(name: str, url: str, fn: Callable[[str], Awaitable[str | None]]) -> Check:
        problem = await fn(url)
        return Check(name, problem is None, f"{redact_url(url)} " + ("answers" if problem is None else problem))

    auth = cli_auth(env, "reader")
    nats_check = await _guard("nats", lambda: probe("nats", nats_url, partial(nats_usable, auth=auth)))
    checks.append(nats_check)
    if nats_check.ok:
        try:
            checks.extend(await check_streams(nats_url, auth))
        except Exception as exc:
            checks.append(Check("streams", False, f"{type(exc).__name__}: {exc}"))
    checks.append(await _guard("redis", lambda: probe("redis", redis_url, redis_usable)))
    checks.append(await _guard("postgres", lambda: probe("postgres", database_url, pg_usable)))
    checks.append(await _guard("exchange", lambda: check_exchange(env)))
    return checks


async def run_migrate(env: Mapping[str, str]) -> int:
    """Apply the ledger's migrations to DATABASE_URL."""
    from btcbot.ledger.migrations import migrate

    url = env.get("DATABASE_URL", DEFAULT_DATABASE_URL)
    applied = await migrate(url)
    print(f"{redact_url(url)}: applied {len(applied)} migration(s)" + (f": {', '.join(applied)}" if applied else ""))
    return 0
