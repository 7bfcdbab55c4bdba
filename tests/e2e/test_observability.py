"""End to end (issue 12, "Done when"): the repository's monitoring against a running pipeline (`btcbot up`).

- Every metric name a dashboard panel or an alert rule reads is in a real scrape of the five services' /metrics.
- Where a Prometheus binary exists: Prometheus, run with deploy/prometheus/prometheus-local.yml and its rules
  (loopback, a temporary directory, 1 s intervals), reads tick-to-order p99 and consumer lag through its HTTP API.
- Where Alertmanager exists too: engaging the kill switch (`btcbot control kill`, signed with the run's operator
  key) reaches a local webhook receiver through Prometheus, Alertmanager (deploy/alertmanager, its receiver URL
  pointed at the relay) and `btcbot alert-relay`, in both the Telegram and the generic format.
Without the binaries those two skip, saying how to install them (.ci/run tries).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
import yaml

from btcbot.cli.alertrelay import AlertRelay, RelayConfig

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS_DIR = ROOT / "deploy" / "prometheus"
ALERTMANAGER_FILE = ROOT / "deploy" / "alertmanager" / "alertmanager.yml"
DASHBOARDS = sorted((ROOT / "deploy" / "grafana" / "dashboards").glob("*.json"))
SERVICES = ("marketdata", "strategy", "risk", "execution", "ledger")
METRICS_DOC = ROOT / "docs" / "metrics.md"
EVENT_ONLY = {
    "btcbot_http_429_total",
    "btcbot_ws_reconnects_total",
    "btcbot_dead_letters_total",
    "btcbot_stale_books_total",
    "btcbot_alarm_active",
    "btcbot_ledger_integrity_alerts_total",
}
INSTALL_HINT = "apt-get install -y prometheus prometheus-alertmanager (.ci/run tries it)"
METRIC = re.compile(r"\b(btcbot_[a-z0-9_]+)")


async def wait_for(predicate: Callable[[], Awaitable[Any]], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = await predicate()
        if last:
            return last
        await asyncio.sleep(0.5)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}; last: {last!r}")


def scraped_names(text: str) -> set[str]:
    """Every metric name a Prometheus text exposition declares or samples (a histogram's series names too)."""
    names: set[str] = set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            parts = line.split()
            name, kind = parts[2], (parts[3] if len(parts) > 3 else "")
            names.add(name)
            if kind == "histogram":
                names.update(f"{name}{suffix}" for suffix in ("_bucket", "_sum", "_count"))
            if kind == "counter" and not name.endswith("_total"):
                names.add(f"{name}_total")  # OpenMetrics declares a counter by its name without the suffix
        elif line.strip() and not line.startswith("#"):
            names.add(re.split(r"[{\s]", line, maxsplit=1)[0])
    return names


def expressions() -> list[tuple[str, str]]:
    """(where, expression) of every dashboard target and every rule of the repository."""
    found = [
        (f"{path.name}: {panel['title']}", target["expr"])
        for path in DASHBOARDS
        for panel in json.loads(path.read_text())["panels"]
        if panel.get("type") != "row"
        for target in panel["targets"]
    ]
    for path in sorted((PROMETHEUS_DIR / "rules").glob("*.yml")):
        for group in yaml.safe_load(path.read_text())["groups"]:
            found.extend((f"rule {r.get('alert') or r['record']}", r["expr"]) for r in group["rules"])
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def btcbot(system: Any, *args: str) -> tuple[int, str]:
    env = {**system.cli_env(), **system.run.get("operator_env", {})}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "btcbot.cli",
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(process.communicate(), 60)
    return int(process.returncode or 0), out.decode()


class Receiver:
    """A webhook receiver on 127.0.0.1: records each POST's path and JSON body, answers 200."""

    def __init__(self) -> None:
        self.posts: list[tuple[str, Any]] = []
        self.port = 0
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request = (await reader.readline()).decode().split()
        length = 0
        while (line := await reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode().partition(":")
            if name.lower() == "content-length":
                length = int(value)
        self.posts.append((request[1], json.loads(await reader.readexactly(length))))
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}")
        await writer.drain()
        writer.close()


@dataclass
class Monitoring:
    """Prometheus (and, when installed, Alertmanager, the relay and a receiver) watching one `btcbot up`."""

    prometheus_url: str
    receiver: Receiver | None
    processes: list[tuple[subprocess.Popen[bytes], Path]] = field(default_factory=list)

    async def query(self, expr: str) -> list[dict[str, Any]]:
        async with httpx.AsyncClient(timeout=5) as client:
            answer = await client.get(f"{self.prometheus_url}/api/v1/query", params={"query": expr})
        body = answer.json()
        assert body["status"] == "success", body
        return list(body["data"]["result"])

    def logs(self) -> str:
        return "\n".join(f"== {log}\n{log.read_text(errors='replace')[-3000:]}" for _, log in self.processes)

    async def diagnosis(self) -> str:
        """What Prometheus sees: each target's health and last scrape error, and the raw latency series."""
        async with httpx.AsyncClient(timeout=5) as client:
            targets = (await client.get(f"{self.prometheus_url}/api/v1/targets")).json()["data"]["activeTargets"]
        seen = [(t["labels"].get("service"), t["health"], t.get("lastError", "")) for t in targets]
        raw = await self.query("sum by (le) (btcbot_tick_to_order_seconds_bucket)")
        return f"targets: {seen}\ntick-to-order buckets: {raw}\n{self.logs()}"


def start(cmd: list[str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)


async def wait_ready(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    async def ready() -> bool:
        assert proc.poll() is None, f"{url} exited:\n{log.read_text(errors='replace')[-3000:]}"
        async with httpx.AsyncClient(timeout=2) as client:
            with contextlib.suppress(httpx.HTTPError):
                return (await client.get(f"{url}/-/ready")).status_code == 200
        return False

    await wait_for(ready, 60, f"{url} ready")


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def monitoring(system: Any) -> AsyncIterator[Monitoring]:
    prometheus = shutil.which("prometheus")
    if prometheus is None:
        pytest.skip(f"prometheus is not installed: {INSTALL_HINT}")
    alertmanager = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
    work = Path(tempfile.mkdtemp(prefix="btcbot-monitoring-"))
    receiver: Receiver | None = None
    relay: AlertRelay | None = None
    mon: Monitoring | None = None
    try:
        # The repository's configuration, with 1 s intervals and this run's loopback ports.
        config = yaml.safe_load((PROMETHEUS_DIR / "prometheus-local.yml").read_text())
        config["global"].update(scrape_interval="1s", evaluation_interval="1s")
        shutil.copytree(PROMETHEUS_DIR / "rules", work / "rules")
        (work / "targets").mkdir()
        # The target file `btcbot up` writes next to run.json, as docs/alerts.md tells an operator to use it.
        targets = json.loads((system.state_dir / "prometheus-targets.json").read_text())
        assert {t["labels"]["service"] for t in targets} == set(SERVICES), targets
        (work / "targets" / "btcbot.json").write_text(json.dumps(targets))
        processes: list[tuple[subprocess.Popen[bytes], Path]] = []
        if alertmanager is not None:
            receiver = Receiver()
            await receiver.start()
            hook = f"http://127.0.0.1:{receiver.port}"
            relay = AlertRelay(
                RelayConfig(
                    port=0,
                    telegram_url=f"{hook}/bot0:test/sendMessage",
                    telegram_chat_id="-1001",
                    webhook_urls=(f"{hook}/generic",),
                )
            )
            await relay.start()
            am_config = yaml.safe_load(ALERTMANAGER_FILE.read_text())
            for rcv in am_config["receivers"]:
                for webhook in rcv.get("webhook_configs", []):
                    webhook["url"] = f"http://127.0.0.1:{relay.port}/alertmanager"
            (work / "alertmanager.yml").write_text(yaml.safe_dump(am_config))
            am_port = free_port()
            am_log = work / "alertmanager.log"
            am = start(
                [
                    alertmanager,
                    f"--config.file={work / 'alertmanager.yml'}",
                    f"--storage.path={work / 'am-data'}",
                    f"--web.listen-address=127.0.0.1:{am_port}",
                    "--cluster.listen-address=",  # no gossip port: a single instance
                ],
                am_log,
            )
            processes.append((am, am_log))
            await wait_ready(f"http://127.0.0.1:{am_port}", am, am_log)
            config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] = [f"127.0.0.1:{am_port}"]
        else:
            config.pop("alerting")
        (work / "prometheus.yml").write_text(yaml.safe_dump(config))
        port = free_port()
        log = work / "prometheus.log"
        proc = start(
            [
                prometheus,
                f"--config.file={work / 'prometheus.yml'}",
                f"--storage.tsdb.path={work / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--storage.tsdb.retention.time=1h",
            ],
            log,
        )
        processes.append((proc, log))
        mon = Monitoring(f"http://127.0.0.1:{port}", receiver, processes)
        await wait_ready(mon.prometheus_url, proc, log)
        yield mon
    finally:
        for proc, _ in reversed(mon.processes if mon else []):
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if relay is not None:
            await relay.stop()
        if receiver is not None:
            await receiver.stop()
        shutil.rmtree(work, ignore_errors=True)


async def scrape_all(system: Any) -> set[str]:
    """The metric names of one scrape of each of the five services' /metrics."""
    scraped: set[str] = set()
    async with httpx.AsyncClient(timeout=5) as client:
        for name in SERVICES:
            answer = await client.get(f"http://127.0.0.1:{system.run['health_ports'][name]}/metrics")
            assert answer.status_code == 200, f"{name}: /metrics answered {answer.status_code}"
            scraped |= scraped_names(answer.text)
    return scraped


async def test_every_dashboard_and_rule_expression_names_a_scraped_metric(system: Any) -> None:
    # Series appear with their first event: wait until the run has traded, booked and reconciled once.
    traded = {
        "btcbot_orders_total",
        "btcbot_fills_total",
        "btcbot_tick_to_order_seconds_bucket",
        "btcbot_reconcile_seconds_bucket",
        "btcbot_reconcile_mismatches",
    }

    async def after_trading() -> set[str]:
        scraped = await scrape_all(system)
        return scraped if traded <= scraped else set()

    scraped = await wait_for(after_trading, 150, f"{sorted(traded)} in a scrape")
    # Families of events a clean run never has (429s, reconnects, dead letters, stale books, alarms) may be
    # missing from the scrape only while they are documented names (docs/metrics.md); better exported at zero.
    documented = set(METRIC.findall(METRICS_DOC.read_text())) if METRICS_DOC.exists() else set()
    absent_ok = {n for n in documented if n.removesuffix("_bucket") in EVENT_ONLY or n in EVENT_ONLY}
    absent_ok |= {f"{n}_bucket" for n in absent_ok}
    missing = {
        where: sorted(set(METRIC.findall(expr)) - scraped - absent_ok)
        for where, expr in expressions()
        if set(METRIC.findall(expr)) - scraped - absent_ok
    }
    assert len(expressions()) >= 40
    assert not missing, (
        f"expressions read metrics no service exports: {json.dumps(missing, indent=1)}\nscraped: {sorted(scraped)}"
    )


async def test_prometheus_reads_tick_to_order_p99_and_consumer_lag(monitoring: Monitoring) -> None:
    async def all_up() -> list[dict[str, Any]]:
        result = await monitoring.query('up{job="btcbot"} == 1')
        return result if {r["metric"]["service"] for r in result} == set(SERVICES) else []

    try:
        await wait_for(all_up, 60, "all five services scraped")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{await monitoring.diagnosis()}") from None

    async def p99() -> float:
        # Over the whole run (cumulative buckets): a short run places few orders, maybe all before the first
        # scrape, and a rate() window would then hold nothing. The recording rule's rate form is promtool-tested.
        query = "histogram_quantile(0.99, sum by (le) (btcbot_tick_to_order_seconds_bucket))"
        for row in await monitoring.query(query):
            value = float(row["value"][1])
            if math.isfinite(value) and value > 0:
                return value
        return 0.0

    try:
        assert await wait_for(p99, 150, "a tick-to-order p99 from Prometheus") > 0
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{await monitoring.diagnosis()}") from None

    lag = await monitoring.query("max by (consumer) (btcbot_consumer_pending)")
    assert lag, "Prometheus has no consumer lag"
    for row in lag:
        assert row["metric"]["consumer"], row
        assert float(row["value"][1]) >= 0, row
    ack_pending = await monitoring.query("max by (consumer) (btcbot_consumer_ack_pending)")
    assert {r["metric"]["consumer"] for r in ack_pending} == {r["metric"]["consumer"] for r in lag}


def kill_alerts(receiver: Receiver, path: str) -> list[Any]:
    return [body for at, body in receiver.posts if at == path and "BtcbotKillSwitchEngaged" in json.dumps(body)]


async def test_engaging_the_kill_switch_pages_through_alertmanager(monitoring: Monitoring, system: Any) -> None:
    receiver = monitoring.receiver
    if receiver is None:
        pytest.skip(f"alertmanager is not installed: {INSTALL_HINT}")

    async def disengaged() -> bool:
        rows = await monitoring.query("max(btcbot_kill_switch_engaged)")
        return bool(rows) and float(rows[0]["value"][1]) == 0

    await wait_for(disengaged, 60, "Prometheus sees the kill switch disengaged")
    assert not kill_alerts(receiver, "/generic"), "a kill-switch alert before the kill switch"

    code, out = await btcbot(system, "control", "kill", "--reason", "alert drill", "--operator", "e2e")
    assert code == 0, out
    try:

        async def delivered() -> bool:
            return bool(kill_alerts(receiver, "/generic")) and bool(kill_alerts(receiver, "/bot0:test/sendMessage"))

        try:
            await wait_for(delivered, 120, "the kill-switch alert at the webhook receiver")
        except AssertionError:
            raise AssertionError(f"posts: {receiver.posts}\n{await monitoring.diagnosis()}") from None
        generic = kill_alerts(receiver, "/generic")[0]
        alert = next(a for a in generic["alerts"] if a["name"] == "BtcbotKillSwitchEngaged")
        assert (alert["status"], alert["severity"]) == ("firing", "page")
        telegram = kill_alerts(receiver, "/bot0:test/sendMessage")[0]
        assert telegram["chat_id"] == "-1001"
        assert "<b>[FIRING] BtcbotKillSwitchEngaged</b>" in telegram["text"]
    finally:
        code, out = await btcbot(system, "control", "release", "--reason", "alert drill over", "--operator", "e2e")
        assert code == 0, out
