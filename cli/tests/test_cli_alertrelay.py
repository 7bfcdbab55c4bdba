"""`btcbot alert-relay`: the formats (pure) and the relay posting to a local receiver on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import pytest_asyncio
from hypothesis import given, settings
from hypothesis import strategies as st

from btcbot.cli.alertrelay import (
    TELEGRAM_MAX_TEXT,
    AlertRelay,
    RelayConfig,
    generic_message,
    telegram_message,
    telegram_text,
    where,
)


def alert(name: str, status: str = "firing", **labels: str) -> dict[str, Any]:
    return {
        "status": status,
        "labels": {"alertname": name, "severity": "page", **labels},
        "annotations": {"summary": f"{name} <now>", "description": "what to do"},
        "startsAt": "2026-12-07T00:00:00Z",
        "endsAt": "0001-01-01T00:00:00Z",
        "fingerprint": "abc",
    }


def payload(*alerts: dict[str, Any], status: str = "firing") -> dict[str, Any]:
    """Alertmanager's webhook body (version 4)."""
    return {
        "version": "4",
        "status": status,
        "receiver": "relay",
        "groupKey": '{}:{alertname="X"}',
        "groupLabels": {},
        "commonLabels": {},
        "commonAnnotations": {},
        "externalURL": "http://alertmanager:9093",
        "alerts": list(alerts),
    }


def test_telegram_message_is_a_send_message_body_with_escaped_html() -> None:
    body = telegram_message(payload(alert("BtcbotKillSwitchEngaged", service="risk")), "-100123")
    assert body["chat_id"] == "-100123"
    assert body["parse_mode"] == "HTML"
    text = body["text"]
    assert text.startswith("<b>[FIRING] BtcbotKillSwitchEngaged</b> (page)")
    assert "BtcbotKillSwitchEngaged &lt;now&gt;" in text  # annotations are escaped, never markup
    assert "<code>service=risk</code>" in text


def test_resolved_alerts_say_so() -> None:
    text = telegram_text(payload(alert("BtcbotBookStale", "resolved", symbol="BTCTRY"), status="resolved"))
    assert text.startswith("<b>[RESOLVED] BtcbotBookStale</b>")


def test_generic_message_is_flat_and_keeps_every_alert() -> None:
    body = generic_message(payload(alert("A", symbol="BTCTRY"), alert("B", "resolved")))
    assert body["source"] == "btcbot"
    assert body["status"] == "firing"
    assert [(a["name"], a["status"], a["severity"]) for a in body["alerts"]] == [
        ("A", "firing", "page"),
        ("B", "resolved", "page"),
    ]
    assert body["alerts"][0]["labels"]["symbol"] == "BTCTRY"
    assert body["alerts"][0]["summary"] == "A <now>"


def test_a_telegram_url_is_logged_without_its_token() -> None:
    assert where("https://api.telegram.org/bot123456:SECRET-token/sendMessage") == "https://api.telegram.org"


def test_telegram_needs_a_chat_id() -> None:
    with pytest.raises(ValueError, match="CHAT_ID"):
        RelayConfig.from_env({"ALERT_RELAY_TELEGRAM_URL": "http://127.0.0.1:1/x"})


text_st = st.text(alphabet=st.characters(blacklist_categories=["Cs"]), max_size=300)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            text_st, text_st, st.dictionaries(st.from_regex(r"[a-z_]{1,8}", fullmatch=True), text_st, max_size=4)
        ),
        max_size=40,
    )
)
def test_telegram_text_stays_within_telegrams_limit_and_never_leaks_raw_markup(
    alerts: list[tuple[str, str, dict[str, str]]],
) -> None:
    body = payload(
        *[
            {**alert(name), "annotations": {"summary": summary}, "labels": {"alertname": name, **extra}}
            for name, summary, extra in alerts
        ]
    )
    text = telegram_text(body)
    assert 0 < len(text) <= TELEGRAM_MAX_TEXT
    # Only our own tags appear: every '<' opens <b>, </b>, <code> or </code>.
    stripped = text
    for tag in ("<b>", "</b>", "<code>", "</code>"):
        stripped = stripped.replace(tag, "")
    assert "<" not in stripped
    assert ">" not in stripped


class Receiver:
    """A local HTTP receiver: records each POST's path and JSON body; answers `status`."""

    def __init__(self, status: int = 200) -> None:
        self.status = status
        self.posts: list[tuple[str, Any]] = []
        self.port = 0
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request = (await reader.readline()).decode().split()
        length = 0
        while (line := await reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode().partition(":")
            if name.lower() == "content-length":
                length = int(value)
        self.posts.append((request[1], json.loads(await reader.readexactly(length))))
        writer.write(f"HTTP/1.1 {self.status} X\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{{}}".encode())
        await writer.drain()
        writer.close()


@pytest_asyncio.fixture
async def receiver() -> AsyncIterator[Receiver]:
    r = Receiver()
    await r.start()
    yield r
    await r.stop()


async def run_relay(config: RelayConfig) -> AlertRelay:
    relay = AlertRelay(config)
    await relay.start()
    return relay


async def test_the_relay_posts_both_formats_to_their_urls(receiver: Receiver) -> None:
    config = RelayConfig(
        port=0,
        telegram_url=receiver.url("/bot1:TOKEN/sendMessage"),
        telegram_chat_id="42",
        webhook_urls=(receiver.url("/hook-a"), receiver.url("/hook-b")),
    )
    relay = await run_relay(config)
    try:
        async with httpx.AsyncClient() as client:
            sent = payload(alert("BtcbotKillSwitchEngaged"))
            answer = await client.post(f"http://127.0.0.1:{relay.port}/alertmanager", json=sent)
        assert answer.status_code == 200, answer.text
        by_path = dict(receiver.posts)
        assert set(by_path) == {"/bot1:TOKEN/sendMessage", "/hook-a", "/hook-b"}
        assert by_path["/bot1:TOKEN/sendMessage"] == telegram_message(sent, "42")
        assert by_path["/hook-a"] == by_path["/hook-b"] == generic_message(sent)
    finally:
        await relay.stop()


async def test_a_failing_receiver_makes_alertmanager_retry() -> None:
    failing = Receiver(status=500)
    await failing.start()
    relay = await run_relay(RelayConfig(port=0, webhook_urls=(failing.url("/hook"), "http://127.0.0.1:1/closed")))
    try:
        async with httpx.AsyncClient() as client:
            answer = await client.post(f"http://127.0.0.1:{relay.port}/alertmanager", json=payload(alert("A")))
        assert answer.status_code == 502
        assert [path for path, _ in failing.posts] == ["/hook"]
    finally:
        await relay.stop()
        await failing.stop()


async def test_without_destinations_the_relay_refuses_and_other_paths_are_not_found() -> None:
    relay = await run_relay(RelayConfig(port=0))
    try:
        async with httpx.AsyncClient() as client:
            base = f"http://127.0.0.1:{relay.port}"
            assert (await client.post(f"{base}/alertmanager", json=payload(alert("A")))).status_code == 503
            assert (await client.post(f"{base}/other", json={})).status_code == 404
            assert (await client.post(f"{base}/alertmanager", content=b"[1]")).status_code == 400
            assert (await client.get(f"{base}/readyz")).status_code == 200
    finally:
        await relay.stop()
