"""Service lifecycle: settings, logging, telemetry, NATS, provisioning, health, consumers and tasks, graceful stop.

Stop sequence on SIGTERM/SIGINT (arq/saq style): stop fetching, let in-flight work finish within the grace
period, cancel what is left, run close hooks, unsubscribe and drain NATS. `stop()` is idempotent.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import redis.asyncio as aioredis
from nats.aio.client import Client as NatsClient

from btcbot.contracts.codec import Codec
from btcbot.contracts.messages import Message
from btcbot.contracts.streams import ALL_STREAMS, ConsumerSpec
from btcbot.runtime import redisconn
from btcbot.runtime.backoff import Backoff
from btcbot.runtime.bus import Handler, Publisher
from btcbot.runtime.consumer import Consumer
from btcbot.runtime.errors import DependencyUnavailable, SettingsError
from btcbot.runtime.health import HealthServer
from btcbot.runtime.jetstream import NatsAuth, NatsPublisher, connect, provision
from btcbot.runtime.logging import configure_logging, get_logger
from btcbot.runtime.metrics import instruments
from btcbot.runtime.settings import CommonSettings, load_settings
from btcbot.runtime.telemetry import configure_telemetry, shutdown_telemetry

M = TypeVar("M", bound=Message)
# Readiness checks that are also reported as btcbot_dependency_up{dependency=...}.
DEPENDENCIES = frozenset({"nats", "redis", "postgres", "exchange"})
S = TypeVar("S", bound=CommonSettings)

TaskFn = Callable[[asyncio.Event], Awaitable[None]]


class Service:
    """What a service's `setup` gets: the bus, Redis, the clock, and places to register work."""

    def __init__(self, name: str, settings: CommonSettings, nc: NatsClient) -> None:
        self.name = name
        self.settings = settings
        self.nc = nc
        self.js = nc.jetstream(timeout=10)
        self.bus: Publisher = NatsPublisher(self.js)
        self.log = get_logger(f"btcbot.{name}")
        self.stopping = asyncio.Event()
        self.health = HealthServer(settings.health_host, settings.health_port)
        self._consumers: list[Consumer[Any]] = []
        self._tasks: list[tuple[str, TaskFn]] = []
        self._gates: list[tuple[str, Callable[[], Awaitable[None]]]] = []
        self.gates_done = asyncio.Event()
        self._running: list[asyncio.Task[None]] = []
        self._close_hooks: list[Callable[[], Awaitable[None]]] = []
        self._watched: list[tuple[str, ConsumerSpec]] = []
        self._dependencies: dict[str, Callable[[], bool]] = {}
        self._redis: aioredis.Redis | None = None
        self._stopped = False
        self.health.add_check("nats", lambda: self.nc.is_connected)

    def now_ns(self) -> int:
        """Wall-clock time in ns: the one clock of a service, passed into pure code."""
        return time.time_ns()

    def consume(self, spec: ConsumerSpec, codec: Codec[M], handler: Handler[M]) -> None:
        """Run a durable pull consumer with this handler once the service starts."""
        own = spec.for_instance(self.settings.instance)
        skew_ns = int(self.settings.max_clock_skew * 1e9)
        self._consumers.append(
            Consumer(
                self.name,
                self.js,
                self.bus,
                own,
                codec,
                handler,
                now_ns=self.now_ns,
                max_skew_ns=skew_ns,
                base_name=spec.durable,
            )
        )
        self.watch_consumer(spec.durable, own)

    def watch_consumer(self, base: str, own: ConsumerSpec) -> None:
        """Poll this durable's pending and ack-pending into btcbot_consumer_pending{consumer=base} (kit task)."""
        self._watched.append((base, own))

    def task(self, name: str, fn: TaskFn) -> None:
        """Run a background loop; it gets the stop event and should return soon after it is set."""
        self._tasks.append((name, fn))

    def before_consumers(self, name: str, fn: Callable[[], Awaitable[None]]) -> None:
        """Run `fn` once after provisioning and before any consumer binds (e.g. rebuild state from a stream).

        Gates run in order; a failing gate is retried with backoff until it succeeds or the service stops (it
        never crashes the process: a dependency may simply not answer yet). /readyz stays false until all are done.
        """
        self._gates.append((name, fn))

    def readiness(self, name: str, check: Callable[[], bool]) -> None:
        """Add a readiness check (/readyz answers 503 while any is false)."""
        self.health.add_check(name, check)

    def dependency(self, name: str, check: Callable[[], bool]) -> None:
        """Report btcbot_dependency_up{dependency=name} from `check` (not a readiness check)."""
        self._dependencies[name] = check

    def on_close(self, fn: Callable[[], Awaitable[None]]) -> None:
        """Run fn at shutdown, after work has stopped (close clients and pools here)."""
        self._close_hooks.append(fn)

    async def redis(self) -> aioredis.Redis:
        """The shared Redis client (created on first use; readiness then includes a Redis ping)."""
        if self._redis is None:
            client = redisconn.connect(
                self.settings.redis_url,
                sentinels=self.settings.redis_sentinels,
                master=self.settings.redis_sentinel_master,
            )
            self._redis = client
            self.log.info(
                "redis.client",
                sentinels=[f"{host}:{port}" for host, port in self.settings.redis_sentinels],
                master=self.settings.redis_sentinel_master or None,
                replicas_to_ack=self.redis_ack.replicas,
            )
            state = {"ok": True}

            async def ping_loop(stop: asyncio.Event) -> None:
                while not stop.is_set():
                    try:
                        state["ok"] = bool(await client.ping())
                    except Exception:
                        state["ok"] = False
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), 1.0)

            self.readiness("redis", lambda: state["ok"])
            self._start_task("redis-ping", ping_loop)
            self.on_close(client.aclose)
        return self._redis

    @property
    def redis_ack(self) -> redisconn.ReplicaAck:
        """What claim and fencing-token writes wait for (REDIS_MIN_REPLICAS_ACK, REDIS_REPLICA_ACK_TIMEOUT)."""
        return redisconn.ReplicaAck(
            self.settings.replicas_to_ack(), int(self.settings.redis_replica_ack_timeout * 1000)
        )

    def _start_task(self, name: str, fn: TaskFn) -> None:
        async def guarded() -> None:
            try:
                await fn(self.stopping)
            except asyncio.CancelledError:
                raise
            except Exception:
                # A bug in a core loop: crash the process and let the orchestrator restart it.
                self.log.exception("task.crashed", task=name)
                self.crashed = True
                self.stopping.set()

        self._running.append(asyncio.create_task(guarded(), name=name))

    crashed = False

    async def start(self) -> None:
        """Start health, consumers and tasks."""
        await self.health.start()
        self._start_task("metrics-poll", self._poll_metrics)
        for name, fn in self._tasks:
            self._start_task(name, fn)
        if self._gates:
            self.readiness("startup", self.gates_done.is_set)
            self._start_task("startup-gates", self._run_gates)
        else:
            self._start_consumers()
        self.log.info(
            "service.started",
            consumers=[c.spec.durable for c in self._consumers],
            tasks=[n for n, _ in self._tasks],
            health_port=self.health.port,
        )

    def _start_consumers(self) -> None:
        self.gates_done.set()
        for consumer in self._consumers:
            self._start_task(f"consumer:{consumer.spec.durable}", consumer.run)

    async def _poll_metrics(self, stop: asyncio.Event) -> None:
        """Every BTCBOT_METRICS_POLL_INTERVAL: consumer lag from JetStream and dependency availability."""
        interval = self.settings.metrics_poll_interval
        while not stop.is_set():
            await self.poll_metrics_once()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), interval)

    async def poll_metrics_once(self) -> None:
        """One round of the metrics poll (a failed consumer_info leaves that durable's last figures)."""
        inst = instruments()
        for base, own in list(self._watched):
            try:
                info = await asyncio.wait_for(self.js.consumer_info(own.stream, own.durable), 2.0)
            except Exception as exc:
                self.log.debug("metrics.consumer_info_failed", consumer=own.durable, error=repr(exc))
                continue
            inst.consumer_pending.set(int(info.num_pending or 0), {"consumer": base})
            inst.consumer_ack_pending.set(int(info.num_ack_pending or 0), {"consumer": base})
        states = {k: v for k, v in self.health.readiness().items() if k in DEPENDENCIES}
        for name, check in self._dependencies.items():
            try:
                states[name] = bool(check())
            except Exception:
                states[name] = False
        for dependency, up in states.items():
            inst.dependency_up.set(1 if up else 0, {"dependency": dependency})

    async def _run_gates(self, stop: asyncio.Event) -> None:
        backoff = Backoff(0.5, 5.0, random.Random())
        for name, fn in self._gates:
            while not stop.is_set():
                try:
                    await fn()
                except Exception as exc:
                    delay = backoff.failure()
                    self.log.warning(
                        "startup_gate.failed",
                        gate=name,
                        error=f"{type(exc).__name__}: {exc}",
                        failures=backoff.failures,
                        retry_in=round(delay, 3),
                    )
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), delay)
                    continue
                backoff.success()
                self.log.info("startup_gate.done", gate=name)
                break
        if not stop.is_set():
            self._start_consumers()

    async def stop(self) -> None:
        """Graceful stop; idempotent."""
        if self._stopped:
            return
        self._stopped = True
        self.stopping.set()
        grace = self.settings.shutdown_grace
        done, pending = await asyncio.wait(self._running, timeout=grace) if self._running else (set(), set())
        for task in pending:
            self.log.warning("task.cancelled_at_deadline", task=task.get_name(), grace=grace)
            task.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
        for hook in reversed(self._close_hooks):
            try:
                await hook()
            except Exception:
                self.log.exception("close_hook.failed")
        await self.health.stop()
        with contextlib.suppress(Exception):
            await self.nc.drain()
        self.log.info("service.stopped", finished=len(done), cancelled=len(pending))


Setup = Callable[[Service, S], Awaitable[None]]


def service_auth(settings: CommonSettings) -> NatsAuth | None:
    """The service's NATS identity from its settings (None: connect without authentication)."""
    if not (settings.nats_user or settings.nats_creds_file or settings.nats_nkey_seed_file):
        return None
    password = settings.nats_password.get_secret_value() if settings.nats_password is not None else None
    return NatsAuth(
        user=settings.nats_user,
        password=password,
        creds_file=str(settings.nats_creds_file) if settings.nats_creds_file else None,
        nkey_seed_file=str(settings.nats_nkey_seed_file) if settings.nats_nkey_seed_file else None,
        inbox_prefix=settings.nats_inbox_prefix,
    )


async def _main(name: str, settings: S, setup: Setup[S], consumers: tuple[ConsumerSpec, ...] | None) -> int:
    log = get_logger(f"btcbot.{name}")
    try:
        nc = await connect(
            settings.nats_url, f"{name}-{settings.instance}", settings.connect_timeout, auth=service_auth(settings)
        )
    except DependencyUnavailable as exc:
        log.error("service.start_failed", reason=exc.reason)
        return 3
    service = Service(name, settings, nc)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, service.stopping.set)
    try:
        await setup(service, settings)
        specs = [c.spec for c in service._consumers]
        await provision(
            service.js, ALL_STREAMS, specs if consumers is None else consumers, replicas=settings.stream_replicas
        )
        await service.start()
        await service.stopping.wait()
    except SettingsError as exc:
        log.error("service.bad_settings", reason=str(exc))
        await service.stop()
        return 2
    finally:
        await service.stop()
        shutdown_telemetry()
    return 1 if service.crashed else 0


def run_service(
    name: str,
    settings_cls: type[S],
    setup: Setup[S],
    consumers: tuple[ConsumerSpec, ...] | None = None,
    *,
    preflight: Callable[[S], object] | None = None,
) -> int:
    """Run a service process to completion and return its exit code (2 = bad settings, 3 = NATS unreachable).

    `preflight` checks the settings as a whole (execution's live arming) before anything connects: a
    SettingsError from it stops the process with one line, like a bad variable.
    """
    try:
        settings = load_settings(settings_cls)
        if preflight is not None:
            preflight(settings)
    except SettingsError as exc:
        print(f"{name}: {exc}", file=sys.stderr)  # noqa: T201  (logging is not configured yet)
        return 2
    configure_logging(name, settings.instance, settings.log_level, settings.log_format)
    configure_telemetry(name, settings.instance, settings.trace_file, settings.otlp_endpoint)
    try:
        import uvloop

        runner: Callable[[Awaitable[int]], int] = uvloop.run  # type: ignore[assignment]
    except ImportError:  # pragma: no cover  (uvloop is not built for every platform)
        runner = asyncio.run  # type: ignore[assignment]
    return runner(_main(name, settings, setup, consumers))
