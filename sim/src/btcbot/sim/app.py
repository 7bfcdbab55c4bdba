"""Wiring: build the aiohttp application and the task that lets the market move every tick."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path

from aiohttp import web

from btcbot.sim import admin, graph, rest, snapshot
from btcbot.sim.config import SimConfig
from btcbot.sim.gateway import gateway
from btcbot.sim.responses import HUB, STATE
from btcbot.sim.state import Clock, SimState
from btcbot.sim.ws import WsHub

log = logging.getLogger(__name__)


def wall_clock_ms() -> int:
    """Unix time in ms."""
    return time.time_ns() // 1_000_000


async def _drive_market(state: SimState, interval: float) -> None:
    while True:
        await asyncio.sleep(interval)
        try:
            state.tick()
        except Exception:
            # The exchange must stay up for its clients; a crowd bug is logged, not fatal.
            log.exception("market tick failed")


def create_app(config: SimConfig, *, clock: Clock = wall_clock_ms, state_file: Path | None = None) -> web.Application:
    """The simulator as an aiohttp app; the market runs while the app runs if `config.run_market`.

    `state_file`: restore the exchange from it if it exists (ValueError if it is not a saved state), save to it
    on shutdown and on POST /sim/save.
    """
    app = web.Application(middlewares=[admin.require_admin, gateway])
    state = SimState(config, clock)
    if state_file is not None:
        saved = snapshot.read(state_file)
        if saved is not None:
            state.restore(saved)
            log.info("restored the exchange from %s", state_file)
        app[admin.STATE_FILE] = state_file
    app[STATE] = state
    hub = WsHub(state, book_interval=config.ws_book_interval, snapshot_interval=config.ws_snapshot_interval)
    app[HUB] = hub
    rest.add_routes(app)
    graph.add_routes(app)
    admin.add_routes(app)
    # BTCTurk's feed lives at the host root; /ws is offered too so one port can serve both.
    app.router.add_get("/", hub.handle)
    app.router.add_get("/ws", hub.handle)

    async def background(app: web.Application) -> AsyncIterator[None]:
        tasks = [asyncio.create_task(hub.run())]
        if config.run_market:
            tasks.append(asyncio.create_task(_drive_market(state, config.tick_interval)))
        yield
        for task in tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def close_sockets(app: web.Application) -> None:
        await hub.close_all()

    async def save_state(app: web.Application) -> None:
        admin.save(app)

    app.cleanup_ctx.append(background)
    if state_file is not None:
        # on_cleanup runs the cleanup contexts first: the market has stopped, nothing changes after the save.
        app.on_cleanup.append(save_state)
    app.on_shutdown.append(close_sockets)
    return app
