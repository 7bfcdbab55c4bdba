"""The request path every REST call takes: breaker, rate limiter, signing, classification, retries."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import httpx
import msgspec

from btcbot.btcturk.auth import Secret, clock_offset_ms, rest_headers
from btcbot.btcturk.breaker import HTTP_429, CircuitBreaker, StateListener
from btcbot.btcturk.classify import classify_response
from btcbot.btcturk.errors import (
    AuthError,
    BtcTurkError,
    OutcomeUnknown,
    RateLimited,
    TransportError,
    Unavailable,
)
from btcbot.btcturk.limits import EndpointGroup
from btcbot.btcturk.parse import parse_server_time
from btcbot.btcturk.ratelimit import RateLimiter
from btcbot.btcturk.retry import RetryPolicy

log = logging.getLogger(__name__)

# These failures leave no doubt that the request never reached the exchange.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
SERVER_TIME_PATH = "/api/v2/server/time"
# A list of pairs sends a key more than once (type=buy&type=sell), as some endpoints expect.
Params = Mapping[str, str] | list[tuple[str, str]]


def wall_ms() -> int:
    """Unix time in ms."""
    return time.time_ns() // 1_000_000


class Requester:
    """Sends one logical request, retrying per policy; owns the HTTP pool, limiter and breakers."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None,
        api_secret: Secret | None,
        *,
        timeout: float,
        transport: httpx.AsyncBaseTransport | None,
        rate_limiter: RateLimiter | None,
        read_retry: RetryPolicy,
        write_retry: RetryPolicy,
        breaker_threshold: int,
        breaker_open_timeout: float,
        on_breaker_state_change: StateListener | None,
        auto_sync_clock: bool,
        clock: Callable[[], float],
        wall_clock_ms: Callable[[], int],
        sleep: Callable[[float], Awaitable[None]],
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._api_key = api_key
        self._api_secret = api_secret
        self._http = httpx.AsyncClient(timeout=httpx.Timeout(timeout), transport=transport)
        self.rate_limiter = rate_limiter if rate_limiter is not None else RateLimiter(clock=clock, sleep=sleep)
        self._read_retry = read_retry
        self._write_retry = write_retry
        self.breakers = {
            group: CircuitBreaker(
                group.value,
                failure_threshold=breaker_threshold,
                open_timeout=breaker_open_timeout,
                on_state_change=on_breaker_state_change,
            )
            for group in EndpointGroup
        }
        self._auto_sync_clock = auto_sync_clock
        self.clock_offset_ms: int | None = None
        self._sync_lock = asyncio.Lock()
        self._clock = clock
        self._wall_ms = wall_clock_ms
        self._sleep = sleep

    async def aclose(self) -> None:
        """Close the HTTP connection pool."""
        await self._http.aclose()

    async def sync_clock(self) -> int:
        """Learn the server clock offset used for X-Stamp; returns it in ms."""
        sent = self._wall_ms()
        data = await self.call(EndpointGroup.SERVER_TIME, "GET", SERVER_TIME_PATH, enveloped=False)
        server = parse_server_time(data)
        self.clock_offset_ms = clock_offset_ms(sent, self._wall_ms(), server.server_time_ms)
        return self.clock_offset_ms

    async def _sync_once(self) -> None:
        # Concurrent first private calls share one server-time request.
        async with self._sync_lock:
            if self.clock_offset_ms is None:
                await self.sync_clock()

    async def call(
        self,
        group: EndpointGroup,
        method: str,
        path: str,
        *,
        params: Params | None = None,
        body: Mapping[str, str] | None = None,
        private: bool = False,
        mutation: bool = False,
        enveloped: bool = True,
        base: str | None = None,
        client_order_id: str | None = None,
    ) -> Any:
        """The payload of a successful response, or the classified error once retries are spent."""
        if private and (self._api_key is None or self._api_secret is None):
            raise AuthError("API key and secret are required for private endpoints", endpoint=group.value)
        policy = self._write_retry if mutation else self._read_retry
        resynced = False
        attempt = 0
        while True:
            attempt += 1
            try:
                if private and self.clock_offset_ms is None and self._auto_sync_clock:
                    await self._sync_once()
                return await self._attempt(
                    group, method, (base or self.base_url) + path, params, body, private, mutation,
                    enveloped, client_order_id,
                )  # fmt: skip
            except AuthError as err:
                # A 401 is refused before processing, so one resend after a clock resync is safe.
                if not (private and self._auto_sync_clock and "nonce" in err.message.lower()) or resynced:
                    raise
                resynced = True
                attempt -= 1
                log.warning("btcturk %s: invalid nonce, resyncing clock", group.value)
                await self.sync_clock()
            except BtcTurkError as err:
                delay = policy.next_delay(err, attempt)
                if delay is None:
                    raise
                log.warning(
                    "btcturk %s attempt %d failed (%s: %s); retrying in %.3fs",
                    group.value, attempt, type(err).__name__, err, delay,
                )  # fmt: skip
                await self._sleep(delay)

    async def _attempt(
        self,
        group: EndpointGroup,
        method: str,
        url: str,
        params: Params | None,
        body: Mapping[str, str] | None,
        private: bool,
        mutation: bool,
        enveloped: bool,
        client_order_id: str | None,
    ) -> Any:
        breaker = self.breakers[group]
        breaker.before(self._clock())
        try:
            await self.rate_limiter.acquire(group)
            response = await self._send(group, method, url, params, body, private, mutation, client_order_id)
            payload = classify_response(
                endpoint=group.value,
                status=response.status_code,
                body=response.content,
                retry_after=response.headers.get("Retry-After"),
                mutation=mutation,
                enveloped=enveloped,
                client_order_id=client_order_id,
            )
        except BtcTurkError as err:
            # A 429 counts against the breaker too: one is a pause (Retry-After), a storm of them
            # means the exchange is shedding us, and an open breaker stops us adding to it.
            if isinstance(err, TransportError | Unavailable | OutcomeUnknown | RateLimited):
                breaker.failure(self._clock())
            else:
                breaker.success()
            if isinstance(err, RateLimited):
                self.rate_limiter.block(group, err.retry_after)
                HTTP_429.add(1, {"group": group.value})
            raise
        except BaseException:
            breaker.abandon()
            raise
        breaker.success()
        return payload

    async def _send(
        self,
        group: EndpointGroup,
        method: str,
        url: str,
        params: Params | None,
        body: Mapping[str, str] | None,
        private: bool,
        mutation: bool,
        client_order_id: str | None,
    ) -> httpx.Response:
        headers = {"Accept": "application/json"}
        if private and self._api_key is not None and self._api_secret is not None:
            stamp = self._wall_ms() + (self.clock_offset_ms or 0)
            headers.update(rest_headers(self._api_key, self._api_secret, stamp))
        content = None if body is None else msgspec.json.encode(body)
        if content is not None:
            headers["Content-Type"] = "application/json"
        # A tuple of pairs is covariant, so httpx's wider parameter type accepts it.
        query = tuple(params) if isinstance(params, list) else params
        try:
            return await self._http.request(method, url, params=query, content=content, headers=headers)
        except _NOT_SENT as exc:
            raise TransportError(f"not sent: {type(exc).__name__}: {exc}", endpoint=group.value) from exc
        except httpx.HTTPError as exc:
            text = f"{type(exc).__name__}: {exc}"
            if mutation:
                raise OutcomeUnknown(
                    f"response lost after send: {text}", client_order_id=client_order_id, endpoint=group.value
                ) from exc
            raise TransportError(text, endpoint=group.value) from exc
