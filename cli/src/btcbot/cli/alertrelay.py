"""`btcbot alert-relay`: Alertmanager's webhook in, Telegram-compatible and generic JSON notifications out.

Alertmanager posts its webhook payload (version 4) to POST /alertmanager. The relay formats it twice: as a
Telegram `sendMessage` body (chat_id, HTML text) for ALERT_RELAY_TELEGRAM_URL, and as a flat generic JSON document
for every URL of ALERT_RELAY_WEBHOOK_URLS. It answers 200 only when every post succeeded, otherwise 502 (503 with
no destination configured), so that Alertmanager retries and counts the failure. The formatting functions are
pure; the server and the posting are the thin shell.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import json
import signal
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx

from btcbot.runtime.logging import get_logger

log = get_logger(__name__)

TELEGRAM_MAX_TEXT = 4096  # Telegram refuses longer messages
MAX_BODY = 1 << 20
PATH = "/alertmanager"


@dataclass(frozen=True)
class RelayConfig:
    """Where notifications go. URLs may hold tokens (Telegram's bot token): never logged unredacted."""

    host: str = "127.0.0.1"
    port: int = 9095
    telegram_url: str = ""
    telegram_chat_id: str = ""
    webhook_urls: tuple[str, ...] = ()
    timeout: float = 10.0

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> RelayConfig:
        """Read ALERT_RELAY_* (comma-separated ALERT_RELAY_WEBHOOK_URLS)."""
        urls = tuple(u.strip() for u in env.get("ALERT_RELAY_WEBHOOK_URLS", "").split(",") if u.strip())
        config = cls(
            host=env.get("ALERT_RELAY_HOST", "127.0.0.1"),
            port=int(env.get("ALERT_RELAY_PORT", "9095")),
            telegram_url=env.get("ALERT_RELAY_TELEGRAM_URL", "").strip(),
            telegram_chat_id=env.get("ALERT_RELAY_TELEGRAM_CHAT_ID", "").strip(),
            webhook_urls=urls,
            timeout=float(env.get("ALERT_RELAY_TIMEOUT", "10")),
        )
        if config.telegram_url and not config.telegram_chat_id:
            raise ValueError("ALERT_RELAY_TELEGRAM_URL needs ALERT_RELAY_TELEGRAM_CHAT_ID")
        return config

    def targets(self, payload: Mapping[str, Any]) -> list[tuple[str, dict[str, Any]]]:
        """Each (url, JSON body) this payload is posted as."""
        out: list[tuple[str, dict[str, Any]]] = []
        if self.telegram_url:
            out.append((self.telegram_url, telegram_message(payload, self.telegram_chat_id)))
        generic = generic_message(payload)
        out.extend((url, generic) for url in self.webhook_urls)
        return out


def _alerts(payload: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    alerts = payload.get("alerts")
    return [a for a in alerts if isinstance(a, Mapping)] if isinstance(alerts, list) else []


def _str_map(value: object) -> dict[str, str]:
    return {str(k): str(v) for k, v in value.items()} if isinstance(value, Mapping) else {}


def generic_message(payload: Mapping[str, Any]) -> dict[str, Any]:
    """A flat, stable JSON document: one entry per alert with its name, severity, status and texts."""
    alerts = []
    for alert in _alerts(payload):
        labels = _str_map(alert.get("labels"))
        annotations = _str_map(alert.get("annotations"))
        alerts.append(
            {
                "name": labels.get("alertname", ""),
                "status": str(alert.get("status", "")),
                "severity": labels.get("severity", ""),
                "summary": annotations.get("summary", ""),
                "description": annotations.get("description", ""),
                "labels": labels,
                "starts_at": str(alert.get("startsAt", "")),
                "ends_at": str(alert.get("endsAt", "")),
                "fingerprint": str(alert.get("fingerprint", "")),
            }
        )
    return {
        "source": "btcbot",
        "status": str(payload.get("status", "")),
        "receiver": str(payload.get("receiver", "")),
        "group_key": str(payload.get("groupKey", "")),
        "external_url": str(payload.get("externalURL", "")),
        "alerts": alerts,
    }


def telegram_text(payload: Mapping[str, Any]) -> str:
    """The alert group as Telegram HTML: a headline per alert, its summary, and the labels that locate it."""
    lines: list[str] = []
    for alert in _alerts(payload):
        labels = _str_map(alert.get("labels"))
        annotations = _str_map(alert.get("annotations"))
        status = str(alert.get("status", payload.get("status", "")))
        mark = "RESOLVED" if status == "resolved" else "FIRING"
        severity = labels.get("severity", "")
        head = f"<b>[{mark}] {html.escape(labels.get('alertname', 'alert'))}</b>"
        lines.append(head + (f" ({html.escape(severity)})" if severity else ""))
        if annotations.get("summary"):
            lines.append(html.escape(annotations["summary"]))
        where = [f"{k}={v}" for k, v in sorted(labels.items()) if k not in ("alertname", "severity")]
        if where:
            lines.append(f"<code>{html.escape(' '.join(where))}</code>")
        lines.append("")
    text = "\n".join(lines).strip() or html.escape(f"btcbot alerts: {payload.get('status', '')}")
    if len(text) > TELEGRAM_MAX_TEXT:
        # Cut at a line end: a cut inside a tag makes Telegram refuse the whole message.
        cut = text.rfind("\n", 0, TELEGRAM_MAX_TEXT - 20)
        text = text[: cut if cut > 0 else 0] + "\n... (truncated)"
    return text


def telegram_message(payload: Mapping[str, Any], chat_id: str) -> dict[str, Any]:
    """The body of Telegram's sendMessage for this alert group."""
    return {
        "chat_id": chat_id,
        "text": telegram_text(payload),
        "parse_mode": "HTML",
        "disable_web_page_preview": True,
    }


def where(url: str) -> str:
    """Scheme, host and port only: a Telegram URL's path holds the bot token."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}" + (f":{parts.port}" if parts.port else "")


async def post_all(client: httpx.AsyncClient, targets: Sequence[tuple[str, dict[str, Any]]]) -> bool:
    """Post every body; True when all were answered 2xx."""
    ok = True
    for url, body in targets:
        try:
            response = await client.post(url, json=body)
            if response.status_code >= 300:
                ok = False
                log.warning("alert_relay.rejected", url=where(url), status=response.status_code)
        except httpx.HTTPError as exc:
            ok = False
            log.warning("alert_relay.unreachable", url=where(url), error=type(exc).__name__)
    return ok


class AlertRelay:
    """A tiny HTTP/1.1 server taking Alertmanager's POSTs (one request per connection)."""

    def __init__(self, config: RelayConfig) -> None:
        self.config = config
        self.port = 0
        self._server: asyncio.Server | None = None
        self._client = httpx.AsyncClient(timeout=config.timeout)

    async def start(self) -> None:
        """Listen (port 0 picks a free one, stored in `.port`)."""
        self._server = await asyncio.start_server(self._serve, self.config.host, self.config.port)
        self.port = self._server.sockets[0].getsockname()[1]
        log.info("alert_relay.listening", host=self.config.host, port=self.port)

    async def stop(self) -> None:
        """Stop listening and close the outgoing client."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        await self._client.aclose()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        status, text = 500, "error"
        try:
            status, text = await self._handle(reader)
        except (TimeoutError, ValueError, ConnectionError) as exc:
            status, text = 400, f"bad request: {type(exc).__name__}"
        finally:
            body = json.dumps({"status": text}).encode()
            head = f"HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n"
            with contextlib.suppress(ConnectionError):
                writer.write(head.encode() + b"Connection: close\r\n\r\n" + body)
                await writer.drain()
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader) -> tuple[int, str]:
        request = (await asyncio.wait_for(reader.readline(), 5)).decode("latin-1").split()
        length = 0
        while (line := await asyncio.wait_for(reader.readline(), 5)) not in (b"\r\n", b"\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            if name.strip().lower() == "content-length":
                length = int(value.strip())
        if len(request) < 2:
            return 400, "bad request"
        method, path = request[0], request[1].split("?", 1)[0]
        if method == "GET" and path in ("/livez", "/readyz"):
            return 200, "ok"
        if method != "POST" or path != PATH:
            return 404, "not found"
        if not 0 < length <= MAX_BODY:
            return 413 if length > MAX_BODY else 400, "bad length"
        payload = json.loads(await asyncio.wait_for(reader.readexactly(length), 10))
        if not isinstance(payload, dict):
            return 400, "not an object"
        alerts = _alerts(payload)
        names = sorted({str(_str_map(a.get("labels")).get("alertname", "")) for a in alerts})
        log.info("alert_relay.received", status=payload.get("status"), alerts=len(alerts), names=names)
        targets = self.config.targets(payload)
        if not targets:
            log.warning("alert_relay.dropped", reason="no_destinations", names=names)
            return 503, "no destinations configured"
        if await post_all(self._client, targets):
            return 200, "relayed"
        return 502, "a receiver failed"


async def run_alert_relay(env: Mapping[str, str]) -> int:
    """Serve until SIGTERM or SIGINT."""
    try:
        config = RelayConfig.from_env(env)
    except ValueError as exc:
        print(f"btcbot alert-relay: {exc}")
        return 2
    if not config.telegram_url and not config.webhook_urls:
        # Running anyway keeps Alertmanager's failed-notification count honest (it sees 503s) and the stack up.
        log.warning("alert_relay.no_destinations", hint="set ALERT_RELAY_TELEGRAM_URL or ALERT_RELAY_WEBHOOK_URLS")
    relay = AlertRelay(config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await relay.start()
    print(json.dumps({"listening": f"{config.host}:{relay.port}", "path": PATH}), flush=True)
    try:
        await stop.wait()
    finally:
        await relay.stop()
    return 0
