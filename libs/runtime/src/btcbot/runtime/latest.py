"""The last trusted message of every subject of a stream, read from the stream itself (not a durable's position).

Services rebuild switch-like state (mode, kill switch, alarms, the newest portfolio) from this at start-up, and
operators see the same view (`btcbot control status`). "Last" means last in stream order. A message dated more
than the allowed clock skew after JetStream stored it is not trusted (sanity.is_future_dated): the newest earlier
message of its subject stands instead, as the live consumers dead-letter such a message. A last message that
cannot be decoded at all is returned as it is: the caller decides how to fail closed.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass

import msgspec
import nats.errors
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError

from btcbot.runtime.inspect import ephemeral_pull
from btcbot.runtime.sanity import is_future_dated


@dataclass(frozen=True)
class LastMessage:
    """One stored message: its subject, stream sequence, bytes and the time JetStream stored it (ns)."""

    subject: str
    sequence: int
    data: bytes
    stored_ns: int


class _Stamp(msgspec.Struct):
    """Only the creation time of any contract message (every other field is ignored)."""

    ts_ns: int


_stamp = msgspec.msgpack.Decoder(_Stamp)


def _ns(when: datetime.datetime | None) -> int:
    if when is None:
        return 0
    delta = when - datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1_000


def trusted(message: LastMessage, max_skew_ns: int) -> bool:
    """False only for a decodable message dated more than `max_skew_ns` after it was stored."""
    try:
        ts_ns = _stamp.decode(message.data).ts_ns
    except (msgspec.DecodeError, msgspec.ValidationError):
        return True  # unreadable is the caller's verdict, not a date problem
    return not is_future_dated(ts_ns, message.stored_ns, max_skew_ns)


def pick_last_trusted(history: list[LastMessage], max_skew_ns: int) -> LastMessage | None:
    """The newest message of one subject's history (any order) that is not future-dated."""
    for message in sorted(history, key=lambda m: m.sequence, reverse=True):
        if trusted(message, max_skew_ns):
            return message
    return None


async def subjects_of(js: JetStreamContext, stream: str, subject_filter: str) -> list[str]:
    """Subjects of `stream` matching `subject_filter` that hold at least one message."""
    try:
        info = await js.stream_info(stream, subjects_filter=subject_filter)
    except NotFoundError:
        return []
    return sorted((info.state.subjects or {}).keys())


async def history(js: JetStreamContext, stream: str, subject: str, batch: int = 100) -> list[LastMessage]:
    """Every stored message of one subject, oldest first (CONTROL keeps at most 100 per subject)."""
    config = ConsumerConfig(
        deliver_policy=DeliverPolicy.ALL,
        ack_policy=AckPolicy.NONE,
        mem_storage=True,
        inactive_threshold=30,
    )
    found: list[LastMessage] = []
    sub = await ephemeral_pull(js, stream, subject, config)
    try:
        while True:
            try:
                msgs = await sub.fetch(batch=batch, timeout=1)
            except (nats.errors.TimeoutError, TimeoutError):
                return found
            for msg in msgs:
                meta = msg.metadata
                found.append(LastMessage(msg.subject, meta.sequence.stream, msg.data, _ns(meta.timestamp)))
                if meta.num_pending == 0:
                    return found
    finally:
        await sub.unsubscribe()


async def last_trusted(js: JetStreamContext, stream: str, subject: str, max_skew_ns: int) -> LastMessage | None:
    """The last message of one subject, or the newest earlier one if the last is future-dated (None: none)."""
    try:
        raw = await js.get_last_msg(stream, subject)
    except NotFoundError:
        return None
    last = LastMessage(raw.subject or subject, int(raw.seq or 0), raw.data or b"", _ns(raw.time))
    if trusted(last, max_skew_ns):
        return last
    return pick_last_trusted(await history(js, stream, subject), max_skew_ns)


async def last_per_subject(
    js: JetStreamContext, stream: str, subject_filters: tuple[str, ...], max_skew_ns: int
) -> dict[str, LastMessage]:
    """The last trusted message of every subject matching any of `subject_filters`, by subject."""
    result: dict[str, LastMessage] = {}
    for subject_filter in subject_filters:
        for subject in await subjects_of(js, stream, subject_filter):
            if subject in result:
                continue
            found = await last_trusted(js, stream, subject, max_skew_ns)
            if found is not None:
                result[subject] = found
    return result
