"""Settings, log redaction, health endpoints and the in-memory bus: no servers."""

from __future__ import annotations

import asyncio
import json
from decimal import Decimal

import pytest

from btcbot.contracts.messages import KillSwitch
from btcbot.runtime.bus import Delivery
from btcbot.runtime.errors import Poison, Retry, SettingsError
from btcbot.runtime.health import HealthServer
from btcbot.runtime.logging import redact_secrets
from btcbot.runtime.memory import InMemoryBus
from btcbot.runtime.redact import REDACTED
from btcbot.runtime.settings import CommonSettings, ExchangeSettings, load_settings, service_config


class DemoSettings(CommonSettings, ExchangeSettings):
    model_config = service_config("DEMO_")
    max_notional: Decimal = Decimal(5000)


def test_settings_read_common_unprefixed_and_own_prefixed(monkeypatch) -> None:
    monkeypatch.setenv("NATS_URL", "nats://10.0.0.1:4222")
    monkeypatch.setenv("BTCBOT_SYMBOLS", "btctry, ETHTRY")
    monkeypatch.setenv("BTCTURK_API_KEY", "k")
    monkeypatch.setenv("BTCTURK_API_SECRET", "c2VjcmV0")
    monkeypatch.setenv("DEMO_MAX_NOTIONAL", "1234.5")
    s = load_settings(DemoSettings)
    assert s.nats_url == "nats://10.0.0.1:4222"
    assert s.symbols == ("BTCTRY", "ETHTRY")
    assert s.max_notional == Decimal("1234.5")
    assert "c2VjcmV0" not in repr(s)


def test_a_missing_setting_names_the_variable(monkeypatch) -> None:
    monkeypatch.delenv("BTCTURK_API_KEY", raising=False)
    monkeypatch.setenv("BTCTURK_API_SECRET", "x")
    with pytest.raises(SettingsError, match="BTCTURK_API_KEY"):
        load_settings(DemoSettings)


def test_a_bad_setting_names_the_variable(monkeypatch) -> None:
    monkeypatch.setenv("BTCTURK_API_KEY", "k")
    monkeypatch.setenv("BTCTURK_API_SECRET", "x")
    monkeypatch.setenv("DEMO_MAX_NOTIONAL", "lots")
    with pytest.raises(SettingsError, match="DEMO_MAX_NOTIONAL"):
        load_settings(DemoSettings)
    monkeypatch.setenv("DEMO_MAX_NOTIONAL", "1")
    monkeypatch.setenv("BTCBOT_SYMBOLS", "BTC-TRY")
    with pytest.raises(SettingsError, match="BTCBOT_SYMBOLS"):
        load_settings(DemoSettings)


def test_secrets_are_redacted_in_logs() -> None:
    event = {"api_secret": "s3cr3t", "X-Signature": "sig", "url": "redis://user:pw@host:6379/0", "price": "1"}
    out = redact_secrets(None, "info", dict(event))
    assert out["api_secret"] == REDACTED
    assert out["X-Signature"] == REDACTED
    assert out["url"] == f"redis://user:{REDACTED}@host:6379/0"
    assert out["price"] == "1"


async def _get(port: int, path: str) -> tuple[int, dict[str, object]]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    await writer.drain()
    raw = await reader.read()
    writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)


async def test_health_endpoints_follow_the_checks() -> None:
    ready = {"value": False}
    server = HealthServer("127.0.0.1", 0)
    server.add_check("redis", lambda: ready["value"])
    await server.start()
    try:
        assert (await _get(server.port, "/livez"))[0] == 200
        status, body = await _get(server.port, "/readyz")
        assert status == 503
        assert body == {"ready": False, "checks": {"redis": False}}
        ready["value"] = True
        assert (await _get(server.port, "/readyz"))[0] == 200
    finally:
        await server.stop()


async def test_in_memory_bus_mirrors_ack_semantics() -> None:
    bus = InMemoryBus()
    msg = KillSwitch(id="k1", ts_ns=1, engaged=True, reason="r", operator="o")

    async def ok(m: KillSwitch, d: Delivery) -> None:
        await bus.publish("control.kill", m)
        await bus.publish("control.kill", m)

    async def transient(m: KillSwitch, d: Delivery) -> None:
        raise Retry("later")

    async def poison(m: KillSwitch, d: Delivery) -> None:
        raise Poison("never")

    assert await bus.deliver(ok, msg) == "ack"
    assert bus.of_type(KillSwitch) == [msg]
    assert bus.duplicates == 1
    assert await bus.deliver(transient, msg) == "nak"
    assert await bus.deliver(transient, msg, deliveries=5) == "dead"
    assert await bus.deliver(poison, msg) == "dead"


def test_a_stored_traceparent_continues_its_trace() -> None:
    from opentelemetry.sdk.trace import TracerProvider

    from btcbot.runtime.telemetry import continue_trace, current_traceparent

    provider = TracerProvider()
    with provider.get_tracer("t").start_as_current_span("submit") as span:
        stored = current_traceparent()
        trace_id = span.get_span_context().trace_id
    assert stored.split("-")[1] == f"{trace_id:032x}"
    with continue_trace(stored, "fill found") as later:
        assert later.get_span_context().trace_id == trace_id
    with continue_trace("", "no parent") as orphan:
        assert orphan is not None


def test_backoff_grows_with_jitter_is_capped_and_resets() -> None:
    import random

    from btcbot.runtime.backoff import Backoff

    backoff = Backoff(1.0, 8.0, random.Random(3))
    delays = [backoff.failure() for _ in range(6)]
    ceilings = [1.0, 2.0, 4.0, 8.0, 8.0, 8.0]
    assert all(0.5 <= d <= c for d, c in zip(delays, ceilings, strict=True)), delays
    assert backoff.failures == 6
    backoff.success()
    assert backoff.failures == 0
    assert backoff.failure() <= 1.0
    with pytest.raises(ValueError, match="base"):
        Backoff(0, 1, random.Random())
