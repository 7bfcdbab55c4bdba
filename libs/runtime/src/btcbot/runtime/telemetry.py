"""OpenTelemetry set-up and W3C trace context in NATS headers.

Spans go to OTLP when an endpoint is configured and to a JSON-lines file when BTCBOT_TRACE_FILE is set, so a
trace can be inspected without Jaeger. Metrics are always kept for /metrics (runtime/metrics.py) and also pushed
over OTLP when an endpoint is configured.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.sdk.metrics.export import MetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

from btcbot.runtime.metrics import install_metrics
from btcbot.runtime.redact import redact_value

_providers: list[TracerProvider] = []


class JsonLinesSpanExporter(SpanExporter):
    """Appends one JSON object per finished span to a file (safe for several processes: one write per line)."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._lock = threading.Lock()
        path.parent.mkdir(parents=True, exist_ok=True)

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        lines = []
        for span in spans:
            ctx = span.get_span_context()
            if ctx is None:
                continue
            parent = span.parent
            lines.append(
                json.dumps(
                    {
                        "trace_id": f"{ctx.trace_id:032x}",
                        "span_id": f"{ctx.span_id:016x}",
                        "parent_id": f"{parent.span_id:016x}" if parent else None,
                        "name": span.name,
                        "service": span.resource.attributes.get("service.name"),
                        "start_ns": span.start_time,
                        "end_ns": span.end_time,
                        # Attributes may quote URLs or errors: the same redaction as every log line.
                        "attributes": {k: redact_value(k, _jsonable(v)) for k, v in (span.attributes or {}).items()},
                        "status": span.status.status_code.name,
                    },
                    separators=(",", ":"),
                )
            )
        if lines:
            with self._lock, self._path.open("a", encoding="utf-8") as fh:
                fh.write("\n".join(lines) + "\n")
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        """Nothing to release: the file is opened per batch."""


def _jsonable(value: object) -> object:
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    if isinstance(value, tuple | list):
        return [_jsonable(v) for v in value]
    return str(value)


def configure_telemetry(service: str, instance: str, trace_file: Path | None, otlp_endpoint: str | None) -> None:
    """Install the tracer (and, with OTLP, meter) providers for this process."""
    resource = Resource.create({"service.name": service, "service.instance.id": instance})
    provider = TracerProvider(resource=resource)
    if trace_file is not None:
        provider.add_span_processor(BatchSpanProcessor(JsonLinesSpanExporter(trace_file), schedule_delay_millis=500))
    readers: list[MetricReader] = []
    if otlp_endpoint:
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader

        base = otlp_endpoint.rstrip("/")
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=f"{base}/v1/traces")))
        readers.append(PeriodicExportingMetricReader(OTLPMetricExporter(endpoint=f"{base}/v1/metrics")))
    install_metrics(resource, readers)
    trace.set_tracer_provider(provider)
    _providers.append(provider)


def shutdown_telemetry() -> None:
    """Flush and stop exporters (call at process exit)."""
    for provider in _providers:
        provider.force_flush()
        provider.shutdown()
    _providers.clear()


def inject(headers: dict[str, str]) -> dict[str, str]:
    """Add the current span's W3C `traceparent` (and `tracestate`) to headers; returns them."""
    propagate.inject(headers)
    return headers


def extract(headers: Mapping[str, str] | None) -> Context:
    """The trace context carried by a message's headers (keys matched case-insensitively)."""
    carrier = {k.lower(): v for k, v in (headers or {}).items()}
    return propagate.extract(carrier)


def current_traceparent() -> str:
    """The current span's `traceparent`, to store beside state whose later effects belong to this trace."""
    return inject({}).get("traceparent", "")


@contextmanager
def continue_trace(traceparent: str, name: str, **attributes: str) -> Iterator[trace.Span]:
    """Run a block in a new span under a stored `traceparent` (a fill found by polling joins its order's trace)."""
    ctx = extract({"traceparent": traceparent}) if traceparent else None
    tracer = trace.get_tracer("btcbot.runtime")
    with tracer.start_as_current_span(name, context=ctx, attributes=attributes) as span:
        yield span
