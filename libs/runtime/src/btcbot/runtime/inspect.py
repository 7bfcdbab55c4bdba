"""Read-only views of streams for operators and tools: last sequences, and messages from a sequence on."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime

import nats.errors
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError


@dataclass(frozen=True)
class StoredMessage:
    """One message as the stream holds it."""

    stream: str
    sequence: int
    subject: str
    data: bytes
    headers: dict[str, str]


async def last_sequence(js: JetStreamContext, stream: str) -> int:
    """The stream's last sequence (0 when empty or missing)."""
    try:
        info = await js.stream_info(stream)
    except NotFoundError:
        return 0
    return int(info.state.last_seq or 0)


async def ephemeral_pull(
    js: JetStreamContext, stream: str, subject: str, config: ConsumerConfig
) -> JetStreamContext.PullSubscription:
    """A pull subscription on a new ephemeral consumer whose name the server picks.

    nats-py's `pull_subscribe` names ephemeral consumers itself, which needs the right to create consumers by
    name; creating it nameless (`CONSUMER.CREATE.<stream>`) is all a read-only identity may do (docs/security.md).
    """
    filters = {} if config.filter_subjects else {"filter_subject": subject}
    unnamed = config.evolve(name=None, durable_name=None, **filters)
    info = await js.add_consumer(stream, unnamed)
    return await js.pull_subscribe_bind(info.name, stream=stream)


async def read_stream(
    js: JetStreamContext, stream: str, start_seq: int = 1, subject: str = ">", batch: int = 500
) -> AsyncIterator[StoredMessage]:
    """Every message of a stream from start_seq to the current end, with an ephemeral no-ack consumer."""
    end = await last_sequence(js, stream)
    if end < start_seq:
        return
    config = ConsumerConfig(
        deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
        opt_start_seq=max(1, start_seq),
        ack_policy=AckPolicy.NONE,
        mem_storage=True,
        inactive_threshold=30,
    )
    sub = await ephemeral_pull(js, stream, subject, config)
    try:
        while True:
            try:
                msgs = await sub.fetch(batch=batch, timeout=2)
            except (nats.errors.TimeoutError, TimeoutError):
                return
            for msg in msgs:
                seq = msg.metadata.sequence.stream
                yield StoredMessage(stream, seq, msg.subject, msg.data, dict(msg.headers or {}))
                if seq >= end:
                    return
    finally:
        await sub.unsubscribe()


async def read_since(js: JetStreamContext, stream: str, since_ns: int, subject: str) -> list[StoredMessage]:
    """Every message of `stream` on `subject` stored at or after `since_ns` (ns since the epoch), oldest first."""
    end = await last_sequence(js, stream)
    if end == 0:
        return []
    config = ConsumerConfig(
        deliver_policy=DeliverPolicy.BY_START_TIME,
        opt_start_time=datetime.fromtimestamp(since_ns / 1e9, tz=UTC),
        ack_policy=AckPolicy.NONE,
        mem_storage=True,
        inactive_threshold=30,
    )
    sub = await ephemeral_pull(js, stream, subject, config)
    out: list[StoredMessage] = []
    try:
        while True:
            try:
                msgs = await sub.fetch(batch=500, timeout=1)
            except (nats.errors.TimeoutError, TimeoutError):
                return out
            out.extend(
                StoredMessage(stream, m.metadata.sequence.stream, m.subject, m.data, dict(m.headers or {}))
                for m in msgs
            )
            if msgs[-1].metadata.num_pending == 0 or msgs[-1].metadata.sequence.stream >= end:
                return out
    finally:
        await sub.unsubscribe()


async def last_message(js: JetStreamContext, stream: str, subject: str) -> StoredMessage | None:
    """The last message of `stream` on `subject` (wildcards allowed), or None when there is none."""
    try:
        raw = await js.get_last_msg(stream, subject)
    except NotFoundError:
        return None
    return StoredMessage(stream, int(raw.seq or 0), raw.subject or subject, raw.data or b"", dict(raw.headers or {}))
