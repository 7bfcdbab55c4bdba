"""The kit's own OpenTelemetry instruments (created lazily, after the meter provider is set)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from opentelemetry import metrics


@dataclass(frozen=True)
class Instruments:
    """Counters and histograms every service reports."""

    handled: metrics.Counter
    handle_seconds: metrics.Histogram
    dead_letters: metrics.Counter


@cache
def instruments() -> Instruments:
    """The process-wide instruments."""
    meter = metrics.get_meter("btcbot.runtime")
    return Instruments(
        handled=meter.create_counter("btcbot.messages.handled", description="messages handled, by outcome"),
        handle_seconds=meter.create_histogram("btcbot.handler.duration", unit="s", description="per-hop handler time"),
        dead_letters=meter.create_counter("btcbot.dead_letters", description="messages parked in the DLQ"),
    )
