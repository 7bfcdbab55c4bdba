"""The ledger's OpenTelemetry instruments (created lazily, after the kit has set the meter provider)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from opentelemetry import metrics


@dataclass(frozen=True)
class LedgerInstruments:
    """Counters an operator alerts on, and the size of the batches ingestion commits."""

    integrity_alerts: metrics.Counter
    reconcile_rounds: metrics.Counter
    reconcile_mismatches: metrics.Counter
    batch_size: metrics.Histogram


@cache
def ledger_instruments() -> LedgerInstruments:
    """The process-wide ledger instruments."""
    meter = metrics.get_meter("btcbot.ledger")
    return LedgerInstruments(
        integrity_alerts=meter.create_counter(
            "btcbot.ledger.integrity_alerts", description="integrity errors (oversell) that froze a position"
        ),
        reconcile_rounds=meter.create_counter(
            "btcbot.ledger.reconcile.rounds", description="reconciliation rounds with the exchange, by status"
        ),
        reconcile_mismatches=meter.create_counter(
            "btcbot.ledger.reconcile.mismatches",
            description="differences with the exchange that persisted across two rounds, by kind",
        ),
        batch_size=meter.create_histogram(
            "btcbot.ledger.batch_size", description="execution events committed per transaction"
        ),
    )
