"""The consumer loop: fetch, decode, handle inside a span continuing the producer's trace, then ack, nak or dead-letter.

Error mapping (STYLE.md): undecodable input -> DeadLetter + term; Poison -> DeadLetter + term; Retry or any other
exception -> nak with backoff, and on the last delivery DeadLetter + term. Nothing is dropped silently.

Before any handler, every message passes the kit's sanity checks (`btcbot.runtime.sanity`): one dated more than
the allowed clock skew after JetStream stored it is dead-lettered FUTURE_DATED, one whose money fields are not
sane is dead-lettered INVALID_MONEY naming the field.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import time
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

import msgspec
import nats.errors
import nats.js.errors
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from btcbot.contracts import ids, subjects
from btcbot.contracts.codec import Codec
from btcbot.contracts.messages import DeadLetter, Message
from btcbot.contracts.streams import ConsumerSpec
from btcbot.runtime import sanity
from btcbot.runtime.bus import Delivery, Handler, Publisher
from btcbot.runtime.errors import DependencyUnavailable, Poison, Retry
from btcbot.runtime.logging import get_logger
from btcbot.runtime.metrics import instruments
from btcbot.runtime.telemetry import extract

M = TypeVar("M", bound=Message)
log = get_logger(__name__)


def backoff_delay(spec: ConsumerSpec, deliveries: int) -> float:
    """Delay before the next delivery after `deliveries` failed ones."""
    if not spec.backoff:
        return 1.0
    return spec.backoff[min(deliveries - 1, len(spec.backoff) - 1)]


class Consumer(Generic[M]):
    """One durable pull consumer bound to a handler; `run` loops until `stop` is set."""

    def __init__(
        self,
        service: str,
        js: JetStreamContext,
        publisher: Publisher,
        spec: ConsumerSpec,
        codec: Codec[M],
        handler: Handler[M],
        now_ns: Callable[[], int] = time.time_ns,
        batch: int = 50,
        max_skew_ns: int = 5_000_000_000,
        base_name: str = "",
    ) -> None:
        self.service = service
        self.spec = spec
        # The metric label: a fan-out durable's base name (the instance suffix would make labels unbounded).
        self._base = base_name or spec.durable
        self._js = js
        self._publisher = publisher
        self._codec = codec
        self._handler = handler
        self._now_ns = now_ns
        self._batch = batch
        self._max_skew_ns = max_skew_ns
        self._tracer = trace.get_tracer("btcbot.runtime")
        self._sub: Any = None
        self.in_flight = 0
        self.last_fetch_ns = 0

    async def run(self, stop: asyncio.Event) -> None:
        """Fetch and process batches until stop is set; the batch in hand is always finished."""
        self._sub = await self._js.pull_subscribe_bind(self.spec.durable, stream=self.spec.stream)
        try:
            while not stop.is_set():
                try:
                    msgs = await self._sub.fetch(batch=self._batch, timeout=1.0)
                except (nats.errors.TimeoutError, TimeoutError):
                    # nats-py raises its own TimeoutError or, from inside fetch, asyncio's: both mean "idle".
                    self.last_fetch_ns = self._now_ns()
                    continue
                except (nats.errors.ConnectionClosedError, nats.errors.ConnectionReconnectingError) as exc:
                    log.warning("consumer.fetch_failed", consumer=self.spec.durable, error=repr(exc))
                    await _sleep_or_stop(stop, 1.0)
                    continue
                except (nats.js.errors.ServiceUnavailableError, nats.js.errors.NotFoundError) as exc:
                    if not self.spec.fanout and isinstance(exc, nats.js.errors.ServiceUnavailableError):
                        # In a cluster: the consumer's group is electing a new leader (a node was lost). It exists
                        # on the surviving nodes; the next fetch reaches the new leader.
                        log.warning("consumer.fetch_unavailable", consumer=self.spec.durable, error=repr(exc))
                        await _sleep_or_stop(stop, 0.5)
                        continue
                    if not self.spec.fanout:
                        raise
                    # A fan-out durable the server removed after `idle_cleanup` without a pull (a long outage, a
                    # slow start-up gate): this replica is alive, so it makes its own again and goes on (its input
                    # is "new" or "last per subject", and the state it needs was rebuilt at start).
                    await self._recreate(exc)
                    await _sleep_or_stop(stop, 0.2)
                    continue
                self.last_fetch_ns = self._now_ns()
                for msg in msgs:
                    self.in_flight += 1
                    try:
                        await self.process(msg)
                    finally:
                        self.in_flight -= 1
        finally:
            await self.close()

    async def _recreate(self, cause: Exception) -> None:
        from btcbot.runtime.jetstream import consumer_config  # jetstream imports nothing of this module

        try:
            await self._js.consumer_info(self.spec.stream, self.spec.durable)
            return  # it exists: a transient error; the next fetch retries
        except nats.js.errors.NotFoundError:
            pass
        except (nats.errors.TimeoutError, TimeoutError, nats.js.errors.ServiceUnavailableError):
            return  # no answer while a cluster elects a leader: the next fetch asks again
        log.warning("consumer.recreated", consumer=self.spec.durable, cause=repr(cause))
        await self._js.add_consumer(self.spec.stream, consumer_config(self.spec))
        old, self._sub = self._sub, await self._js.pull_subscribe_bind(self.spec.durable, stream=self.spec.stream)
        if old is not None:
            with contextlib.suppress(Exception):
                await old.unsubscribe()

    async def close(self) -> None:
        """Unsubscribe (a pull subscription left open makes drain hang for its whole timeout)."""
        sub, self._sub = self._sub, None
        if sub is not None:
            try:
                await sub.unsubscribe()
            except Exception as exc:
                log.debug("consumer.unsubscribe_failed", error=repr(exc))

    async def process(self, msg: Msg) -> str:
        """Handle one message; returns the outcome: ack, nak or dead."""
        meta = msg.metadata
        delivery = Delivery(
            subject=msg.subject,
            deliveries=meta.num_delivered,
            stream=meta.stream,
            sequence=meta.sequence.stream,
            headers=dict(msg.headers or {}),
            stored_ns=stored_ns(meta.timestamp),
        )
        attrs: dict[str, str | bool | int] = {
            "messaging.system": "nats",
            "messaging.destination": msg.subject,
            "messaging.consumer": self.spec.durable,
            "messaging.redelivered": delivery.deliveries > 1,
            "messaging.stream_sequence": delivery.sequence,
        }
        started = time.perf_counter()
        with self._tracer.start_as_current_span(
            f"consume {self.spec.durable}",
            context=extract(msg.headers),
            kind=SpanKind.CONSUMER,
            attributes=attrs,
        ) as span:
            outcome = await self._dispatch(msg, delivery, span)
        labels = {"service": self.service, "consumer": self._base}
        instruments().handled.add(1, {**labels, "outcome": outcome})
        instruments().handle_seconds.record(time.perf_counter() - started, labels)
        return outcome

    async def _dispatch(self, msg: Msg, delivery: Delivery, span: trace.Span) -> str:
        try:
            message = self._codec.decode(msg.data)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            span.set_status(Status(StatusCode.ERROR, "undecodable"))
            return await self._dead_letter(msg, delivery, f"undecodable: {exc}")
        span.set_attribute("messaging.message.id", message.id)
        span.set_attribute("btcbot.message_type", type(message).__name__)
        refused = self._insane(message, delivery)
        if refused is not None:
            span.set_status(Status(StatusCode.ERROR, refused.split(":", 1)[0]))
            return await self._dead_letter(msg, delivery, refused)
        try:
            await self._handler(message, delivery)
        except Poison as exc:
            span.set_status(Status(StatusCode.ERROR, exc.reason))
            return await self._dead_letter(msg, delivery, f"poison: {exc.reason}")
        except Exception as exc:
            reason = exc.reason if isinstance(exc, Retry) else f"{type(exc).__name__}: {exc}"
            span.record_exception(exc)
            span.set_status(Status(StatusCode.ERROR, reason))
            if delivery.deliveries >= self.spec.max_deliver:
                return await self._dead_letter(msg, delivery, f"failed {delivery.deliveries} times; last: {reason}")
            delay = (
                exc.delay
                if isinstance(exc, Retry) and exc.delay is not None
                else backoff_delay(self.spec, delivery.deliveries)
            )
            level = "warning" if isinstance(exc, Retry) else "error"
            getattr(log, level)(
                "message.retry",
                consumer=self.spec.durable,
                subject=msg.subject,
                deliveries=delivery.deliveries,
                delay=delay,
                reason=reason,
                exc_info=not isinstance(exc, Retry),
            )
            await msg.nak(delay=delay)
            return "nak"
        await msg.ack()
        return "ack"

    def _insane(self, message: Message, delivery: Delivery) -> str | None:
        """The dead-letter reason when the message fails the kit's sanity checks, else None."""
        claimed = sanity.claimed_ns(message)
        if delivery.stored_ns and sanity.is_future_dated(claimed, delivery.stored_ns, self._max_skew_ns):
            ahead = (claimed - delivery.stored_ns) / 1e9
            return (
                f"{sanity.FUTURE_DATED}: dated {ahead:.3f}s after JetStream stored it"
                f" (max skew {self._max_skew_ns / 1e9:g}s)"
            )
        problem = sanity.money_problem(message)
        if problem is not None:
            return f"{sanity.INVALID_MONEY}: {type(message).__name__}.{problem}"
        return None

    async def _dead_letter(self, msg: Msg, delivery: Delivery, reason: str) -> str:
        letter = DeadLetter(
            id=ids.dead_letter_id(self.spec.durable, delivery.stream, delivery.sequence),
            ts_ns=self._now_ns(),
            original_subject=msg.subject,
            original_stream=delivery.stream,
            original_sequence=delivery.sequence,
            headers=dict(delivery.headers),
            payload=msg.data,
            error=reason,
            service=self.service,
            deliveries=delivery.deliveries,
        )
        try:
            await self._publisher.publish(subjects.dead_letter(self.service, msg.subject), letter)
        except DependencyUnavailable as exc:
            # The dead letter is not stored: keep the message and try again rather than lose it.
            log.error("dead_letter.publish_failed", subject=msg.subject, error=exc.reason)
            await msg.nak(delay=5.0)
            return "nak"
        log.error(
            "message.dead_lettered",
            consumer=self.spec.durable,
            subject=msg.subject,
            reason=reason,
            stream_seq=delivery.sequence,
            deliveries=delivery.deliveries,
        )
        instruments().dead_letters.add(1, {"service": self.service, "consumer": self._base})
        await msg.term()
        return "dead"


def stored_ns(timestamp: datetime.datetime | None) -> int:
    """JetStream's storage time of a message in ns (0 when unknown); microsecond precision is plenty for skew."""
    if timestamp is None:
        return 0
    return int(timestamp.timestamp() * 1_000_000) * 1000


async def _sleep_or_stop(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)


Runner = Callable[[asyncio.Event], Awaitable[None]]
