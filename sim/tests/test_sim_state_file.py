"""`--state-file`: the exchange saved on shutdown and POST /sim/save, and restored on the next start."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from btcbot.sim.app import create_app
from btcbot.sim.engine import OrderRequest, Rejected
from btcbot.sim.responses import STATE
from btcbot.sim.snapshot import read
from btcbot.sim.state import SimState

from .conftest import API_KEY, OTHER_KEY, FakeClock, SimFactory, make_config

D = Decimal


def _trade_and_rest(state: SimState, now: int) -> None:
    """A trade of each account with the crowd, and one buy of ours left resting far below the market."""
    engine = state.engine
    engine.place(OrderRequest(OTHER_KEY, "o-1", "BTCTRY", "sell", "market", D("0.01")), now)
    engine.place(OrderRequest(API_KEY, "mine-1", "BTCTRY", "buy", "market", D("5000")), now)
    engine.place(OrderRequest(API_KEY, "mine-2", "BTCTRY", "buy", "limit", D("0.2"), D("2000000")), now)
    state.publish()


def _record(state: SimState, key: str) -> dict[str, object]:
    """What the account's state is: balances, orders, trades."""
    engine = state.engine
    wallet = engine.wallet(key)
    return {
        "balances": {a: (wallet.balance(a).total, wallet.balance(a).locked) for a in wallet.assets()},
        "orders": [(o.order_id, o.client_id, o.status, o.left, o.reserved) for o in engine.orders_of(key)],
        "trades": [(t.trade_id, t.order_id, t.price, t.amount, t.fee) for t in engine.trades_of(key)],
    }


def test_saved_state_restores_wallets_orders_trades_ids_and_prices(clock: FakeClock) -> None:
    first = SimState(make_config(), clock)
    _trade_and_rest(first, clock.now)
    first.crowd.set_mid("BTCTRY", D("3100000"))
    saved = json.loads(json.dumps(first.saved()))  # through JSON, as the file holds it

    clock.now += 60_000
    second = SimState(make_config(), clock)
    assert _record(second, API_KEY) != _record(first, API_KEY)
    second.restore(saved)

    for key in (API_KEY, OTHER_KEY):
        assert _record(second, key) == _record(first, key)
    # The resting buy rests in the book again, and the crowd trades around the saved price.
    assert [o.client_id for o in second.engine.books["BTCTRY"].side("buy").orders() if o.account == API_KEY] == [
        "mine-2"
    ]
    assert second.crowd.mid("BTCTRY") == D("3100000")
    # Ids continue after the saved ones (make_config fixes the first ids, so the restored counters must win).
    taker = second.engine.place(OrderRequest(API_KEY, "mine-3", "BTCTRY", "buy", "market", D("1000")), clock.now)
    assert not isinstance(taker, Rejected)
    assert taker.order_id > max(o.order_id for o in first.engine.orders_of(API_KEY))
    assert second.engine.trades_of(API_KEY)[-1].trade_id > max(t.trade_id for t in first.engine.trades_of(API_KEY))


def test_a_file_that_is_not_a_saved_state_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    path.write_text('{"version": 99}')
    with pytest.raises(ValueError, match="--state-file"):
        read(path)
    path.write_text("not json")
    with pytest.raises(ValueError, match="not JSON"):
        read(path)
    assert read(tmp_path / "missing.json") is None


async def test_save_endpoint_and_shutdown_write_the_file_and_a_new_start_restores_it(
    clock: FakeClock, tmp_path: Path
) -> None:
    path = tmp_path / "sim-state.json"
    app = create_app(make_config(), clock=clock, state_file=path)
    server = TestServer(app)
    await server.start_server()
    async with aiohttp.ClientSession(headers={"X-Sim-Admin-Token": "sim-test-admin-token"}) as session:
        _trade_and_rest(app[STATE], clock.now)
        async with session.post(server.make_url("/sim/save")) as resp:
            assert resp.status == 200
            assert (await resp.json())["saved"] == str(path)
        assert read(path) is not None
        path.unlink()
    before = _record(app[STATE], API_KEY)
    await server.close()  # shutdown saves
    assert path.exists()

    restarted = create_app(make_config(), clock=clock, state_file=path)
    assert _record(restarted[STATE], API_KEY) == before


async def test_save_without_a_state_file_answers_409(sim_factory: SimFactory) -> None:
    async with sim_factory() as sim, sim.session.post(sim.url("/sim/save")) as resp:
        assert resp.status == 409
