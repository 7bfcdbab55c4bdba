"""Why the pod name is BTCBOT_INSTANCE (docs/operations.md "Kubernetes topology"): a container restart keeps the
pod and its name, and the restarted process resumes its own fan-out durable where it stopped, receiving what was
published while it was down; a replacement pod under a new name starts afresh and leaves the old durable to the
server's idle cleanup. Against a real nats-server, through the kit's provisioning and consumer loop, as a service
does at start (btcbot.runtime.service: `spec.for_instance(settings.instance)`, then `provision`).
"""

from __future__ import annotations

import asyncio
import secrets
from decimal import Decimal

import pytest

from btcbot.contracts.codec import Codec
from btcbot.contracts.messages import OrderIntent
from btcbot.contracts.streams import ConsumerSpec, StreamSpec
from btcbot.runtime.bus import Delivery
from btcbot.runtime.consumer import Consumer
from btcbot.runtime.jetstream import NatsPublisher, connect, provision

pytestmark = pytest.mark.integration

POD = "risk-6d5f8c7b9-x2k4q"  # a Deployment's pod name, from the downward API


def intent(n: int) -> OrderIntent:
    return OrderIntent(
        id=f"intent-{n}",
        ts_ns=1,
        strategy="s",
        symbol="BTCTRY",
        side="buy",
        order_type="limit",
        price=Decimal("100"),
        quantity=Decimal("1"),
        reason="test",
        book_id="b",
    )


async def consume(js, spec: ConsumerSpec, stream: StreamSpec, want: int, timeout: float = 5.0) -> list[str]:
    """Start as a service does (provision, then the consumer loop) and stop after `want` messages or `timeout`."""
    await provision(js, [stream], [spec])
    got: list[str] = []
    enough = asyncio.Event()

    async def handler(message: OrderIntent, delivery: Delivery) -> None:
        got.append(message.id)
        if len(got) >= want:
            enough.set()

    stop = asyncio.Event()
    task = asyncio.create_task(Consumer("risk", js, NatsPublisher(js), spec, Codec(OrderIntent), handler).run(stop))
    try:
        await asyncio.wait_for(enough.wait(), timeout)
    except TimeoutError:
        pass
    finally:
        stop.set()
        await asyncio.wait_for(task, 5)
    return got


async def test_a_restarted_container_resumes_its_own_fanout_durable_and_a_new_pod_starts_afresh(nats_url: str) -> None:
    nc = await connect(nats_url, "k8s-identity-test", 5, reconnect_forever=False)
    js = nc.jetstream()
    tag = secrets.token_hex(3).upper()
    stream = StreamSpec(f"K{tag}", (f"k{tag}.*",), "test stream")
    subject = f"k{tag}.BTCTRY"
    fan = ConsumerSpec("control", stream.name, (subject,), fanout=True, deliver="new", idle_cleanup=30)
    publisher = NatsPublisher(js)
    try:
        await provision(js, [stream])
        first = asyncio.create_task(consume(js, fan.for_instance(POD), stream, want=1))
        await asyncio.sleep(0.5)
        await publisher.publish(subject, intent(1))
        assert await first == ["intent-1"]
        # The container dies; two messages arrive while it is down.
        await publisher.publish(subject, intent(2))
        await publisher.publish(subject, intent(3))
        # Same pod, same name: the restarted process binds the same durable and gets exactly what it missed.
        assert await consume(js, fan.for_instance(POD), stream, want=2) == ["intent-2", "intent-3"]
        # A replacement pod (new name) starts at "new": it does not replay its predecessor's backlog.
        await publisher.publish(subject, intent(4))
        replacement = fan.for_instance("risk-6d5f8c7b9-p7r2m")
        assert replacement.durable != fan.for_instance(POD).durable
        assert await consume(js, replacement, stream, want=1, timeout=2.0) == []
    finally:
        await js.delete_stream(stream.name)
        await nc.close()
