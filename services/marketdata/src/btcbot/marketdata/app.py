"""Wiring: a REST client, one book loop and one trade loop per symbol, readiness from poll freshness."""

from __future__ import annotations

import asyncio
import random

from btcbot.btcturk.errors import BtcTurkError
from btcbot.btcturk.rest import BtcTurkClient
from btcbot.marketdata.backoff import Backoff
from btcbot.marketdata.freshness import Freshness
from btcbot.marketdata.handlers import BookPoller, TradePoller
from btcbot.marketdata.polling import poll_forever
from btcbot.marketdata.settings import MarketdataSettings
from btcbot.marketdata.sources import MarketClient, RestBookSource, RestTradeSource
from btcbot.runtime.errors import Retry
from btcbot.runtime.service import Service

# Exchange outages and bus outages are weathered by the loop; anything else is a bug.
EXPECTED_ERRORS: tuple[type[BaseException], ...] = (BtcTurkError, Retry)


def register(svc: Service, settings: MarketdataSettings, client: MarketClient) -> Freshness:
    """Register the poll loops and the readiness check on `svc` for a given exchange client."""
    freshness = Freshness(settings.symbols, settings.stale_after_ns)
    books = BookPoller(
        svc.bus,
        RestBookSource(client, settings.depth),
        depth=settings.depth,
        stale_after_ns=settings.stale_after_ns,
        clock=svc.now_ns,
        freshness=freshness,
    )
    trades = TradePoller(svc.bus, RestTradeSource(client, settings.trades_last), clock=svc.now_ns)
    rng = random.Random()  # one per process: replicas must not back off in lock-step

    for symbol in settings.symbols:

        async def book_loop(stop: asyncio.Event, symbol: str = symbol) -> None:
            await poll_forever(
                stop,
                lambda: books.poll(symbol),
                interval=settings.poll_interval,
                backoff=Backoff(settings.backoff_base, settings.backoff_max, rng),
                expected=EXPECTED_ERRORS,
                log=svc.log.bind(symbol=symbol),
                what="book",
            )

        async def trade_loop(stop: asyncio.Event, symbol: str = symbol) -> None:
            await poll_forever(
                stop,
                lambda: trades.poll(symbol),
                interval=settings.trades_interval,
                backoff=Backoff(settings.backoff_base, settings.backoff_max, rng),
                expected=EXPECTED_ERRORS,
                log=svc.log.bind(symbol=symbol),
                what="trades",
            )

        svc.task(f"book:{symbol}", book_loop)
        svc.task(f"trades:{symbol}", trade_loop)
    svc.readiness("marketdata", lambda: freshness.fresh(svc.now_ns()))
    return freshness


async def setup(svc: Service, settings: MarketdataSettings) -> None:
    """Build the exchange client and register the poll loops."""
    client = BtcTurkClient(
        settings.btcturk_base_url,
        settings.btcturk_api_key,
        settings.btcturk_api_secret.get_secret_value(),
        timeout=settings.btcturk_timeout,
    )
    svc.on_close(client.aclose)
    register(svc, settings, client)
    svc.log.info(
        "marketdata.configured",
        symbols=list(settings.symbols),
        poll_interval=settings.poll_interval,
        depth=settings.depth,
        base_url=settings.btcturk_base_url,
    )
