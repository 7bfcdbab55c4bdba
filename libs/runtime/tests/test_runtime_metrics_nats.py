"""The kit's metrics poll against a real nats-server: pending and ack-pending per durable, dependency states."""

from __future__ import annotations

import secrets

import pytest
from opentelemetry.sdk.resources import Resource

from btcbot.contracts.streams import DLQ, ConsumerSpec, StreamSpec
from btcbot.runtime.jetstream import connect, provision
from btcbot.runtime.metrics import install_metrics, prometheus_text
from btcbot.runtime.service import Service
from btcbot.runtime.settings import CommonSettings

pytestmark = pytest.mark.integration


async def test_the_poll_reports_pending_per_durable_under_its_base_name(nats_url: str) -> None:
    install_metrics(Resource.create({"service.name": "test"}))
    nc = await connect(nats_url, "metrics-test", 5, reconnect_forever=False)
    js = nc.jetstream()
    tag = secrets.token_hex(3).upper()
    stream = StreamSpec(f"M{tag}", (f"m{tag}.*",), "test stream")
    base = ConsumerSpec(f"lag{tag}", stream.name, (f"m{tag}.*",), fanout=True)
    own = base.for_instance("pod-7f9c")
    try:
        await provision(js, [stream, DLQ], [own])
        for n in range(3):
            await js.publish(f"m{tag}.X", b"x", headers={"Nats-Msg-Id": f"{tag}-{n}"})
        svc = Service("test", CommonSettings(), nc)
        svc.watch_consumer(base.durable, own)
        svc.dependency("exchange", lambda: False)
        await svc.poll_metrics_once()
        text = prometheus_text()
        assert f'btcbot_consumer_pending{{consumer="{base.durable}"}} 3' in text
        assert f'btcbot_consumer_ack_pending{{consumer="{base.durable}"}} 0' in text
        assert "pod-7f9c" not in text
        assert 'btcbot_dependency_up{dependency="nats"} 1' in text
        assert 'btcbot_dependency_up{dependency="exchange"} 0' in text
    finally:
        await js.delete_stream(stream.name)
        await nc.close()
