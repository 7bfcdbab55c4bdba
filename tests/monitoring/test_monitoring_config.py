"""The monitoring files of deploy/: Prometheus configs and rules (promtool), Alertmanager (amtool), the relay's
place in both, and the Grafana dashboards (structure, trace links, names). No server needed; the promtool and
amtool checks skip, saying why, where the binaries are missing (.ci/run installs them when it can).

The check of every dashboard and rule expression against a real scrape is tests/e2e/test_observability.py.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS_DIR = ROOT / "deploy" / "prometheus"
CONFIGS = ("prometheus.yml", "prometheus-local.yml", "prometheus-k8s.yml")
RULES = PROMETHEUS_DIR / "rules" / "btcbot.yml"
RULE_TESTS = sorted((PROMETHEUS_DIR / "tests").glob("*.yml"))
ALERTMANAGER = ROOT / "deploy" / "alertmanager" / "alertmanager.yml"
GRAFANA = ROOT / "deploy" / "grafana"
DASHBOARDS = sorted((GRAFANA / "dashboards").glob("*.json"))
INSTALL_HINT = "apt-get install -y prometheus prometheus-alertmanager (.ci/run tries it)"
METRIC = re.compile(r"\b(btcbot_[a-z0-9_]+)")
SERVICES = ("marketdata", "strategy", "risk", "execution", "ledger")

# The metric families of docs/metrics.md the alerts and dashboards are built on (histograms by family name).
HISTOGRAMS = {
    "btcbot_handle_seconds",
    "btcbot_stage_latency_seconds",
    "btcbot_tick_to_order_seconds",
    "btcbot_reconcile_seconds",
    "btcbot_submit_seconds",
}
FAMILIES = HISTOGRAMS | {
    "btcbot_messages_handled_total",
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
    "btcbot_halted_symbols",
    "btcbot_quarantined_fills",
    "btcbot_dead_letters_total",
    "btcbot_stale_books_total",
    "btcbot_books_total",
    "btcbot_ledger_integrity_alerts_total",
}


def binary(*names: str) -> str:
    """The first of these executables on PATH, or skip the test saying how to get it."""
    for name in names:
        found = shutil.which(name)
        if found:
            return found
    pytest.skip(f"{names[0]} is not installed: {INSTALL_HINT}")


def run(*cmd: str) -> str:
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    if "field kubernetes_sd_configs not found" in done.stdout + done.stderr:
        # Debian builds Prometheus without the Kubernetes discovery (no client-go); upstream's binary has it.
        pytest.skip(f"{cmd[0]} was built without kubernetes_sd_configs (Debian's build): upstream checks it")
    assert done.returncode == 0, f"{' '.join(cmd)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
    return done.stdout + done.stderr


def family(name: str) -> str:
    """A series name's metric family (a histogram's _bucket/_sum/_count -> the histogram)."""
    for suffix in ("_bucket", "_sum", "_count"):
        if name.endswith(suffix) and name.removesuffix(suffix) in HISTOGRAMS:
            return name.removesuffix(suffix)
    return name


def dashboards() -> dict[str, dict[str, Any]]:
    return {path.name: json.loads(path.read_text()) for path in DASHBOARDS}


def panels(board: dict[str, Any]) -> Iterator[dict[str, Any]]:
    return (p for p in board["panels"] if p.get("type") != "row")


def rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load(RULES.read_text())
    return [r for g in doc["groups"] for r in g["rules"]]


# --- Prometheus ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", CONFIGS)
def test_promtool_checks_each_prometheus_config(name: str) -> None:
    promtool = binary("promtool")
    out = run(promtool, "check", "config", str(PROMETHEUS_DIR / name))
    assert "SUCCESS" in out
    if name != "prometheus-k8s.yml":  # its rules live where the ConfigMap is mounted
        assert re.search(r"SUCCESS: \d+ rules found", out), out


def test_promtool_rule_unit_tests_pass() -> None:
    promtool = binary("promtool")
    assert RULE_TESTS
    out = run(promtool, "test", "rules", *map(str, RULE_TESTS))
    assert "SUCCESS" in out


def test_every_alert_has_a_unit_test_and_a_severity_and_texts() -> None:
    tested = {
        case["alertname"]
        for path in RULE_TESTS
        for test in yaml.safe_load(path.read_text())["tests"]
        for case in test.get("alert_rule_test", [])
        if case.get("exp_alerts")
    }
    alerts = [r for r in rules() if "alert" in r]
    required = {
        "BtcbotKillSwitchEngaged",
        "BtcbotModeNotNormal",
        "BtcbotBreakerOpen",
        "BtcbotConsumerLagGrowing",
        "BtcbotBookStale",
        "BtcbotReconcileMismatch",
        "BtcbotSymbolHalted",
        "BtcbotDeadLettersGrowing",
        "BtcbotServiceDown",
        "BtcbotServiceAbsent",
        "BtcbotWebSocketReconnectsSLO",
        "BtcbotStaleDataSLO",
        "BtcbotReconcileLatencySLO",
        "BtcbotSubmitLatencySLO",
        "BtcbotLedgerIntegrityError",
    }
    assert required <= {r["alert"] for r in alerts}
    for rule in alerts:
        if rule["alert"] != "BtcbotAlarmActive":
            assert rule["alert"] in tested, f"{rule['alert']} fires in no promtool test"
        assert rule["labels"]["severity"] in ("page", "ticket"), rule["alert"]
        assert rule["annotations"]["summary"], rule["alert"]
        assert rule["annotations"]["description"], rule["alert"]


def test_rules_read_only_documented_metric_families() -> None:
    for rule in rules():
        unknown = {family(n) for n in METRIC.findall(rule["expr"])} - FAMILIES
        assert not unknown, f"{rule.get('alert') or rule['record']} reads unknown metrics {unknown}"


def test_every_config_scrapes_the_five_services_with_their_own_labels() -> None:
    compose = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
    job = next(j for j in compose["scrape_configs"] if j["job_name"] == "btcbot")
    assert set(job["dns_sd_configs"][0]["names"]) == set(SERVICES)
    assert job["honor_labels"] is True
    assert compose["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] == ["alertmanager:9093"]
    k8s = yaml.safe_load((PROMETHEUS_DIR / "prometheus-k8s.yml").read_text())
    job = next(j for j in k8s["scrape_configs"] if j["job_name"] == "btcbot")
    keep = next(r for r in job["relabel_configs"] if r.get("action") == "keep")
    assert set(keep["regex"].split("|")) == set(SERVICES)
    local = yaml.safe_load((PROMETHEUS_DIR / "prometheus-local.yml").read_text())
    assert local["scrape_configs"][0]["file_sd_configs"][0]["files"] == ["targets/*.json"]


# --- Alertmanager and the relay ------------------------------------------------------------------------------


def test_amtool_checks_the_alertmanager_config() -> None:
    amtool = binary("amtool")
    assert "SUCCESS" in run(amtool, "check-config", str(ALERTMANAGER))


def test_every_alert_reaches_the_relay_and_resolutions_too() -> None:
    config = yaml.safe_load(ALERTMANAGER.read_text())
    receivers = {r["name"]: r for r in config["receivers"]}

    def receivers_of(route: dict[str, Any]) -> Iterator[str]:
        yield route["receiver"]
        for child in route.get("routes", []):
            yield from receivers_of(child)

    for name in receivers_of(config["route"]):
        hooks = receivers[name]["webhook_configs"]
        assert [h["url"] for h in hooks] == ["http://alert-relay:9095/alertmanager"]
        assert all(h["send_resolved"] for h in hooks)
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    assert compose["alert-relay"]["command"] == ["alert-relay"]
    assert compose["alert-relay"]["environment"]["ALERT_RELAY_PORT"] == "9095"
    assert "./deploy/prometheus:/etc/prometheus:ro" in compose["prometheus"]["volumes"]


# --- Grafana -------------------------------------------------------------------------------------------------


def test_the_committed_dashboards_are_what_the_generator_writes() -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, json; sys.path.insert(0, 'deploy/grafana'); import build_dashboards as b; "
            "print(json.dumps({n: b.render_text(d) for n, d in b.dashboards().items()}))",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    generated = json.loads(done.stdout)
    assert sorted(generated) == [p.name for p in DASHBOARDS] == ["exchange.json", "pipeline.json", "trading.json"]
    for path in DASHBOARDS:
        assert path.read_text() == generated[path.name], f"{path.name}: run deploy/grafana/build_dashboards.py"


def test_dashboards_cover_the_issue_and_use_provisioned_data_sources() -> None:
    sources = yaml.safe_load((GRAFANA / "provisioning/datasources/datasources.yaml").read_text())["datasources"]
    uids = {s["uid"]: s for s in sources}
    assert {"prometheus", "jaeger"} <= set(uids)
    # Exemplars (trace ids on latency buckets) open the trace in Jaeger.
    assert uids["prometheus"]["jsonData"]["exemplarTraceIdDestinations"][0]["datasourceUid"] == "jaeger"
    reads: dict[str, set[str]] = {}
    for name, board in dashboards().items():
        assert board["uid"] == f"btcbot-{name.removesuffix('.json')}"
        ids = [p["id"] for p in board["panels"]]
        assert len(ids) == len(set(ids)), f"{name}: duplicate panel ids"
        for panel in panels(board):
            assert panel["datasource"]["uid"] in uids, panel["title"]
            assert panel["targets"], f"{name}: {panel['title']} has no query"
            for target in panel["targets"]:
                reads.setdefault(name, set()).update(family(n) for n in METRIC.findall(target["expr"]))
    assert {"btcbot_messages_handled_total", "btcbot_stage_latency_seconds", "btcbot_consumer_pending"} <= reads[
        "pipeline.json"
    ]
    assert {
        "btcbot_bot_pnl_quote",
        "btcbot_exposure_quote",
        "btcbot_orders_total",
        "btcbot_denials_total",
    } <= reads["trading.json"]
    assert {
        "btcbot_breaker_state",
        "btcbot_http_429_total",
        "btcbot_ws_reconnects_total",
        "btcbot_book_age_seconds",
    } <= reads["exchange.json"]
    unknown = set().union(*reads.values()) - FAMILIES
    assert not unknown, f"dashboards read unknown metrics {unknown}"


def test_every_latency_panel_links_to_traces() -> None:
    latency = 0
    for board in dashboards().values():
        for panel in panels(board):
            if panel["fieldConfig"]["defaults"]["unit"] != "s" or "age" in panel["title"].lower():
                continue
            latency += 1
            assert all(t["exemplar"] for t in panel["targets"]), panel["title"]
            links = panel.get("links", [])
            assert links, f"{panel['title']} links to no trace"
            assert all("/explore?" in link["url"] and "jaeger" in link["url"] for link in links), panel["title"]
    assert latency >= 5


def test_compose_mounts_the_provisioning_and_the_dashboards() -> None:
    grafana = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]["grafana"]
    mounts = dict(v.rsplit(":", 1)[0].split(":", 1) for v in grafana["volumes"])
    assert mounts["./deploy/grafana/provisioning"] == "/etc/grafana/provisioning"
    provider = yaml.safe_load((GRAFANA / "provisioning/dashboards/dashboards.yaml").read_text())["providers"][0]
    assert mounts["./deploy/grafana/dashboards"] == provider["options"]["path"]
