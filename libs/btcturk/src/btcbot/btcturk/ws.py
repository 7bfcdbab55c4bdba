"""Async BTCTurk WebSocket client: subscriptions, optional login, reconnect with backoff and jitter.

:meth:`BtcTurkWebSocket.messages` yields typed messages forever, reconnecting on its own. After
a drop it yields :class:`Disconnected` (books are then stale), reconnects with exponential
backoff and full jitter, logs in again, re-sends every subscription and yields
:class:`Connected`. A sliding-window guard keeps connection attempts under BTCTurk's limit
(15 per minute, else 60 s block), however the connections fail.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Protocol

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from btcbot.btcturk.auth import DEFAULT_WS_NONCE, Secret, as_secret, ws_login_message
from btcbot.btcturk.errors import AuthError, ProtocolError
from btcbot.btcturk.limits import Budget, Window
from btcbot.btcturk.retry import RetryPolicy
from btcbot.btcturk.wsmodels import Connected, Disconnected, LoginResult, WsMessage
from btcbot.btcturk.wsparse import decode_frame, encode_frame, subscribe_frame

log = logging.getLogger(__name__)

DEFAULT_WS_URL = "wss://ws-feed-pro.btcturk.com"


class Connection(Protocol):
    """The part of a websockets connection the client uses (a seam for tests)."""

    async def send(self, message: str) -> None:
        """Send one text frame."""

    async def recv(self) -> str | bytes:
        """Receive one frame."""

    async def close(self) -> None:
        """Close the connection."""


Connector = Callable[[str], Awaitable[Connection]]


async def _default_connector(url: str) -> Connection:
    # Server pings every ~15 s; our own pings detect a dead path sooner than TCP would.
    return await connect(url, ping_interval=20, ping_timeout=20, compression=None, open_timeout=10)


class _ConnectFailedError(Exception):
    """Connecting or logging in failed in a way worth retrying."""


class BtcTurkWebSocket:
    """One WebSocket feed; use ``async with`` and iterate :meth:`messages`."""

    def __init__(
        self,
        url: str = DEFAULT_WS_URL,
        *,
        public_key: str | None = None,
        private_key: str | Secret | None = None,
        nonce: int = DEFAULT_WS_NONCE,
        backoff: RetryPolicy | None = None,
        max_connects_per_minute: int = 15,
        stable_after: float = 30.0,
        login_timeout: float = 10.0,
        connector: Connector = _default_connector,
        clock: Callable[[], float] = time.monotonic,
        wall_clock_ms: Callable[[], int] = lambda: time.time_ns() // 1_000_000,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if (public_key is None) != (private_key is None):
            raise ValueError("give both public_key and private_key, or neither")
        self._url = url
        self._public_key = public_key
        self._private_key = None if private_key is None else as_secret(private_key)
        self._nonce = nonce
        self._backoff = backoff if backoff is not None else RetryPolicy(base_delay=0.5, max_delay=30.0)
        self._guard = Budget((Window(max_connects_per_minute, 60.0),), margin=0.5)
        self._stable_after = stable_after
        self._login_timeout = login_timeout
        self._connector = connector
        self._clock = clock
        self._wall_ms = wall_clock_ms
        self._sleep = sleep
        self._subscriptions: dict[tuple[str, str], None] = {}
        self._conn: Connection | None = None
        self._closed = False

    def __repr__(self) -> str:
        return f"BtcTurkWebSocket(url={self._url!r}, public_key={self._public_key!r})"

    async def __aenter__(self) -> BtcTurkWebSocket:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    @property
    def subscriptions(self) -> tuple[tuple[str, str], ...]:
        """Current (channel, event) subscriptions, re-sent after every reconnect."""
        return tuple(self._subscriptions)

    async def subscribe(self, channel: str, event: str) -> None:
        """Join ``channel``/``event`` now (if connected) and after every reconnect."""
        self._subscriptions[(channel, event)] = None
        await self._send_if_connected(subscribe_frame(channel, event, join=True))

    async def unsubscribe(self, channel: str, event: str) -> None:
        """Leave ``channel``/``event``."""
        self._subscriptions.pop((channel, event), None)
        await self._send_if_connected(subscribe_frame(channel, event, join=False))

    async def resubscribe(self, channel: str, event: str) -> None:
        """Leave and join again, e.g. to get a fresh 431 snapshot after a book gap."""
        self._subscriptions[(channel, event)] = None
        await self._send_if_connected(subscribe_frame(channel, event, join=False))
        await self._send_if_connected(subscribe_frame(channel, event, join=True))

    async def aclose(self) -> None:
        """Stop: close the connection and end :meth:`messages`."""
        self._closed = True
        conn, self._conn = self._conn, None
        if conn is not None:
            await conn.close()

    async def messages(self) -> AsyncIterator[WsMessage]:
        """Typed messages until :meth:`aclose`; raises :class:`AuthError` if login is refused."""
        connection = 0
        failures = 0
        while not self._closed:
            await self._wait_for_connect_slot()
            connection += 1
            started = self._clock()
            try:
                conn, early = await self._open()
            except _ConnectFailedError as exc:
                failures += 1
                log.warning("btcturk ws connect #%d failed: %s", connection, exc)
                await self._sleep(self._backoff.backoff(failures))
                continue
            if self._closed:  # aclose() ran while we were connecting
                await conn.close()
                return
            self._conn = conn
            reason = "closed by server"
            try:
                yield Connected(connection=connection)
                for message in early:
                    yield message
                while True:
                    raw = await conn.recv()
                    try:
                        message = decode_frame(raw)
                    except ProtocolError as exc:
                        # One bad frame should not cost every subscription a resync.
                        log.warning("btcturk ws: undecodable frame skipped: %s", exc)
                        continue
                    yield message
            except ConnectionClosed as exc:
                reason = f"connection closed: {exc}"
            except OSError as exc:
                reason = f"{type(exc).__name__}: {exc}"
            finally:
                self._conn = None
                await conn.close()
            if self._closed:
                return
            failures = 1 if self._clock() - started >= self._stable_after else failures + 1
            yield Disconnected(connection=connection, reason=reason)
            await self._sleep(self._backoff.backoff(failures))

    async def _wait_for_connect_slot(self) -> None:
        while (wait := self._guard.delay(self._clock())) > 0:
            log.warning("btcturk ws: connection attempt limit reached, waiting %.1fs", wait)
            await self._sleep(wait)
        self._guard.record(self._clock())

    async def _open(self) -> tuple[Connection, list[WsMessage]]:
        try:
            conn = await self._connector(self._url)
        except (OSError, TimeoutError, InvalidHandshake) as exc:
            # InvalidURI is left to propagate: a wrong URL does not heal by retrying.
            raise _ConnectFailedError(f"{type(exc).__name__}: {exc}") from exc
        try:
            early: list[WsMessage] = []
            if self._public_key is not None and self._private_key is not None:
                early = await self._login(conn, self._public_key, self._private_key)
            for channel, event in list(self._subscriptions):
                await conn.send(subscribe_frame(channel, event, join=True))
        except (ConnectionClosed, OSError, TimeoutError, ProtocolError) as exc:
            await conn.close()
            raise _ConnectFailedError(f"{type(exc).__name__}: {exc}") from exc
        except BaseException:
            await conn.close()
            raise
        return conn, early

    async def _login(self, conn: Connection, public_key: str, private_key: Secret) -> list[WsMessage]:
        """Send 114 and wait for its reply; frames arriving first are kept for the caller."""
        frame = ws_login_message(public_key, private_key, timestamp_ms=self._wall_ms(), nonce=self._nonce)
        await conn.send(encode_frame(frame))
        early: list[WsMessage] = []
        async with asyncio.timeout(self._login_timeout):
            while True:
                message = decode_frame(await conn.recv())
                if isinstance(message, LoginResult):
                    if not message.ok:
                        raise AuthError(f"websocket login refused: {message.message}", code=114)
                    return early
                early.append(message)

    async def _send_if_connected(self, text: str) -> None:
        conn = self._conn
        if conn is None:
            return
        try:
            await conn.send(text)
        except ConnectionClosed:
            # The reader notices the drop and re-sends every subscription on reconnect.
            log.info("btcturk ws: send on a closed connection; will be re-sent after reconnect")
