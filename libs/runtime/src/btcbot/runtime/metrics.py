"""The one metrics mechanism of the kit: OpenTelemetry instruments, read as Prometheus text at /metrics.

Every instrument an operator watches is declared here (docs/metrics.md lists names, units and labels). The kit
installs an SDK meter provider with a pull reader for /metrics and, when OTEL_EXPORTER_OTLP_ENDPOINT is set, a
periodic OTLP exporter as well: the same figures go both ways. Time is in seconds with buckets from 0.5 ms to 10 s.
Labels are bounded (service, symbol, reason, consumer, ...): never an instance, pod or order id.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

from opentelemetry import metrics
from opentelemetry.sdk.metrics import Histogram as SdkHistogram
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    Gauge,
    Histogram,
    InMemoryMetricReader,
    MetricReader,
    MetricsData,
    Sum,
)
from opentelemetry.sdk.metrics.view import ExplicitBucketHistogramAggregation, View
from opentelemetry.sdk.resources import Resource

# Seconds: 0.5 ms .. 10 s (the range), roughly 1-2.5-5 per decade.
SECONDS_BUCKETS: tuple[float, ...] = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)

VIEWS: tuple[View, ...] = (
    View(
        instrument_type=SdkHistogram,
        instrument_unit="s",
        aggregation=ExplicitBucketHistogramAggregation(boundaries=SECONDS_BUCKETS),
    ),
)

# Stage names of btcbot_stage_latency_seconds.
BOOK_TO_INTENT = "book_to_intent"
INTENT_TO_VERDICT = "intent_to_verdict"
VERDICT_TO_REQUEST = "verdict_to_request"
FILL_TO_BOOKED = "fill_to_booked"


@dataclass(frozen=True)
class Instruments:
    """Every instrument of docs/metrics.md but the exchange client's own (btcturk/breaker.py: breaker state, 429s).

    A service records only the ones it owns.
    """

    handled: metrics.Counter
    handle_seconds: metrics.Histogram
    dead_letters: metrics.Counter
    stage_latency: metrics.Histogram
    tick_to_order: metrics.Histogram
    orders: metrics.Counter
    denials: metrics.Counter
    fills: metrics.Counter
    fees_quote: metrics.Counter
    consumer_pending: metrics._Gauge
    consumer_ack_pending: metrics._Gauge
    book_age: metrics._Gauge
    ws_reconnects: metrics.Counter
    dependency_up: metrics._Gauge
    kill_switch: metrics._Gauge
    mode: metrics._Gauge
    alarm_active: metrics._Gauge
    equity: metrics._Gauge
    bot_pnl: metrics._Gauge
    bot_drawdown: metrics._Gauge
    daily_pnl: metrics._Gauge
    exposure: metrics._Gauge
    reconcile_mismatches: metrics._Gauge
    reconcile_seconds: metrics.Histogram
    halted_symbols: metrics._Gauge
    quarantined_fills: metrics._Gauge
    submit_seconds: metrics.Histogram
    stale_books: metrics.Counter
    books: metrics.Counter


def build_instruments(meter: metrics.Meter) -> Instruments:
    """The instruments on one meter (the process-wide one in services; a private one in unit tests)."""

    def counter(name: str, help_: str) -> metrics.Counter:
        DECLARED[name] = ("counter", help_)
        return meter.create_counter(name, description=help_)

    def gauge(name: str, help_: str) -> metrics._Gauge:
        DECLARED[name] = ("gauge", help_)
        return meter.create_gauge(name, description=help_)

    def seconds(name: str, help_: str) -> metrics.Histogram:
        DECLARED[name] = ("histogram", help_)
        return meter.create_histogram(
            name, unit="s", description=help_, explicit_bucket_boundaries_advisory=list(SECONDS_BUCKETS)
        )

    return Instruments(
        handled=counter("btcbot_messages_handled_total", "consumer loop outcomes (ack, nak, dead)"),
        handle_seconds=seconds("btcbot_handle_seconds", "handler time per message"),
        dead_letters=counter("btcbot_dead_letters_total", "messages parked in the dead-letter stream"),
        stage_latency=seconds("btcbot_stage_latency_seconds", "latency of one pipeline stage"),
        tick_to_order=seconds("btcbot_tick_to_order_seconds", "book received -> order request leaving execution"),
        orders=counter("btcbot_orders_total", "execution's order outcomes"),
        denials=counter("btcbot_denials_total", "risk's denials by reason code"),
        fills=counter("btcbot_fills_total", "fills booked by the ledger"),
        fees_quote=counter("btcbot_fees_quote_total", "fees booked, in the quote asset"),
        consumer_pending=gauge("btcbot_consumer_pending", "JetStream num_pending of a durable consumer"),
        consumer_ack_pending=gauge("btcbot_consumer_ack_pending", "JetStream num_ack_pending of a durable consumer"),
        book_age=gauge("btcbot_book_age_seconds", "age of the newest book published, in seconds"),
        ws_reconnects=counter("btcbot_ws_reconnects_total", "WebSocket reconnects"),
        dependency_up=gauge("btcbot_dependency_up", "1 while the dependency answers"),
        kill_switch=gauge("btcbot_kill_switch_engaged", "1 while the kill switch is engaged"),
        mode=gauge("btcbot_mode", "1 for the trading mode in force"),
        alarm_active=gauge("btcbot_alarm_active", "1 while an alarm holds"),
        equity=gauge("btcbot_equity_quote", "account equity in the quote asset"),
        bot_pnl=gauge("btcbot_bot_pnl_quote", "the bot's own PnL in the quote asset"),
        bot_drawdown=gauge("btcbot_bot_drawdown_quote", "the bot's drawdown from its peak PnL"),
        daily_pnl=gauge("btcbot_daily_pnl_quote", "today's bot PnL in the quote asset"),
        exposure=gauge("btcbot_exposure_quote", "the bot's exposure per symbol in the quote asset"),
        reconcile_mismatches=gauge("btcbot_reconcile_mismatches", "confirmed mismatches in the last reconciliation"),
        reconcile_seconds=seconds("btcbot_reconcile_seconds", "reconciliation round duration"),
        halted_symbols=gauge("btcbot_halted_symbols", "symbols halted by the ledger"),
        quarantined_fills=gauge("btcbot_quarantined_fills", "fills held in quarantine"),
        submit_seconds=seconds("btcbot_submit_seconds", "exchange order submit call latency"),
        stale_books=counter("btcbot_stale_books_total", "books published stale"),
        books=counter("btcbot_books_total", "books published"),
    )


# Every family of docs/metrics.md: name -> (type, help). /metrics lists each one (HELP and TYPE) even before it
# has a sample, as Prometheus clients do for labelled families; the exchange client's two are declared here.
DECLARED: dict[str, tuple[str, str]] = {
    "btcbot_breaker_state": ("gauge", "Circuit breaker state per endpoint group: 0 closed, 1 half-open, 2 open"),
    "btcbot_http_429_total": ("counter", "429 answers from the exchange"),
}


@cache
def instruments() -> Instruments:
    """The process-wide instruments (no-ops until `install_metrics` set the meter provider)."""
    return build_instruments(metrics.get_meter("btcbot.runtime"))


_readers: list[InMemoryMetricReader] = []


def install_metrics(resource: Resource, extra_readers: Sequence[MetricReader] = ()) -> InMemoryMetricReader:
    """Set the process's meter provider: a pull reader for /metrics plus `extra_readers` (OTLP). Once per process."""
    if _readers:
        return _readers[0]  # OTel allows one meter provider per process: the first one stays
    reader = InMemoryMetricReader()
    metrics.set_meter_provider(MeterProvider(resource=resource, metric_readers=[reader, *extra_readers], views=VIEWS))
    _readers[:] = [reader]
    instruments()  # create them now rather than on a first message
    return reader


def prometheus_text() -> str:
    """This process's metrics in the Prometheus text format (empty before `install_metrics`)."""
    if not _readers:
        return ""
    instruments()  # declares every family
    text = render(_readers[0].get_metrics_data())
    present = set(re.findall(r"^# TYPE (\S+) ", text, flags=re.MULTILINE))
    lines = [
        f"# HELP {name} {_escape_help(help_)}\n# TYPE {name} {kind}\n"
        for name, (kind, help_) in DECLARED.items()
        if name not in present
    ]
    return text + "".join(lines)


# ---- Prometheus text exposition (format 0.0.4) ------------------------------------------------------------------


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _escape_value(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(attributes: Mapping[str, Any] | None, extra: Iterable[tuple[str, str]] = ()) -> str:
    pairs = [(str(k), str(v)) for k, v in sorted((attributes or {}).items())] + list(extra)
    if not pairs:
        return ""
    return "{" + ",".join(f'{k}="{_escape_value(v)}"' for k, v in pairs) + "}"


def _number(value: float) -> str:
    if isinstance(value, int):
        return str(value)
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if math.isnan(value):
        return "NaN"
    return repr(float(value))


_INVALID = re.compile(r"[^a-zA-Z0-9_:]")


def prometheus_name(name: str, kind: str) -> str:
    """An OTel instrument name as Prometheus spells it: dots to underscores, counters ending in _total."""
    clean = _INVALID.sub("_", name)
    return f"{clean}_total" if kind == "counter" and not clean.endswith("_total") else clean


def render(data: MetricsData | None) -> str:
    """Prometheus text of an SDK collection: counters, gauges and histograms (cumulative)."""
    lines: list[str] = []
    seen: set[str] = set()
    for resource_metrics in data.resource_metrics if data is not None else ():
        for scope in resource_metrics.scope_metrics:
            for metric in scope.metrics:
                point_data = metric.data
                if isinstance(point_data, Sum):
                    kind = "counter" if point_data.is_monotonic else "gauge"
                elif isinstance(point_data, Gauge):
                    kind = "gauge"
                elif isinstance(point_data, Histogram):
                    kind = "histogram"
                else:  # pragma: no cover  (exponential histograms are not configured)
                    continue
                name = prometheus_name(metric.name, kind)
                if name in seen or not point_data.data_points:
                    continue
                seen.add(name)
                lines.append(f"# HELP {name} {_escape_help(metric.description or name)}")
                lines.append(f"# TYPE {name} {kind}")
                if isinstance(point_data, Histogram):
                    for hp in point_data.data_points:
                        cumulative = 0
                        for bound, count in zip(hp.explicit_bounds, hp.bucket_counts, strict=False):
                            cumulative += count
                            le = _labels(hp.attributes, [("le", _number(float(bound)))])
                            lines.append(f"{name}_bucket{le} {cumulative}")
                        lines.append(f"{name}_bucket{_labels(hp.attributes, [('le', '+Inf')])} {hp.count}")
                        lines.append(f"{name}_sum{_labels(hp.attributes)} {_number(hp.sum)}")
                        lines.append(f"{name}_count{_labels(hp.attributes)} {hp.count}")
                else:
                    lines.extend(
                        f"{name}{_labels(point.attributes)} {_number(point.value)}" for point in point_data.data_points
                    )
    return "\n".join(lines) + "\n" if lines else ""


def set_mode(current: str, source: str, modes: Sequence[str] = ("NORMAL", "REDUCE_ONLY", "OBSERVE_ONLY")) -> None:
    """btcbot_mode{mode, source}: 1 for the mode in force from this source, 0 for the others."""
    gauge = instruments().mode
    for mode in modes:
        gauge.set(1 if mode == current else 0, {"mode": mode, "source": source})


def seconds_between(since_ns: int, now_ns: int) -> float | None:
    """now - since in seconds; None when `since_ns` is unknown (0); clamped at 0 for clocks a little apart."""
    if since_ns <= 0:
        return None
    return max(0.0, (now_ns - since_ns) / 1e9)


def observe_stage(stage: str, since_ns: int, now_ns: int) -> None:
    """btcbot_stage_latency_seconds{stage} from a message's time to now (skipped when the start is unknown)."""
    elapsed = seconds_between(since_ns, now_ns)
    if elapsed is not None:
        instruments().stage_latency.record(elapsed, {"stage": stage})
