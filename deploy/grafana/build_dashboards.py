"""Writes deploy/grafana/dashboards/*.json: the pipeline, trading and exchange dashboards (docs/alerts.md).

Run `.venv/bin/python deploy/grafana/build_dashboards.py` after changing a panel; tests/monitoring checks that the
committed JSON is what this script writes and that every expression names metrics the services export.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import quote

OUT = Path(__file__).resolve().parent / "dashboards"
PROM = {"type": "prometheus", "uid": "prometheus"}
RATE = "$__rate_interval"


def jaeger_link(service: str) -> dict[str, Any]:
    """A panel link to Jaeger's trace search for one service over the dashboard's time range."""
    pane = {
        "a": {
            "datasource": "jaeger",
            "queries": [
                {
                    "refId": "A",
                    "datasource": {"type": "jaeger", "uid": "jaeger"},
                    "queryType": "search",
                    "service": service,
                }
            ],
            "range": {"from": "${__from}", "to": "${__to}"},
        }
    }
    url = "/explore?schemaVersion=1&orgId=1&panes=" + quote(json.dumps(pane, separators=(",", ":")), safe="${}")
    return {"title": f"Traces of {service} in Jaeger", "url": url, "targetBlank": True}


class Board:
    """Panels laid out two to a row (12 grid units each)."""

    def __init__(self, uid: str, title: str, description: str) -> None:
        self.uid, self.title, self.description = uid, title, description
        self.panels: list[dict[str, Any]] = []
        self._y = 0  # the top of the next free line
        self._left = True  # the next panel goes into the left half

    def row(self, title: str) -> None:
        """A section header on its own line."""
        if not self._left:
            self._y, self._left = self._y + 8, True
        self.panels.append({"type": "row", "title": title, "collapsed": False, "gridPos": _pos(0, self._y, 24, 1)})
        self._y += 1

    def panel(
        self,
        title: str,
        targets: list[tuple[str, str]],
        unit: str = "short",
        kind: str = "timeseries",
        traces: str | None = None,
        description: str = "",
    ) -> None:
        """A panel of (expression, legend) targets; `traces`: the service whose Jaeger traces it links to."""
        x, y = (0 if self._left else 12), self._y
        if not self._left:
            self._y += 8
        self._left = not self._left
        panel: dict[str, Any] = {
            "id": len(self.panels) + 1,
            "type": kind,
            "title": title,
            "description": description,
            "datasource": PROM,
            "gridPos": _pos(x, y, 12, 8),
            "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
            "targets": [
                {
                    "refId": chr(ord("A") + i),
                    "datasource": PROM,
                    "expr": expr,
                    "legendFormat": legend,
                    "exemplar": traces is not None,
                }
                for i, (expr, legend) in enumerate(targets)
            ],
        }
        if traces is not None:
            panel["links"] = [jaeger_link(traces)]
        self.panels.append(panel)

    def render(self) -> dict[str, Any]:
        """The dashboard JSON Grafana's file provisioning loads."""
        for i, panel in enumerate(self.panels):
            panel["id"] = i + 1
        return {
            "uid": self.uid,
            "title": self.title,
            "description": self.description,
            "tags": ["btcbot"],
            "timezone": "utc",
            "schemaVersion": 39,
            "version": 1,
            "editable": False,
            "refresh": "30s",
            "time": {"from": "now-1h", "to": "now"},
            "templating": {"list": []},
            "annotations": {"list": []},
            "links": [
                {"title": "btcbot dashboards", "type": "dashboards", "tags": ["btcbot"], "asDropdown": True},
            ],
            "panels": self.panels,
        }


def _pos(x: int, y: int, w: int, h: int) -> dict[str, int]:
    return {"x": x, "y": y, "w": w, "h": h}


def quantile(q: float, metric: str, by: str) -> str:
    """histogram_quantile over a histogram's buckets, grouped by `by` (plus le)."""
    group = f"le, {by}" if by else "le"
    return f"histogram_quantile({q}, sum by ({group}) (rate({metric}_bucket[{RATE}])))"


def pipeline() -> Board:
    """Rates, latencies and lag per stage."""
    b = Board("btcbot-pipeline", "btcbot / pipeline", "Message rates, latencies and consumer lag per stage.")
    b.row("Flow")
    b.panel(
        "Messages handled per second",
        [(f"sum by (service, outcome) (rate(btcbot_messages_handled_total[{RATE}]))", "{{service}} {{outcome}}")],
        "ops",
    )
    b.panel(
        "Dead letters per second",
        [(f"sum by (service, consumer) (rate(btcbot_dead_letters_total[{RATE}]))", "{{service}} {{consumer}}")],
        "ops",
    )
    b.row("Latency (links: traces in Jaeger)")
    b.panel(
        "Tick to order p50 / p99",
        [
            (quantile(0.5, "btcbot_tick_to_order_seconds", "symbol"), "p50 {{symbol}}"),
            (quantile(0.99, "btcbot_tick_to_order_seconds", "symbol"), "p99 {{symbol}}"),
        ],
        "s",
        traces="execution",
        description="From the book's receipt in marketdata to the order request leaving execution.",
    )
    b.panel(
        "Stage latency p95",
        [(quantile(0.95, "btcbot_stage_latency_seconds", "stage"), "{{stage}}")],
        "s",
        traces="risk",
    )
    b.panel(
        "Handler time p95 per consumer",
        [(quantile(0.95, "btcbot_handle_seconds", "service, consumer"), "{{service}} {{consumer}}")],
        "s",
        traces="strategy",
    )
    b.panel(
        "Handler time p50 per consumer",
        [(quantile(0.5, "btcbot_handle_seconds", "service, consumer"), "{{service}} {{consumer}}")],
        "s",
        traces="ledger",
    )
    b.row("Lag")
    b.panel("Pending per consumer", [("max by (consumer) (btcbot_consumer_pending)", "{{consumer}}")])
    b.panel("Ack pending per consumer", [("max by (consumer) (btcbot_consumer_ack_pending)", "{{consumer}}")])
    b.row("Health")
    b.panel("Replicas up per service", [('sum by (service) (up{job="btcbot"})', "{{service}}")])
    b.panel(
        "Dependencies reachable (min over replicas)",
        [("min by (dependency) (btcbot_dependency_up)", "{{dependency}}")],
    )
    return b


def trading() -> Board:
    """PnL, exposure, orders, denials."""
    b = Board("btcbot-trading", "btcbot / trading", "PnL, exposure, orders, denials, fills and the safety state.")
    b.row("Money")
    b.panel(
        "Bot PnL and today's PnL",
        [("max(btcbot_bot_pnl_quote)", "bot PnL"), ("max(btcbot_daily_pnl_quote)", "today")],
    )
    b.panel(
        "Equity and drawdown",
        [("max(btcbot_equity_quote)", "equity"), ("max(btcbot_bot_drawdown_quote)", "drawdown")],
    )
    b.panel("Exposure per symbol", [("max by (symbol) (btcbot_exposure_quote)", "{{symbol}}")])
    b.panel("Fees per hour", [("sum by (symbol) (increase(btcbot_fees_quote_total[1h]))", "{{symbol}}")])
    b.row("Orders")
    b.panel(
        "Orders per second by outcome",
        [(f"sum by (symbol, outcome) (rate(btcbot_orders_total[{RATE}]))", "{{symbol}} {{outcome}}")],
        "ops",
    )
    b.panel(
        "Denials per second by reason",
        [(f"sum by (reason) (rate(btcbot_denials_total[{RATE}]))", "{{reason}}")],
        "ops",
    )
    b.panel(
        "Fills per second",
        [(f"sum by (symbol, side) (rate(btcbot_fills_total[{RATE}]))", "{{symbol}} {{side}}")],
        "ops",
    )
    b.panel(
        "Reconciliation round p95",
        [(quantile(0.95, "btcbot_reconcile_seconds", ""), "p95")],
        "s",
        traces="ledger",
        description="SLO: p95 <= 1.5 s.",
    )
    b.row("Safety")
    b.panel(
        "Kill switch and mode",
        [
            ("max(btcbot_kill_switch_engaged)", "kill switch"),
            ('max by (mode) (btcbot_mode{source="effective"})', "{{mode}}"),
        ],
        kind="state-timeline",
    )
    b.panel(
        "Halts, quarantine, mismatches, integrity errors",
        [
            ("max(btcbot_halted_symbols)", "halted symbols"),
            ("max(btcbot_quarantined_fills)", "quarantined fills"),
            ("max(btcbot_reconcile_mismatches)", "reconciliation mismatches"),
            ("sum(increase(btcbot_ledger_integrity_alerts_total[15m]))", "integrity errors (15 min)"),
        ],
    )
    return b


def exchange() -> Board:
    """Breaker, 429s, WebSocket, book age."""
    b = Board("btcbot-exchange", "btcbot / exchange", "The exchange as the services see it.")
    b.row("Calls")
    b.panel(
        "Circuit breaker (0 closed, 1 half-open, 2 open)",
        [("max by (group) (btcbot_breaker_state)", "{{group}}")],
        kind="state-timeline",
    )
    b.panel("429 answers per second", [(f"sum by (group) (rate(btcbot_http_429_total[{RATE}]))", "{{group}}")], "ops")
    b.panel(
        "Order submit p95",
        [(quantile(0.95, "btcbot_submit_seconds", ""), "p95")],
        "s",
        traces="execution",
        description="SLO: p95 <= 1.2 s.",
    )
    b.panel("Alarms holding", [("max by (source, kind) (btcbot_alarm_active)", "{{source}} {{kind}}")])
    b.row("Market data")
    b.panel("Book age per symbol", [("max by (symbol) (btcbot_book_age_seconds)", "{{symbol}}")], "s")
    b.panel(
        "Stale books (share, 15 min)",
        [
            (
                "sum by (symbol) (increase(btcbot_stale_books_total[15m]))"
                " / sum by (symbol) (increase(btcbot_books_total[15m]))",
                "{{symbol}}",
            )
        ],
        "percentunit",
        description="SLO: <= 0.5 %.",
    )
    b.panel(
        "WebSocket reconnects per 5 min",
        [("sum by (service) (increase(btcbot_ws_reconnects_total[5m]))", "{{service}}")],
        description="SLO: <= 6 per 5 min.",
    )
    return b


def dashboards() -> dict[str, dict[str, Any]]:
    """File name -> dashboard JSON."""
    return {f"{b.uid.removeprefix('btcbot-')}.json": b.render() for b in (pipeline(), trading(), exchange())}


def render_text(board: dict[str, Any]) -> str:
    """The committed form of a dashboard."""
    return json.dumps(board, indent=2, sort_keys=True) + "\n"


def main() -> None:
    """Write every dashboard file."""
    OUT.mkdir(exist_ok=True)
    for name, board in dashboards().items():
        (OUT / name).write_text(render_text(board))
        print(OUT / name)  # noqa: T201 (a script: the files it wrote are its output)


if __name__ == "__main__":
    main()
