"""NATS connection, stream and consumer provisioning, and the traced, deduplicated publisher.

Only this package imports nats. Traps handled here (see nats-notes.md): bounded initial connect, endless
reconnect afterwards, `add_consumer` as create-or-update, copied headers on publish.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
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

from btcbot.contracts.access import INBOX_ROOT
from btcbot.contracts.codec import encode
from btcbot.contracts.messages import Message
from btcbot.contracts.streams import ConsumerSpec, StreamSpec
from btcbot.runtime.errors import DependencyUnavailable, SettingsError
from btcbot.runtime.logging import get_logger
from btcbot.runtime.telemetry import inject

log = get_logger(__name__)

# What `connect` returns, named for callers outside the kit (which never import nats themselves).
Connection = NatsClient

_DELIVER = {
    "all": DeliverPolicy.ALL,
    "new": DeliverPolicy.NEW,
    "last_per_subject": DeliverPolicy.LAST_PER_SUBJECT,
}


@dataclass(frozen=True)
class NatsAuth:
    """How a process proves its NATS identity; the password never appears in repr or logs."""

    user: str | None = None
    password: str | None = field(default=None, repr=False)
    creds_file: str | None = None
    nkey_seed_file: str | None = None
    inbox_prefix: str | None = None

    def options(self) -> dict[str, Any]:
        """Keyword arguments for nats.connect."""
        opts: dict[str, Any] = {}
        if self.user is not None:
            opts["user"] = self.user
            opts["password"] = self.password or ""
        if self.creds_file is not None:
            opts["user_credentials"] = self.creds_file
        if self.nkey_seed_file is not None:
            opts["nkeys_seed"] = self.nkey_seed_file
        prefix = self.inbox_prefix or (f"{INBOX_ROOT}.{self.user}" if self.user else None)
        if prefix is not None:
            opts["inbox_prefix"] = prefix
        return opts


STREAM_REPLICAS_VARIABLE = "BTCBOT_STREAM_REPLICAS"
# JetStream allows at most 5 replicas of a stream.
_MAX_REPLICAS = 5


def stream_replicas(env: Mapping[str, str]) -> int | None:
    """BTCBOT_STREAM_REPLICAS: how many servers keep each stream (1 on a single server, 3 in a cluster).

    None when unset: provisioning then leaves existing streams' replicas alone and creates new ones with 1.
    """
    raw = (env.get(STREAM_REPLICAS_VARIABLE) or "").strip()
    if not raw:
        return None
    if not raw.isdigit() or not 1 <= int(raw) <= _MAX_REPLICAS:
        raise SettingsError(f"{STREAM_REPLICAS_VARIABLE}={raw!r}: expected a whole number from 1 to {_MAX_REPLICAS}")
    return int(raw)


def server_urls(url: str) -> list[str]:
    """The servers of a NATS_URL: one URL, or a comma-separated list (the nodes of a cluster)."""
    urls = [part.strip() for part in url.split(",") if part.strip()]
    if not urls:
        raise SettingsError(f"NATS_URL={url!r}: no server URL in it")
    return urls


def nats_auth_from_env(env: Mapping[str, str]) -> NatsAuth | None:
    """NATS_USER + NATS_PASSWORD, NATS_CREDS_FILE, NATS_NKEY_SEED_FILE, NATS_INBOX_PREFIX (None if none is set)."""
    values = {
        key: (env.get(key) or "").strip() or None
        for key in ("NATS_USER", "NATS_PASSWORD", "NATS_CREDS_FILE", "NATS_NKEY_SEED_FILE", "NATS_INBOX_PREFIX")
    }
    if not any(values[k] for k in ("NATS_USER", "NATS_CREDS_FILE", "NATS_NKEY_SEED_FILE")):
        return None
    return NatsAuth(
        user=values["NATS_USER"],
        password=env.get("NATS_PASSWORD"),
        creds_file=values["NATS_CREDS_FILE"],
        nkey_seed_file=values["NATS_NKEY_SEED_FILE"],
        inbox_prefix=values["NATS_INBOX_PREFIX"],
    )


async def connect(
    url: str, name: str, timeout: float = 10.0, *, reconnect_forever: bool = True, auth: NatsAuth | None = None
) -> NatsClient:
    """Connect within `timeout` seconds, then reconnect forever (nats-py's own connect can hang 2 minutes).

    With `auth`, as that identity (docs/security.md); without, anonymously (a dev server without authorization).
    """

    # Failed attempts of the first connect are not news: its outcome is (DependencyUnavailable, one message).
    connected = False

    async def on_error(exc: Exception) -> None:
        if connected:
            log.warning("nats.error", error=repr(exc))
        else:
            log.debug("nats.connect_attempt_failed", error=repr(exc))

    nc = NatsClient()

    async def on_disconnected() -> None:
        # nats-py calls this on our own close() too (status already CLOSED then): only a lost connection warns.
        if nc.is_closed:
            log.debug("nats.disconnected", closed=True)
        else:
            log.warning("nats.disconnected")

    async def on_reconnected() -> None:
        log.info("nats.reconnected")

    async def on_closed() -> None:
        log.info("nats.closed")

    # nats-py annotates the timeouts as int but takes seconds as float (as nats.connect passes them on).
    options: dict[str, Any] = {
        "name": name,
        "connect_timeout": min(2.0, timeout),
        "reconnect_time_wait": 1.0,
        "max_reconnect_attempts": -1 if reconnect_forever else 2,
        "error_cb": on_error,
        "disconnected_cb": on_disconnected,
        "reconnected_cb": on_reconnected,
        "closed_cb": on_closed,
        "drain_timeout": 5,
        **(auth.options() if auth is not None else {}),
    }
    try:
        await asyncio.wait_for(nc.connect(server_urls(url), **options), timeout)
    except (TimeoutError, OSError, nats.errors.NoServersError) as exc:
        why = f"no answer within {timeout:.0f}s" if isinstance(exc, TimeoutError) else str(exc) or repr(exc)
        raise DependencyUnavailable(f"NATS at {url} did not answer: {why}") from exc
    connected = True
    return nc


def stream_config(spec: StreamSpec, replicas: int = 1) -> StreamConfig:
    """The JetStream config of a stream definition, kept by `replicas` servers."""
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
        num_replicas=replicas,
    )


def stream_matches(found: StreamConfig, spec: StreamSpec, replicas: int | None = 1) -> bool:
    """Whether a stream's stored config already says what its definition says (the fields we set; replicas
    only when given)."""
    return (
        (replicas is None or (found.num_replicas or 1) == replicas)
        and sorted(found.subjects or []) == sorted(spec.subjects)
        and (found.description or "") == spec.description
        and abs((found.max_age or 0.0) - spec.max_age) < 1e-3
        and (found.max_msgs_per_subject if found.max_msgs_per_subject is not None else -1) == spec.max_msgs_per_subject
        and abs((found.duplicate_window or 0.0) - spec.duplicate_window) < 1e-3
        and found.retention == RetentionPolicy.LIMITS
        and found.discard == DiscardPolicy.OLD
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
    js: JetStreamContext,
    streams: Iterable[StreamSpec],
    consumers: Iterable[ConsumerSpec] = (),
    *,
    replicas: int | None = None,
) -> None:
    """Create or update every stream and durable consumer; safe to run at every start of every replica.

    A stream already as defined is left alone, so an identity without stream rights (every service under
    authorization: the admin identity provisions streams) only reads its info; only a change needs the admin.
    An existing stream that differs (its replicas, subjects, limits) is updated in place.
    `replicas`: servers that keep each stream; None reads BTCBOT_STREAM_REPLICAS, and if that is unset too an
    existing stream keeps its replicas (a tool run without the variable never shrinks a cluster's R3 streams)
    and a new one gets 1.
    """
    count = stream_replicas(os.environ) if replicas is None else replicas
    for spec in streams:
        config = stream_config(spec, count or 1)
        try:
            info = await js.stream_info(spec.name)
        except NotFoundError:
            try:
                await js.add_stream(config)
                log.info("stream.created", stream=spec.name)
                continue
            except BadRequestError:
                pass  # another replica created it between our two calls
        else:
            if stream_matches(info.config, spec, count):
                continue
            if count is None:
                config = stream_config(spec, info.config.num_replicas or 1)
        await js.update_stream(config)
        log.info("stream.updated", stream=spec.name, replicas=config.num_replicas)
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
            except (
                TimeoutError,
                nats.errors.TimeoutError,
                nats.errors.NoRespondersError,
                # In a cluster, while a stream's group elects a new leader (a node lost): transient too.
                nats.js.errors.NoStreamResponseError,
                nats.js.errors.ServiceUnavailableError,
            ) as exc:
                raise DependencyUnavailable(f"publish to {subject} not acknowledged: {exc!r}") from exc
            if ack.duplicate:
                self.duplicates += 1


async def _quiet(_: Exception) -> None:
    """nats-py logs every failed connect attempt unless given an error callback; a probe reports instead."""


async def server_facts(url: str, timeout: float = 2.0, auth: NatsAuth | None = None) -> tuple[str, str | None]:
    """(version, None) if JetStream answers, else (version, reason); DependencyUnavailable if unreachable."""
    nc = NatsClient()
    try:
        # max_reconnect_attempts=0 would mean "forever", and connect can outlive its own timeout (nats-notes 2.7).
        await asyncio.wait_for(
            nc.connect(
                server_urls(url),
                name="btcbot-probe",
                connect_timeout=max(1, round(timeout)),
                max_reconnect_attempts=1,
                reconnect_time_wait=0,
                allow_reconnect=False,
                error_cb=_quiet,
                **(auth.options() if auth is not None else {}),
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
