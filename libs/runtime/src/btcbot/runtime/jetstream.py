"""NATS connection, stream and consumer provisioning, and the traced, deduplicated publisher.

Only this package imports nats. Traps handled here (see nats-notes.md): bounded initial connect, endless
reconnect afterwards, `add_consumer` as create-or-update, copied headers on publish.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    DiscardPolicy,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.errors import BadRequestError, NotFoundError
from opentelemetry import trace

from btcbot.contracts.codec import encode
from btcbot.contracts.messages import Message
from btcbot.contracts.streams import ConsumerSpec, StreamSpec
from btcbot.runtime.errors import DependencyUnavailable
from btcbot.runtime.logging import get_logger
from btcbot.runtime.telemetry import inject

log = get_logger(__name__)

_DELIVER = {
    "all": DeliverPolicy.ALL,
    "new": DeliverPolicy.NEW,
    "last_per_subject": DeliverPolicy.LAST_PER_SUBJECT,
}


async def connect(url: str, name: str, timeout: float = 10.0, *, reconnect_forever: bool = True) -> NatsClient:
    """Connect within `timeout` seconds, then reconnect forever (nats-py's own connect can hang 2 minutes)."""

    async def on_error(exc: Exception) -> None:
        log.warning("nats.error", error=repr(exc))

    async def on_disconnected() -> None:
        log.warning("nats.disconnected")

    async def on_reconnected() -> None:
        log.info("nats.reconnected")

    async def on_closed() -> None:
        log.info("nats.closed")

    try:
        return await asyncio.wait_for(
            nats.connect(
                url,
                name=name,
                connect_timeout=min(2.0, timeout),
                reconnect_time_wait=1.0,
                max_reconnect_attempts=-1 if reconnect_forever else 2,
                error_cb=on_error,
                disconnected_cb=on_disconnected,
                reconnected_cb=on_reconnected,
                closed_cb=on_closed,
                drain_timeout=5,
            ),
            timeout,
        )
    except (TimeoutError, OSError, nats.errors.NoServersError) as exc:
        raise DependencyUnavailable(f"NATS at {url} did not answer within {timeout:.0f}s: {exc!r}") from exc


def stream_config(spec: StreamSpec) -> StreamConfig:
    """The JetStream config of a stream definition."""
    return StreamConfig(
        name=spec.name,
        description=spec.description,
        subjects=list(spec.subjects),
        retention=RetentionPolicy.LIMITS,
        storage=StorageType.FILE,
        max_age=spec.max_age,
        max_msgs_per_subject=spec.max_msgs_per_subject,
        duplicate_window=spec.duplicate_window,
        discard=DiscardPolicy.OLD,
        num_replicas=1,
    )


def consumer_config(spec: ConsumerSpec) -> ConsumerConfig:
    """The JetStream config of a durable pull consumer definition."""
    filters: dict[str, Any] = (
        {"filter_subject": spec.filter_subjects[0]}
        if len(spec.filter_subjects) == 1
        else {"filter_subjects": list(spec.filter_subjects)}
    )
    return ConsumerConfig(
        durable_name=spec.durable,
        description=spec.description,
        ack_policy=AckPolicy.EXPLICIT,
        deliver_policy=_DELIVER[spec.deliver],
        # Redelivery delays are applied by our nak(delay), not the server's `backoff`, because the server
        # then uses backoff[0] as ack_wait and would redeliver a slow but healthy handler's message.
        ack_wait=spec.ack_wait,
        max_deliver=spec.max_deliver,
        max_ack_pending=spec.max_ack_pending,
        inactive_threshold=spec.idle_cleanup if spec.fanout else None,
        **filters,
    )


async def provision(
    js: JetStreamContext, streams: Iterable[StreamSpec], consumers: Iterable[ConsumerSpec] = ()
) -> None:
    """Create or update every stream and durable consumer; safe to run at every start of every replica."""
    for spec in streams:
        config = stream_config(spec)
        try:
            await js.stream_info(spec.name)
        except NotFoundError:
            try:
                await js.add_stream(config)
                log.info("stream.created", stream=spec.name)
                continue
            except BadRequestError:
                pass  # another replica created it between our two calls
        await js.update_stream(config)
    for consumer in consumers:
        await js.add_consumer(consumer.stream, consumer_config(consumer))


class NatsPublisher:
    """Publishes contract messages to JetStream with their id as `Nats-Msg-Id` and the trace context."""

    def __init__(self, js: JetStreamContext, timeout: float = 5.0) -> None:
        self._js = js
        self._timeout = timeout
        self._tracer = trace.get_tracer("btcbot.runtime")
        self.duplicates = 0

    async def publish(self, subject: str, message: Message) -> None:
        """Publish and wait for the stream's ack; a server-side duplicate counts as success."""
        with self._tracer.start_as_current_span(
            f"publish {subject.split('.', 1)[0]}",
            kind=trace.SpanKind.PRODUCER,
            attributes={
                "messaging.destination": subject,
                "messaging.message.id": message.id,
                "btcbot.message_type": type(message).__name__,
            },
        ):
            headers = inject({"Nats-Msg-Id": message.id})
            try:
                ack = await self._js.publish(subject, encode(message), timeout=self._timeout, headers=headers)
            except (TimeoutError, nats.errors.TimeoutError, nats.errors.NoRespondersError) as exc:
                raise DependencyUnavailable(f"publish to {subject} not acknowledged: {exc!r}") from exc
            if ack.duplicate:
                self.duplicates += 1


async def _quiet(_: Exception) -> None:
    """nats-py logs every failed connect attempt unless given an error callback; a probe reports instead."""


async def server_facts(url: str, timeout: float = 2.0) -> tuple[str, str | None]:
    """(version, None) if JetStream answers, else (version, reason); DependencyUnavailable if unreachable."""
    nc = NatsClient()
    try:
        # max_reconnect_attempts=0 would mean "forever", and connect can outlive its own timeout (nats-notes 2.7).
        await asyncio.wait_for(
            nc.connect(
                url,
                name="btcbot-probe",
                connect_timeout=max(1, round(timeout)),
                max_reconnect_attempts=1,
                reconnect_time_wait=0,
                allow_reconnect=False,
                error_cb=_quiet,
            ),
            timeout,
        )
    except (TimeoutError, OSError, nats.errors.Error) as exc:
        await nc.close()
        raise DependencyUnavailable(f"{type(exc).__name__}: {exc}".rstrip(": ")) from exc
    try:
        server = nc.connected_server_version
        version = f"{server.major}.{server.minor}.{server.patch}"
        try:
            await asyncio.wait_for(nc.jetstream(timeout=timeout).account_info(), timeout)
        except (TimeoutError, nats.errors.Error, nats.js.errors.Error) as exc:
            return version, f"{type(exc).__name__}: {exc}".rstrip(": ")
        return version, None
    finally:
        await nc.close()
