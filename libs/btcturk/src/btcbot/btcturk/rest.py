"""Async BTCTurk REST client: rate limit, circuit breaker, signing, retries, typed results."""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import Awaitable, Callable
from decimal import Decimal
from types import TracebackType
from typing import Self

import httpx

from btcbot.btcturk import parse
from btcbot.btcturk.auth import Secret, as_secret
from btcbot.btcturk.breaker import BreakerState, CircuitBreaker, StateListener
from btcbot.btcturk.errors import NotFound, OutcomeUnknown, ProtocolError
from btcbot.btcturk.limits import EndpointGroup
from btcbot.btcturk.models import (
    Balance,
    Candle,
    ExchangeInfo,
    Kline,
    Order,
    OrderAck,
    OrderBook,
    OrderMethod,
    PublicTrade,
    ServerTime,
    Side,
    Ticker,
    Transaction,
    TransactionType,
    UserTrade,
)
from btcbot.btcturk.ratelimit import RateLimiter
from btcbot.btcturk.requester import SERVER_TIME_PATH, Requester, wall_ms
from btcbot.btcturk.retry import RetryPolicy

DEFAULT_BASE_URL = "https://api.btcturk.com"
DEFAULT_GRAPH_URL = "https://graph-api.btcturk.com"
MAX_CLIENT_ORDER_ID = 50
# Klines resolutions: minutes as an int, or the day/week spellings graph-api and ccxt use.
KLINE_RESOLUTIONS = frozenset({"1", "5", "15", "30", "60", "240", "1D", "1W"})


def _amount(value: Decimal, what: str) -> str:
    if not isinstance(value, Decimal) or not value.is_finite() or value <= 0:
        raise ValueError(f"{what} must be a positive finite Decimal, got {value!r}")
    return format(value, "f")


def _pair(pair: str) -> str:
    return parse.normalise_pair(pair)


def _window(params: dict[str, str], from_s: int | None, to_s: int | None) -> dict[str, str]:
    if from_s is not None:
        params["from"] = str(int(from_s))
    if to_s is not None:
        params["to"] = str(int(to_s))
    return params


class BtcTurkClient:
    """BTCTurk REST API; every call passes the rate limiter and the breaker of its endpoint group."""

    def __init__(
        self,
        base_url: str = DEFAULT_BASE_URL,
        api_key: str | None = None,
        api_secret: str | Secret | None = None,
        *,
        graph_base_url: str = DEFAULT_GRAPH_URL,
        timeout: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
        rate_limiter: RateLimiter | None = None,
        read_retry: RetryPolicy | None = None,
        write_retry: RetryPolicy | None = None,
        rng: random.Random | None = None,
        breaker_threshold: int = 5,
        breaker_open_timeout: float = 30.0,
        on_breaker_state_change: StateListener | None = None,
        auto_sync_clock: bool = True,
        clock: Callable[[], float] = time.monotonic,
        wall_clock_ms: Callable[[], int] = wall_ms,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        """Configure the client; nothing is sent until the first call.

        ``transport`` replaces httpx's network (tests use ``httpx.MockTransport``). ``rng`` seeds
        the jitter of the default retry policies (a fresh ``random.Random()`` otherwise). ``clock``
        (monotonic seconds) drives limits and breakers, ``wall_clock_ms`` the X-Stamp, ``sleep`` the
        waits. Pass one ``rate_limiter`` to several clients of one account to share its budget.
        """
        if write_retry is None:
            # Writes are resent only after errors proving nothing reached the exchange.
            write_retry = RetryPolicy(max_attempts=2, max_rate_limit_wait=2.0, rng=rng)
        self._api_key = api_key
        self._graph_url = graph_base_url.rstrip("/")
        self._req = Requester(
            base_url,
            api_key,
            None if api_secret is None else as_secret(api_secret),
            timeout=timeout,
            transport=transport,
            rate_limiter=rate_limiter,
            read_retry=read_retry if read_retry is not None else RetryPolicy(rng=rng),
            write_retry=write_retry,
            breaker_threshold=breaker_threshold,
            breaker_open_timeout=breaker_open_timeout,
            on_breaker_state_change=on_breaker_state_change,
            auto_sync_clock=auto_sync_clock,
            clock=clock,
            wall_clock_ms=wall_clock_ms,
            sleep=sleep,
        )

    def __repr__(self) -> str:
        return f"BtcTurkClient(base_url={self._req.base_url!r}, api_key={self._api_key!r})"

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the HTTP connection pool."""
        await self._req.aclose()

    def breaker(self, group: EndpointGroup) -> CircuitBreaker:
        """The circuit breaker of ``group`` (for health reporting)."""
        return self._req.breakers[group]

    def no_breaker_open(self) -> bool:
        """True unless some endpoint group's breaker is open (the exchange counts as reachable)."""
        return all(b.state is not BreakerState.OPEN for b in self._req.breakers.values())

    @property
    def rate_limiter(self) -> RateLimiter:
        """The limiter every call of this client passes."""
        return self._req.rate_limiter

    @property
    def clock_offset_ms(self) -> int | None:
        """Server minus local clock in ms, once learned."""
        return self._req.clock_offset_ms

    # ----- public endpoints -------------------------------------------------------------

    async def server_time(self) -> ServerTime:
        """``GET /api/v2/server/time``."""
        data = await self._req.call(EndpointGroup.SERVER_TIME, "GET", SERVER_TIME_PATH, enveloped=False)
        return parse.parse_server_time(data)

    async def sync_clock(self) -> int:
        """Learn the server clock offset used for X-Stamp; returns it in ms."""
        return await self._req.sync_clock()

    async def exchange_info(self) -> ExchangeInfo:
        """``GET /api/v2/server/exchangeinfo``."""
        data = await self._req.call(EndpointGroup.EXCHANGE_INFO, "GET", "/api/v2/server/exchangeinfo")
        return parse.parse_exchange_info(data)

    async def ticker(self, pair: str | None = None) -> list[Ticker]:
        """``GET /api/v2/ticker``: one pair, or all pairs when ``pair`` is None."""
        params = None if pair is None else {"pairSymbol": _pair(pair)}
        data = await self._req.call(EndpointGroup.TICKER, "GET", "/api/v2/ticker", params=params)
        return parse.parse_tickers(data)

    async def ticker_currency(self, currency: str) -> list[Ticker]:
        """``GET /api/v2/ticker/currency?symbol=``: tickers of the pairs that trade ``currency``."""
        params = {"symbol": currency.upper()}
        data = await self._req.call(EndpointGroup.TICKER_CURRENCY, "GET", "/api/v2/ticker/currency", params=params)
        return parse.parse_tickers(data)

    async def orderbook(self, pair: str, limit: int = 100) -> OrderBook:
        """``GET /api/v2/orderbook`` (limit 1..1000)."""
        params = {"pairSymbol": _pair(pair), "limit": str(limit)}
        data = await self._req.call(EndpointGroup.ORDERBOOK, "GET", "/api/v2/orderbook", params=params)
        return parse.parse_orderbook(data)

    async def trades(self, pair: str, last: int = 50) -> list[PublicTrade]:
        """``GET /api/v2/trades``: the latest ``last`` public trades."""
        params = {"pairSymbol": _pair(pair), "last": str(last)}
        data = await self._req.call(EndpointGroup.TRADES, "GET", "/api/v2/trades", params=params)
        return parse.parse_public_trades(data)

    async def ohlc(self, pair: str | None = None, from_s: int | None = None, to_s: int | None = None) -> list[Candle]:
        """Daily candles from graph-api ``/v1/ohlcs`` (times in seconds); every pair when ``pair`` is None."""
        params = _window({} if pair is None else {"pair": _pair(pair)}, from_s, to_s)
        data = await self._req.call(
            EndpointGroup.OHLC, "GET", "/v1/ohlcs", params=params or None, enveloped=False, base=self._graph_url
        )
        return parse.parse_ohlc(data)

    async def klines(self, pair: str, resolution: int | str, from_s: int, to_s: int) -> list[Kline]:
        """Candles from graph-api ``/v1/klines/history``: ``resolution`` in minutes, or "1D" / "1W".

        An empty window (``"s":"no_data"``) gives an empty list.
        """
        text = str(resolution).upper()
        if text not in KLINE_RESOLUTIONS:
            raise ValueError(f"resolution must be one of {sorted(KLINE_RESOLUTIONS)}, got {resolution!r}")
        params = _window({"symbol": _pair(pair), "resolution": text}, from_s, to_s)
        data = await self._req.call(
            EndpointGroup.KLINES, "GET", "/v1/klines/history", params=params, enveloped=False, base=self._graph_url
        )
        return parse.parse_klines(data)

    async def legacy_ohlc(self, pair: str, last: int | None = None) -> list[Candle]:
        """Legacy ``GET /api/v2/ohlc?pairSymbol=&last=`` (enveloped; prefer :meth:`ohlc`)."""
        params = {"pairSymbol": _pair(pair)}
        if last is not None:
            params["last"] = str(last)
        data = await self._req.call(EndpointGroup.LEGACY_OHLC, "GET", "/api/v2/ohlc", params=params)
        return parse.parse_ohlc(data)

    # ----- private endpoints ------------------------------------------------------------

    async def balances(self) -> list[Balance]:
        """``GET /api/v1/users/balances``."""
        data = await self._req.call(EndpointGroup.BALANCES, "GET", "/api/v1/users/balances", private=True)
        return parse.parse_balances(data)

    async def submit_order(
        self,
        pair: str,
        side: Side | str,
        method: OrderMethod | str,
        quantity: Decimal,
        price: Decimal | None = None,
        stop_price: Decimal | None = None,
        client_order_id: str | None = None,
    ) -> OrderAck:
        """``POST /api/v1/order``; market buys take ``quantity`` in QUOTE currency.

        Raises :class:`OutcomeUnknown` (carrying the client order id, generated when not given)
        if the request may have reached the exchange without an answer; it is never resent.
        """
        order_side = parse.parse_side(side) if isinstance(side, str) else side
        order_method = parse.parse_method(method) if isinstance(method, str) else method
        if client_order_id is None:
            client_order_id = uuid.uuid4().hex
        if not client_order_id or len(client_order_id) > MAX_CLIENT_ORDER_ID:
            raise ValueError(f"client_order_id must be 1..{MAX_CLIENT_ORDER_ID} characters")
        body: dict[str, str] = {
            "pairSymbol": _pair(pair),
            "orderType": order_side.value,
            "orderMethod": order_method.value,
            "quantity": _amount(quantity, "quantity"),
            "newOrderClientId": client_order_id,
        }
        if order_method in (OrderMethod.LIMIT, OrderMethod.STOP_LIMIT):
            if price is None:
                raise ValueError(f"{order_method.value} order needs a price")
            body["price"] = _amount(price, "price")
        if order_method in (OrderMethod.STOP_LIMIT, OrderMethod.STOP_MARKET):
            if stop_price is None:
                raise ValueError(f"{order_method.value} order needs a stop_price")
            body["stopPrice"] = _amount(stop_price, "stop_price")
        data = await self._req.call(
            EndpointGroup.SUBMIT,
            "POST",
            "/api/v1/order",
            body=body,
            private=True,
            mutation=True,
            client_order_id=client_order_id,
        )
        try:
            return parse.parse_order_ack(data)
        except ProtocolError as exc:
            # The exchange said yes but we cannot read the ack: the order exists, its id is unknown.
            raise OutcomeUnknown(
                f"order accepted but ack unreadable: {exc.message}",
                client_order_id=client_order_id,
                endpoint=EndpointGroup.SUBMIT.value,
            ) from exc

    async def cancel_order(self, order_id: int) -> None:
        """``DELETE /api/v1/order?id=``: accepted for cancellation (final word is WS 452)."""
        await self._req.call(
            EndpointGroup.CANCEL,
            "DELETE",
            "/api/v1/order",
            params={"id": str(order_id)},
            private=True,
            mutation=True,
        )

    async def open_orders(self, pair: str | None = None) -> list[Order]:
        """``GET /api/v1/openOrders``: bids and asks together."""
        params = None if pair is None else {"pairSymbol": _pair(pair)}
        data = await self._req.call(EndpointGroup.OPEN_ORDERS, "GET", "/api/v1/openOrders", params=params, private=True)
        return parse.parse_open_orders(data)

    async def all_orders(
        self,
        pair: str,
        *,
        order_id: int | None = None,
        start_ms: int | None = None,
        end_ms: int | None = None,
        page: int | None = None,
        limit: int | None = None,
    ) -> list[Order]:
        """``GET /api/v1/allOrders`` in any status; ``order_id`` returns ids >= it."""
        params = {"pairSymbol": _pair(pair)}
        for key, value in (
            ("orderId", order_id),
            ("startTime", start_ms),
            ("endTime", end_ms),
            ("page", page),
            ("limit", limit),
        ):
            if value is not None:
                params[key] = str(value)
        data = await self._req.call(EndpointGroup.ALL_ORDERS, "GET", "/api/v1/allOrders", params=params, private=True)
        return parse.parse_orders(data)

    async def get_order(self, order_id: int) -> Order:
        """``GET /api/v1/order/{id}``; raises :class:`NotFound` for an unknown id."""
        path = f"/api/v1/order/{int(order_id)}"
        data = await self._req.call(EndpointGroup.GET_ORDER, "GET", path, private=True)
        return parse.parse_order(data)

    async def user_trades(
        self,
        pair: str | None = None,
        *,
        start_ms: int | None = None,
        end_ms: int | None = None,
        order_id: int | None = None,
    ) -> list[UserTrade]:
        """``GET /api/v1/users/transactions/trade``; ``order_id`` is sent alone, as the API requires."""
        params: dict[str, str] = {}
        if order_id is not None:
            params["orderId"] = str(order_id)
        else:
            if pair is not None:
                params["pairSymbol"] = _pair(pair)
            if start_ms is not None:
                params["startDate"] = str(start_ms)
            if end_ms is not None:
                params["endDate"] = str(end_ms)
        data = await self._req.call(
            EndpointGroup.USER_TRADES,
            "GET",
            "/api/v1/users/transactions/trade",
            params=params or None,
            private=True,
        )
        return parse.parse_user_trades(data)

    async def crypto_transactions(
        self,
        *,
        types: tuple[TransactionType, ...] = (),
        currencies: tuple[str, ...] = (),
        start_ms: int | None = None,
        end_ms: int | None = None,
    ) -> list[Transaction]:
        """``GET /api/v1/users/transactions/crypto``: crypto deposits and withdrawals (last 30 days by default)."""
        return await self._transactions(
            EndpointGroup.CRYPTO_TRANSACTIONS, "crypto", types, currencies, start_ms, end_ms
        )

    async def fiat_transactions(
        self,
        *,
        types: tuple[TransactionType, ...] = (),
        currencies: tuple[str, ...] = (),
        start_ms: int | None = None,
        end_ms: int | None = None,
    ) -> list[Transaction]:
        """``GET /api/v1/users/transactions/fiat``: fiat deposits and withdrawals (last 30 days by default)."""
        return await self._transactions(EndpointGroup.FIAT_TRANSACTIONS, "fiat", types, currencies, start_ms, end_ms)

    async def _transactions(
        self,
        group: EndpointGroup,
        kind: str,
        types: tuple[TransactionType, ...],
        currencies: tuple[str, ...],
        start_ms: int | None,
        end_ms: int | None,
    ) -> list[Transaction]:
        # type and symbol repeat, as the docs write them: type=deposit&type=withdrawal&symbol=btc.
        params: list[tuple[str, str]] = [("type", TransactionType(t).value) for t in types]
        params += [("symbol", c.lower()) for c in currencies]
        if start_ms is not None:
            params.append(("startDate", str(start_ms)))
        if end_ms is not None:
            params.append(("endDate", str(end_ms)))
        data = await self._req.call(
            group, "GET", f"/api/v1/users/transactions/{kind}", params=params or None, private=True
        )
        return parse.parse_transactions(data)

    async def find_order_by_client_id(self, pair: str, client_order_id: str) -> Order | None:
        """Resolve an unknown outcome: search open orders, then all orders, then our trades."""
        for order in await self.open_orders(pair):
            if order.client_order_id == client_order_id:
                return order
        for order in await self.all_orders(pair, limit=1000):
            if order.client_order_id == client_order_id:
                return order
        # allOrders is paged; a filled order still shows up in our recent trades.
        for trade in await self.user_trades(pair):
            if trade.client_order_id == client_order_id:
                try:
                    return await self.get_order(trade.order_id)
                except NotFound:
                    return None
        return None
