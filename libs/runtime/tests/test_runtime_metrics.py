"""The kit's instruments and their Prometheus text: names, types, labels, seconds buckets, /metrics over HTTP."""

from __future__ import annotations

import asyncio
import re

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from btcbot.runtime.health import HealthServer
from btcbot.runtime.metrics import (
    DECLARED,
    SECONDS_BUCKETS,
    VIEWS,
    Instruments,
    build_instruments,
    render,
    seconds_between,
)


def private() -> tuple[Instruments, InMemoryMetricReader]:
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader], views=VIEWS)
    return build_instruments(provider.get_meter("test")), reader


def samples(text: str) -> dict[str, float]:
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, value = line.rsplit(" ", 1)
            out[key] = float(value)
    return out


def test_buckets_span_half_a_millisecond_to_ten_seconds() -> None:
    assert SECONDS_BUCKETS[0] == 0.0005
    assert SECONDS_BUCKETS[-1] == 10.0
    assert list(SECONDS_BUCKETS) == sorted(SECONDS_BUCKETS)


def test_histograms_in_seconds_use_the_second_buckets() -> None:
    inst, reader = private()
    for value in (0.0003, 0.002, 0.002, 0.04, 7.0):
        inst.tick_to_order.record(value, {"symbol": "BTCTRY"})
    text = render(reader.get_metrics_data())
    got = samples(text)
    assert "# TYPE btcbot_tick_to_order_seconds histogram" in text
    assert got['btcbot_tick_to_order_seconds_bucket{symbol="BTCTRY",le="0.0005"}'] == 1
    assert got['btcbot_tick_to_order_seconds_bucket{symbol="BTCTRY",le="0.0025"}'] == 3
    assert got['btcbot_tick_to_order_seconds_bucket{symbol="BTCTRY",le="0.05"}'] == 4
    assert got['btcbot_tick_to_order_seconds_bucket{symbol="BTCTRY",le="10.0"}'] == 5
    assert got['btcbot_tick_to_order_seconds_bucket{symbol="BTCTRY",le="+Inf"}'] == 5
    assert got['btcbot_tick_to_order_seconds_count{symbol="BTCTRY"}'] == 5
    assert abs(got['btcbot_tick_to_order_seconds_sum{symbol="BTCTRY"}'] - 7.0443) < 1e-9
    # Every bucket line of a family: the 14 bounds and +Inf.
    assert len(re.findall(r"btcbot_tick_to_order_seconds_bucket\{", text)) == len(SECONDS_BUCKETS) + 1


def test_counters_and_gauges_render_with_their_labels() -> None:
    inst, reader = private()
    inst.handled.add(2, {"service": "risk", "consumer": "risk-intents", "outcome": "ack"})
    inst.denials.add(1, {"symbol": "BTCTRY", "reason": "KILL_SWITCH"})
    inst.kill_switch.set(1)
    inst.kill_switch.set(0)
    inst.equity.set(1234.5)
    inst.exposure.set(-3.25, {"symbol": "ETHTRY"})
    text = render(reader.get_metrics_data())
    got = samples(text)
    assert "# TYPE btcbot_messages_handled_total counter" in text
    assert "# TYPE btcbot_kill_switch_engaged gauge" in text
    assert got['btcbot_messages_handled_total{consumer="risk-intents",outcome="ack",service="risk"}'] == 2
    assert got['btcbot_denials_total{reason="KILL_SWITCH",symbol="BTCTRY"}'] == 1
    assert got["btcbot_kill_switch_engaged"] == 0  # the last value set
    assert got["btcbot_equity_quote"] == 1234.5
    assert got['btcbot_exposure_quote{symbol="ETHTRY"}'] == -3.25


def test_label_values_are_escaped() -> None:
    inst, reader = private()
    inst.denials.add(1, {"symbol": "X", "reason": 'a"b\\c\nd'})
    assert 'reason="a\\"b\\\\c\\nd"' in render(reader.get_metrics_data())


def test_nothing_recorded_renders_nothing() -> None:
    _, reader = private()
    assert render(reader.get_metrics_data()) == ""
    assert render(None) == ""


async def test_metrics_are_served_beside_the_probes() -> None:
    inst, reader = private()
    inst.books.add(3, {"symbol": "BTCTRY"})
    server = HealthServer("127.0.0.1", 0, metrics=lambda: render(reader.get_metrics_data()))
    await server.start()
    try:
        reader_, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        await writer.drain()
        response = (await asyncio.wait_for(reader_.read(), 5)).decode()
        writer.close()
    finally:
        await server.stop()
    head, body = response.split("\r\n\r\n", 1)
    assert head.startswith("HTTP/1.1 200 OK")
    assert "text/plain; version=0.0.4" in head
    assert 'btcbot_books_total{symbol="BTCTRY"} 3' in body


# The names agreed with the dashboards and alert rules (docs/metrics.md).
AGREED = {
    "btcbot_messages_handled_total": "counter",
    "btcbot_handle_seconds": "histogram",
    "btcbot_stage_latency_seconds": "histogram",
    "btcbot_tick_to_order_seconds": "histogram",
    "btcbot_orders_total": "counter",
    "btcbot_denials_total": "counter",
    "btcbot_fills_total": "counter",
    "btcbot_fees_quote_total": "counter",
    "btcbot_consumer_pending": "gauge",
    "btcbot_consumer_ack_pending": "gauge",
    "btcbot_book_age_seconds": "gauge",
    "btcbot_ws_reconnects_total": "counter",
    "btcbot_breaker_state": "gauge",
    "btcbot_http_429_total": "counter",
    "btcbot_dependency_up": "gauge",
    "btcbot_kill_switch_engaged": "gauge",
    "btcbot_mode": "gauge",
    "btcbot_alarm_active": "gauge",
    "btcbot_equity_quote": "gauge",
    "btcbot_bot_pnl_quote": "gauge",
    "btcbot_bot_drawdown_quote": "gauge",
    "btcbot_daily_pnl_quote": "gauge",
    "btcbot_exposure_quote": "gauge",
    "btcbot_reconcile_mismatches": "gauge",
    "btcbot_reconcile_seconds": "histogram",
    "btcbot_halted_symbols": "gauge",
    "btcbot_quarantined_fills": "gauge",
    "btcbot_dead_letters_total": "counter",
    "btcbot_submit_seconds": "histogram",
    "btcbot_stale_books_total": "counter",
    "btcbot_books_total": "counter",
}


def test_every_agreed_family_is_declared_with_its_type() -> None:
    private()  # build_instruments declares the kit's families
    assert {name: kind for name, (kind, _) in DECLARED.items()} == AGREED


def test_seconds_between_skips_an_unknown_start_and_never_goes_negative() -> None:
    assert seconds_between(0, 5_000_000_000) is None
    assert seconds_between(1_000_000_000, 1_250_000_000) == 0.25
    assert seconds_between(2_000_000_000, 1_000_000_000) == 0.0


def test_the_mode_gauge_marks_exactly_one_mode_per_source() -> None:
    inst, reader = private()
    for mode in ("NORMAL", "REDUCE_ONLY", "OBSERVE_ONLY"):
        inst.mode.set(1 if mode == "REDUCE_ONLY" else 0, {"mode": mode, "source": "effective"})
    got = samples(render(reader.get_metrics_data()))
    assert got['btcbot_mode{mode="REDUCE_ONLY",source="effective"}'] == 1
    assert got['btcbot_mode{mode="NORMAL",source="effective"}'] == 0
    assert got['btcbot_mode{mode="OBSERVE_ONLY",source="effective"}'] == 0


def test_otel_names_are_spelled_the_prometheus_way() -> None:
    reader = InMemoryMetricReader()
    meter = MeterProvider(metric_readers=[reader], views=VIEWS).get_meter("test")
    meter.create_counter("btcbot.ledger.integrity_alerts").add(1, {"kind": "oversell"})
    text = render(reader.get_metrics_data())
    assert "# TYPE btcbot_ledger_integrity_alerts_total counter" in text
    assert 'btcbot_ledger_integrity_alerts_total{kind="oversell"} 1' in text
