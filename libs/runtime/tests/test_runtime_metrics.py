"""The kit's instruments and their Prometheus text: names, types, labels, seconds buckets, /metrics over HTTP."""

from __future__ import annotations

import asyncio
import re

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from btcbot.runtime.health import HealthServer
from btcbot.runtime.metrics import SECONDS_BUCKETS, VIEWS, Instruments, build_instruments, render


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
