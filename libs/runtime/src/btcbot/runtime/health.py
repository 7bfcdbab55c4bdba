"""Liveness and readiness over HTTP for Kubernetes probes (GET /livez, /readyz: JSON, 200 or 503) and /metrics."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable

from btcbot.runtime.logging import get_logger
from btcbot.runtime.metrics import prometheus_text

log = get_logger(__name__)

Check = Callable[[], bool]


class HealthServer:
    """A tiny HTTP/1.1 server: /livez is 200 while the process loop runs; /readyz is the AND of the checks."""

    def __init__(self, host: str, port: int, metrics: Callable[[], str] = prometheus_text) -> None:
        self._host = host
        self._metrics = metrics
        self._port = port
        self._checks: dict[str, Check] = {}
        self._server: asyncio.Server | None = None
        self.port = 0

    def add_check(self, name: str, check: Check) -> None:
        """Register a readiness check."""
        self._checks[name] = check

    def readiness(self) -> dict[str, bool]:
        """Each check's current answer (a raising check counts as not ready)."""
        result = {}
        for name, check in self._checks.items():
            try:
                result[name] = bool(check())
            except Exception:
                result[name] = False
        return result

    async def start(self) -> None:
        """Listen (port 0 picks a free one, stored in `.port`)."""
        self._server = await asyncio.start_server(self._serve, self._host, self._port)
        self.port = self._server.sockets[0].getsockname()[1]
        log.info("health.listening", port=self.port)

    async def stop(self) -> None:
        """Stop listening."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await asyncio.wait_for(reader.readline(), 5)
            while (await asyncio.wait_for(reader.readline(), 5)) not in (b"\r\n", b"\n", b""):
                pass
            parts = line.decode("latin-1").split()
            body: dict[str, object]
            path = parts[1] if len(parts) > 1 else "/"
            if path.startswith("/metrics"):
                text = self._metrics().encode()
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n"
                    + f"Content-Length: {len(text)}\r\nConnection: close\r\n\r\n".encode()
                    + text
                )
                await writer.drain()
                return
            if path.startswith("/livez"):
                status, body = 200, {"live": True}
            elif path.startswith("/readyz"):
                checks = self.readiness()
                ok = all(checks.values())
                status, body = (200 if ok else 503), {"ready": ok, "checks": checks}
            else:
                status, body = 404, {"error": "not found"}
            payload = json.dumps(body).encode()
            reason = {200: "OK", 503: "Service Unavailable", 404: "Not Found"}[status]
            writer.write(
                f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n".encode()
                + payload
            )
            await writer.drain()
        except (TimeoutError, ConnectionError):
            pass
        finally:
            writer.close()
