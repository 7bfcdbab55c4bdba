"""Wiring: the WebSocket feed (or none), REST book and trade loops per symbol, readiness from freshness."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

import msgspec

from btcbot.btcturk.errors import BtcTurkError
from btcbot.btcturk.rest import BtcTurkClient
from btcbot.btcturk.ws import BtcTurkWebSocket
from btcbot.contracts import subjects
from btcbot.contracts.codec import Codec
from btcbot.contracts.messages import BookSnapshot
from btcbot.contracts.streams import MARKET
from btcbot.marketdata.feed import Socket, WsFeed
from btcbot.marketdata.freshness import Freshness
from btcbot.marketdata.handlers import BookPoller, TradePoller, WsBookPublisher
from btcbot.marketdata.localbooks import LocalBooks
from btcbot.marketdata.metrics import report_book_ages
from btcbot.marketdata.polling import poll_forever, sleep_or_stop
from btcbot.marketdata.sequence import Sequencer
from btcbot.marketdata.settings import MarketdataSettings
from btcbot.marketdata.sources import MarketClient, RestBookSource, RestTradeSource
from btcbot.marketdata.tasks import Follower, Selector, UniverseExchange
from btcbot.runtime.backoff import Backoff
from btcbot.runtime.errors import DependencyUnavailable, Retry, SettingsError
from btcbot.runtime.inspect import last_message
from btcbot.runtime.leases import EveryPartition, PartitionLeases, partition_leases
from btcbot.runtime.service import Service

# Exchange outages and bus outages are weathered by the loop; anything else is a bug.
EXPECTED_ERRORS: tuple[type[BaseException], ...] = (BtcTurkError, Retry)
# The universe's loops also read streams and Redis directly: their time-outs and outages are weathered too.
UNIVERSE_ERRORS: tuple[type[BaseException], ...] = (*EXPECTED_ERRORS, TimeoutError, DependencyUnavailable)


@dataclass(frozen=True)
class Registered:
    """What `register` wired up, for tests and diagnostics."""

    freshness: Freshness
    feed: WsFeed | None


def _everything(symbol: str) -> bool:
    return True


def register(
    svc: Service,
    settings: MarketdataSettings,
    client: MarketClient,
    socket: Socket | None = None,
    *,
    owns: Callable[[str], bool] = _everything,
    sequencer: Sequencer | None = None,
    wanted: Iterable[str] | None = None,
) -> Registered:
    """Register the feed, the poll loops and the readiness check on `svc`; `socket` is needed for source ws.

    Books and trades are published only for the symbols this replica `owns` (its partition leases); the
    WebSocket stays subscribed to all `wanted` (default: every symbol; a dynamic universe changes it with
    `feed.follow`), so a replica taking a symbol over has its local book ready.
    """
    freshness = Freshness(settings.symbols, settings.stale_after_ns)
    sequencer = sequencer if sequencer is not None else Sequencer()
    books = BookPoller(
        svc.bus,
        RestBookSource(client, settings.depth),
        depth=settings.depth,
        stale_after_ns=settings.stale_after_ns,
        clock=svc.now_ns,
        freshness=freshness,
        sequencer=sequencer,
    )
    trades = TradePoller(svc.bus, RestTradeSource(client, settings.trades_last), clock=svc.now_ns, owns=owns)
    feed: WsFeed | None = None
    if settings.source == "ws":
        if socket is None:
            raise ValueError("source ws needs a WebSocket")
        local = LocalBooks(settings.symbols, wanted)
        publisher = WsBookPublisher(
            svc.bus,
            local,
            sequencer,
            depth=settings.depth,
            stale_after_ns=settings.stale_after_ns,
            freshness=freshness,
            heartbeat_ns=int(settings.heartbeat * 1_000_000_000),
            owns=owns,
        )
        feed = WsFeed(
            socket,
            local,
            publisher,
            trades,
            clock=svc.now_ns,
            stale_after_ns=settings.stale_after_ns,
            resync_timeout_ns=settings.resync_timeout_ns,
            log=svc.log,
        )
        svc.task("ws", feed.run)
    rng = random.Random()  # one per process: replicas must not back off in lock-step

    for symbol in settings.symbols:

        async def book_step(symbol: str = symbol) -> None:
            if not owns(symbol):
                freshness.record(symbol, svc.now_ns())  # a standby is not stale: it has nothing to publish
                return
            if feed is None:
                await books.poll(symbol)
            elif feed.needs_rest(symbol):
                generation = feed.generation(symbol)
                await books.poll(symbol, still_wanted=lambda: feed.generation(symbol) == generation)

        async def trade_step(symbol: str = symbol) -> None:
            # The trade channel carries every trade while the socket is up (and 421 catches up on join).
            if not owns(symbol):
                return
            if feed is None or not feed.connected():
                await trades.poll(symbol)

        async def book_loop(stop: asyncio.Event, symbol: str = symbol) -> None:
            await poll_forever(
                stop,
                lambda: book_step(symbol),
                interval=settings.poll_interval,
                backoff=Backoff(settings.backoff_base, settings.backoff_max, rng),
                expected=EXPECTED_ERRORS,
                log=svc.log.bind(symbol=symbol),
                what="book",
            )

        async def trade_loop(stop: asyncio.Event, symbol: str = symbol) -> None:
            await poll_forever(
                stop,
                lambda: trade_step(symbol),
                interval=settings.trades_interval,
                backoff=Backoff(settings.backoff_base, settings.backoff_max, rng),
                expected=EXPECTED_ERRORS,
                log=svc.log.bind(symbol=symbol),
                what="trades",
            )

        svc.task(f"book:{symbol}", book_loop)
        svc.task(f"trades:{symbol}", trade_loop)
    svc.readiness("marketdata", lambda: freshness.fresh(svc.now_ns()))

    async def book_age_loop(stop: asyncio.Event) -> None:
        while not stop.is_set():
            report_book_ages(svc.now_ns())
            await sleep_or_stop(stop, 1.0)

    svc.task("book-age", book_age_loop)
    return Registered(freshness, feed)


async def last_book_sequence(svc: Service, symbol: str) -> int | None:
    """The sequence of the last book of `symbol` in the MARKET stream, if any."""
    raw = await last_message(svc.js, MARKET.name, subjects.book(symbol))
    if raw is None:
        return None
    try:
        return Codec(BookSnapshot).decode(raw.data).sequence
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None


async def setup(svc: Service, settings: MarketdataSettings) -> None:
    """Build the exchange clients and register the feed and poll loops."""
    client = BtcTurkClient(
        settings.btcturk_base_url,
        settings.btcturk_api_key,
        settings.btcturk_api_secret.get_secret_value(),
        timeout=settings.btcturk_timeout,
    )
    svc.dependency("exchange", client.no_breaker_open)
    svc.on_close(client.aclose)
    socket = BtcTurkWebSocket(settings.btcturk_ws_url) if settings.source == "ws" else None
    if socket is not None:
        svc.on_close(socket.aclose)
    sequencer = Sequencer()

    async def on_acquire(symbol: str) -> None:
        # Keep sequences increasing across owners: start above the last book any replica published.
        last = await last_book_sequence(svc, symbol)
        if last is not None:
            sequencer.commit(symbol, last)
        svc.log.info("marketdata.took_over", symbol=symbol, last_sequence=last)

    dynamic = settings.universe == "dynamic"
    # A dynamic universe starts with no symbol: the follower's first round applies the last selection.
    initial: tuple[str, ...] = () if dynamic else settings.symbols
    ownership = await partition_leases(svc, "marketdata", initial, on_acquire=on_acquire)
    registered = register(svc, settings, client, socket, owns=ownership.owns, sequencer=sequencer, wanted=initial)
    if dynamic:
        await follow_universe(svc, settings, client, ownership, registered.feed)
    svc.log.info(
        "marketdata.configured",
        source=settings.source,
        symbols=list(settings.symbols),
        universe=settings.universe,
        poll_interval=settings.poll_interval,
        depth=settings.depth,
        base_url=settings.btcturk_base_url,
        ws_url=settings.btcturk_ws_url if socket is not None else None,
    )


async def follow_universe(
    svc: Service,
    settings: MarketdataSettings,
    client: UniverseExchange,
    ownership: PartitionLeases | EveryPartition,
    feed: WsFeed | None,
) -> None:
    """Dynamic universe: every replica follows the last selection; the `universe` lease holder selects."""
    candidates = settings.universe_candidates
    if not candidates:
        raise SettingsError(
            f"MARKETDATA_UNIVERSE=dynamic needs BTCBOT_SYMBOLS quoted in {settings.universe_quote} "
            f"(MARKETDATA_UNIVERSE_QUOTE); got {','.join(settings.symbols)}"
        )

    async def apply(symbols: frozenset[str]) -> None:
        ownership.set_partitions(s for s in settings.symbols if s in symbols)
        if feed is not None:
            await feed.follow(symbols)

    follower = Follower(svc.js, settings.symbols, apply, svc.log)
    svc.readiness("universe", follower.ready.is_set)
    if settings.partition_leases:
        lease = PartitionLeases(
            await svc.redis(),
            f"{settings.key_prefix}:marketdata-universe",
            settings.instance,
            ("selector",),
            settings.partition_ttl,
        )
        svc.task("universe-lease", lease.run)
        is_selector: Callable[[], bool] = lambda: lease.owns("selector")  # noqa: E731
    else:
        is_selector = lambda: True  # noqa: E731
    selector = Selector(
        svc.js,
        svc.bus,
        client,
        candidates=candidates,
        rules=settings.universe_rules,
        refresh_ns=int(settings.universe_refresh * 1_000_000_000),
        levels=settings.universe_depth_levels,
        clock=svc.now_ns,
        instance=settings.instance,
        log=svc.log,
    )

    async def select_step() -> None:
        if is_selector():
            await selector.step()

    rng = random.Random()
    for name, step in (("universe-follow", follower.step), ("universe-select", select_step)):

        async def loop(stop: asyncio.Event, step: Callable[[], Awaitable[object]] = step, name: str = name) -> None:
            await poll_forever(
                stop,
                step,
                interval=settings.universe_follow_interval,
                backoff=Backoff(settings.backoff_base, settings.backoff_max, rng),
                expected=UNIVERSE_ERRORS,
                log=svc.log,
                what=name,
            )

        svc.task(name, loop)
