"""Read-only views of streams for operators and tools: last sequences, and messages from a sequence on."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import nats.errors
import nats.js.errors
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


# How long a fetch answered "503 no responders" is retried: in a cluster a consumer created a moment ago (or one
# whose node was lost) has no leader yet; elections take a few seconds.
_UNAVAILABLE_RETRY_S = 10.0


async def _fetch(sub: Any, batch: int, timeout: float) -> list[Any]:
    """`sub.fetch`, retried while JetStream answers 503 (a consumer without a leader yet), up to 10 s."""
    deadline = time.monotonic() + _UNAVAILABLE_RETRY_S
    while True:
        try:
            msgs: list[Any] = await sub.fetch(batch=batch, timeout=timeout)
            return msgs
        except nats.js.errors.ServiceUnavailableError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)


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
                msgs = await _fetch(sub, batch, 2)
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
                msgs = await _fetch(sub, 500, 1)
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


async def subject_counts(js: JetStreamContext, stream: str, subjects_filter: str) -> dict[str, int]:
    """How many messages the stream holds per subject matching `subjects_filter` (empty when it is missing)."""
    try:
        info = await js.stream_info(stream, subjects_filter=subjects_filter)
    except NotFoundError:
        return {}
    return {subject: int(count) for subject, count in (info.state.subjects or {}).items()}


async def consumer_lags(js: JetStreamContext, streams: Iterable[str]) -> dict[str, int]:
    """Per durable consumer of these streams: messages not yet delivered plus delivered but unacknowledged."""
    lags: dict[str, int] = {}
    for stream in streams:
        try:
            consumers = await js.consumers_info(stream)
        except NotFoundError:
            continue
        for info in consumers:
            if info.config.durable_name:
                lags[info.config.durable_name] = int(info.num_pending or 0) + int(info.num_ack_pending or 0)
    return lags


class StreamTail:
    """New messages of one stream as they arrive, from a start sequence on, over one ephemeral no-ack consumer.

    For a watcher that polls every second or so: one consumer for the whole watch, made again if the server
    dropped it (an outage longer than its inactivity threshold).
    """

    def __init__(self, js: JetStreamContext, stream: str, subject: str, after_seq: int) -> None:
        """Deliver the messages of `stream` on `subject` whose sequence is above `after_seq`."""
        self._js = js
        self._stream = stream
        self._subject = subject
        self._last = after_seq
        self._sub: JetStreamContext.PullSubscription | None = None

    async def poll(self, batch: int = 500, timeout: float = 0.5) -> list[StoredMessage]:
        """What arrived since the last poll (possibly nothing)."""
        if self._sub is None:
            config = ConsumerConfig(
                deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
                opt_start_seq=self._last + 1,
                ack_policy=AckPolicy.NONE,
                mem_storage=True,
                inactive_threshold=30,
            )
            self._sub = await ephemeral_pull(self._js, self._stream, self._subject, config)
        try:
            msgs = await self._sub.fetch(batch=batch, timeout=timeout)
        except (nats.errors.TimeoutError, TimeoutError):
            return []
        except nats.errors.Error:
            await self.close()
            raise
        out = []
        for msg in msgs:
            seq = msg.metadata.sequence.stream
            if seq > self._last:
                self._last = seq
                out.append(StoredMessage(self._stream, seq, msg.subject, msg.data, dict(msg.headers or {})))
        return out

    async def close(self) -> None:
        """Drop the consumer (idempotent)."""
        sub, self._sub = self._sub, None
        if sub is not None:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
