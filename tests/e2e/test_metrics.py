"""End to end: /metrics of every service during a real run (docs/metrics.md).

Scrapes each service's BTCBOT_HEALTH_PORT/metrics while the system trades, engages the kill switch (so risk denies
and the control gauges move) and feeds one undecodable intent (a dead letter). Checks that every agreed family is
listed everywhere, that each service's own figures have samples, non-zero where the run traded, and that the
tick-to-order histogram's median agrees within 2x with the median measured from the trace file's spans (book
published by marketdata -> exchange.submit span in execution, in the same trace).
"""

from __future__ import annotations

import asyncio
import json
import math
import re
import statistics
import sys
import time
from collections import defaultdict
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio

from btcbot.runtime.jetstream import connect

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

SERVICES = ("marketdata", "strategy", "risk", "execution", "ledger")
# A strategy that trades often (exit at 1 bp either way, short cooldown): enough orders for two medians.
BUSY = {"STRATEGY_TAKE_PROFIT_BPS": "1", "STRATEGY_STOP_LOSS_BPS": "1", "STRATEGY_COOLDOWN": "0.5"}
ORDERS_WANTED = 6


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def system(redis_url: str, pg_admin_url: str, system_starter: Any) -> AsyncIterator[Any]:
    async with system_starter(redis_url, pg_admin_url, BUSY, nats_auth=True) as running:
        yield running


AGREED = (
    "btcbot_messages_handled_total",
    "btcbot_handle_seconds",
    "btcbot_stage_latency_seconds",
    "btcbot_tick_to_order_seconds",
    "btcbot_orders_total",
    "btcbot_denials_total",
    "btcbot_fills_total",
    "btcbot_fees_quote_total",
    "btcbot_consumer_pending",
    "btcbot_consumer_ack_pending",
    "btcbot_book_age_seconds",
    "btcbot_ws_reconnects_total",
    "btcbot_breaker_state",
    "btcbot_http_429_total",
    "btcbot_dependency_up",
    "btcbot_kill_switch_engaged",
    "btcbot_mode",
    "btcbot_alarm_active",
    "btcbot_equity_quote",
    "btcbot_bot_pnl_quote",
    "btcbot_bot_drawdown_quote",
    "btcbot_daily_pnl_quote",
    "btcbot_exposure_quote",
    "btcbot_reconcile_mismatches",
    "btcbot_reconcile_seconds",
    "btcbot_halted_symbols",
    "btcbot_quarantined_fills",
    "btcbot_dead_letters_total",
    "btcbot_submit_seconds",
    "btcbot_stale_books_total",
    "btcbot_books_total",
)

# Families each service must have SAMPLES of after the run below (sample name -> must some value be > 0).
OWN: dict[str, dict[str, bool]] = {
    "marketdata": {
        "btcbot_books_total": True,
        "btcbot_stale_books_total": False,
        "btcbot_book_age_seconds": False,
        "btcbot_breaker_state": False,
        "btcbot_dependency_up": True,
    },
    "strategy": {
        "btcbot_messages_handled_total": True,
        "btcbot_handle_seconds_count": True,
        "btcbot_stage_latency_seconds_count": True,
        "btcbot_consumer_pending": False,
        "btcbot_consumer_ack_pending": False,
        "btcbot_dependency_up": True,
    },
    "risk": {
        "btcbot_messages_handled_total": True,
        "btcbot_stage_latency_seconds_count": True,
        "btcbot_denials_total": True,
        "btcbot_kill_switch_engaged": False,  # 1 while engaged was checked above; released by now
        "btcbot_mode": True,
        "btcbot_dead_letters_total": True,
        "btcbot_consumer_pending": False,
        "btcbot_dependency_up": True,
    },
    "execution": {
        "btcbot_messages_handled_total": True,
        "btcbot_tick_to_order_seconds_count": True,
        "btcbot_stage_latency_seconds_count": True,
        "btcbot_orders_total": True,
        "btcbot_submit_seconds_count": True,
        "btcbot_breaker_state": False,
        "btcbot_consumer_pending": False,
        "btcbot_dependency_up": True,
    },
    "ledger": {
        "btcbot_messages_handled_total": True,
        "btcbot_fills_total": True,
        "btcbot_fees_quote_total": True,
        "btcbot_stage_latency_seconds_count": True,
        "btcbot_equity_quote": True,
        "btcbot_bot_pnl_quote": False,
        "btcbot_bot_drawdown_quote": False,
        "btcbot_daily_pnl_quote": False,
        "btcbot_exposure_quote": False,
        "btcbot_halted_symbols": False,
        "btcbot_quarantined_fills": False,
        "btcbot_consumer_pending": False,
        "btcbot_dependency_up": True,
    },
}

_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})?\s+(\S+)$")
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def parse(text: str) -> tuple[set[str], list[tuple[str, dict[str, str], float]]]:
    """The families listed (# TYPE) and the samples of a Prometheus text page."""
    families: set[str] = set()
    samples: list[tuple[str, dict[str, str], float]] = []
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            families.add(line.split()[2])
        elif line and not line.startswith("#"):
            match = _SAMPLE.match(line)
            assert match, f"not a sample line: {line!r}"
            labels = dict(_LABEL.findall(match.group(2) or ""))
            samples.append((match.group(1), labels, float(match.group(3))))
    return families, samples


async def scrape(system: Any, service: str) -> str:
    port = system.run["health_ports"][service]
    async with httpx.AsyncClient(timeout=5) as client:
        response = await client.get(f"http://127.0.0.1:{port}/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return response.text


def total(samples: list[tuple[str, dict[str, str], float]], name: str, **match: str) -> float:
    return sum(v for n, labels, v in samples if n == name and all(labels.get(k) == x for k, x in match.items()))


async def wait_for(predicate: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = await predicate()
        if last:
            return last
        await asyncio.sleep(1.0)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}; last: {last!r}")


def histogram_median(samples: list[tuple[str, dict[str, str], float]], name: str) -> float:
    """The median from cumulative buckets (summed over label sets), interpolated as histogram_quantile does."""
    buckets: dict[float, float] = defaultdict(float)
    for n, labels, value in samples:
        if n == f"{name}_bucket":
            buckets[math.inf if labels["le"] == "+Inf" else float(labels["le"])] += value
    bounds = sorted(buckets)
    count = buckets[math.inf]
    assert count > 0
    rank = count / 2
    lower, below = 0.0, 0.0
    for bound in bounds:
        if buckets[bound] >= rank:
            assert bound != math.inf, "median above the last bucket"
            return lower + (bound - lower) * (rank - below) / (buckets[bound] - below)
        lower, below = bound, buckets[bound]
    raise AssertionError("no bucket holds the median")


def span_tick_to_order(trace_file: Path) -> list[float]:
    """Per order: exchange.submit span start minus the start of marketdata's book publish span of its trace."""
    book_start: dict[str, int] = {}
    submits: list[tuple[str, int]] = []
    with trace_file.open(encoding="utf-8") as fh:
        for line in fh:
            span = json.loads(line)
            if span["service"] == "marketdata" and span["name"].startswith("publish md"):
                book_start[span["trace_id"]] = span["start_ns"]
            elif span["service"] == "execution" and span["name"] == "exchange.submit":
                submits.append((span["trace_id"], span["start_ns"]))
    return [(start - book_start[tid]) / 1e9 for tid, start in submits if tid in book_start]


async def btcbot(system: Any, *args: str) -> tuple[int, str]:
    env = {**system.cli_env(), **system.run.get("operator_env", {})}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "btcbot.cli", *args, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(process.communicate(), 60)
    return int(process.returncode or 0), out.decode()


async def test_every_service_serves_the_agreed_figures(system: Any) -> None:
    async def traded() -> bool:
        _, ledger = parse(await scrape(system, "ledger"))
        _, execution = parse(await scrape(system, "execution"))
        fills = total(ledger, "btcbot_fills_total")
        orders = total(execution, "btcbot_tick_to_order_seconds_count")
        if fills >= 1 and orders >= ORDERS_WANTED:
            return True
        progress.update(
            fills=fills, orders=orders, accepted=total(execution, "btcbot_orders_total", outcome="accepted")
        )
        return False

    progress: dict[str, float] = {}
    try:
        await wait_for(traded, 240, "fills booked and orders placed")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; figures: {progress}; stderr:\n{system.stderr_tail(3000)}") from None

    # The kill switch: risk denies the strategy's intents and reports the switch.
    code, out = await btcbot(system, "control", "kill", "--reason", "metrics drill", "--operator", "e2e")
    assert code == 0, out
    try:

        async def denied() -> bool:
            _, risk = parse(await scrape(system, "risk"))
            return (
                total(risk, "btcbot_kill_switch_engaged") == 1
                and total(risk, "btcbot_denials_total", reason="KILL_SWITCH") > 0
            )

        await wait_for(denied, 60, "risk to report the kill switch and deny")
    finally:
        code, out = await btcbot(system, "control", "release", "--reason", "drill over", "--operator", "e2e")
        assert code == 0, out

    # One undecodable intent: risk dead-letters it.
    nc = await connect(system.run["nats_url"], "e2e-metrics", 5, reconnect_forever=False, auth=system.nats_auth())
    try:
        await nc.jetstream().publish("intent.BTCTRY", b"\xc1 not an intent", headers={"Nats-Msg-Id": "metrics-dlq"})
    finally:
        await nc.close()

    async def dead_lettered() -> bool:
        _, risk = parse(await scrape(system, "risk"))
        released = total(risk, "btcbot_kill_switch_engaged") == 0
        return released and total(risk, "btcbot_dead_letters_total", service="risk") > 0

    await wait_for(dead_lettered, 60, "the dead letter counted and the kill switch released")
    await asyncio.sleep(6)  # one more consumer-lag poll (BTCBOT_METRICS_POLL_INTERVAL, 5 s)

    pages = {service: parse(await scrape(system, service)) for service in SERVICES}
    problems: list[str] = []
    for service, (families, samples) in pages.items():
        missing = [name for name in AGREED if name not in families]
        if missing:
            problems.append(f"{service} does not list {missing}")
        for name, nonzero in OWN[service].items():
            values = [v for n, _, v in samples if n == name]
            if not values:
                problems.append(f"{service} has no sample of {name}")
            elif nonzero and not any(v > 0 for v in values):
                problems.append(f"{service}: {name} is all zero")
        # Labels stay bounded: no instance, pod or order ids.
        for name, labels, _ in samples:
            bad = {"instance", "pod", "client_order_id", "order_id"} & set(labels)
            if bad:
                problems.append(f"{service}: {name} carries {bad}")
    assert not problems, "\n".join(problems)

    _, risk = pages["risk"]
    assert total(risk, "btcbot_mode", mode="NORMAL", source="effective") == 1
    stages = {labels["stage"] for s in pages.values() for n, labels, _ in s[1] if n.startswith("btcbot_stage")}
    assert stages == {"book_to_intent", "intent_to_verdict", "verdict_to_request", "fill_to_booked"}
    _, execution = pages["execution"]
    assert total(execution, "btcbot_orders_total", outcome="accepted") > 0
    assert total(execution, "btcbot_dependency_up", dependency="nats") == 1
    # Consumer labels are base names: a fan-out durable's instance suffix never shows.
    consumers = {labels["consumer"] for _, s in pages.values() for n, labels, _ in s if n == "btcbot_consumer_pending"}
    assert {"execution-orders", "risk-intents", "strategy-books"} <= consumers, consumers

    # Tick-to-order: the histogram's median against the spans' median, within 2x.
    trace_file = system.state_dir / "traces.jsonl"
    await asyncio.sleep(1.5)  # the span exporter writes every 0.5 s
    measured = span_tick_to_order(trace_file)
    assert len(measured) >= ORDERS_WANTED, f"too few submit spans joined to a book: {len(measured)}"
    span_median = statistics.median(measured)
    metric_median = histogram_median(execution, "btcbot_tick_to_order_seconds")
    assert span_median > 0
    ratio = metric_median / span_median
    print(f"tick-to-order median: histogram {metric_median:.4f}s, spans {span_median:.4f}s over {len(measured)} orders")
    assert 0.5 <= ratio <= 2.0, f"histogram median {metric_median:.4f}s vs spans {span_median:.4f}s"
