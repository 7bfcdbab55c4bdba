"""The running exchange: engine, crowd, rate limiter, faults and event fan-out, behind a clock."""

from __future__ import annotations

import dataclasses
import random
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from btcbot.sim import snapshot
from btcbot.sim.config import KNOWN_CURRENCIES, Account, Currency, SimConfig, SymbolRules
from btcbot.sim.engine import Event, MatchingEngine
from btcbot.sim.funding import FundingLedger
from btcbot.sim.market import Crowd
from btcbot.sim.playback import Playback
from btcbot.sim.ratelimit import RateLimiter

Clock = Callable[[], int]
Listener = Callable[[list[Event]], None]
# Requests kept in the log that /sim/requests shows; the count covers every request ever received.
REQUEST_LOG_SIZE = 10_000


@dataclass(frozen=True)
class ReceivedRequest:
    """One exchange request (/api/ or graph /v1/) as it reached the simulator, before any fault, limit or auth check."""

    ts_ms: int
    method: str
    path: str


class SimState:
    """One simulated exchange; every mutation goes through here so listeners see all events."""

    def __init__(self, config: SimConfig, clock: Clock) -> None:
        self.config = config
        self.clock = clock
        now = clock()
        # Ids derived from the start time never collide with those of an earlier run.
        self.engine = MatchingEngine(
            config.symbols,
            config.fees,
            first_order_id=config.first_order_id if config.first_order_id is not None else now * 1000,
            first_trade_id=config.first_trade_id if config.first_trade_id is not None else now * 1000,
        )
        self.accounts: dict[str, Account] = {}
        self.funding = FundingLedger(first_id=config.first_transfer_id if config.first_transfer_id is not None else now)
        for account in config.accounts:
            self.add_account(account)
        playback = None
        if config.dataset is not None:
            playback = Playback(config.dataset, config.symbols, now, config.playback_speed)
        self.playback = playback
        self.crowd = Crowd(
            self.engine,
            config.symbols,
            config.market,
            random.Random(config.seed),
            driven=playback.pairs if playback is not None else (),
        )
        if playback is not None:
            for pair in playback.pairs:
                self.crowd.set_mid(pair, playback.first_mid(pair))
        self.crowd.seed(now)
        self.engine.drain_events()
        self.limiter = RateLimiter()
        self.faults = dataclasses.replace(config.faults)
        self.fault_rng = random.Random(config.seed + 1)
        self._id_rng = random.Random(config.seed + 2)
        self._listeners: list[Listener] = []
        self.requests_received = 0
        self.request_log: deque[ReceivedRequest] = deque(maxlen=REQUEST_LOG_SIZE)
        self.currencies = _currencies(config)

    def add_account(self, account: Account) -> None:
        """Open an account for an API key with its initial balances."""
        if not account.user_id:
            account = dataclasses.replace(account, user_id=10_000_001 + len(self.accounts))
        self.engine.open_account(account.api_key, account.balances)
        self.accounts[account.api_key] = account
        self.funding.deposit_initial(account.api_key, account.balances, self.now_ms())

    def now_ms(self) -> int:
        """Exchange time in ms."""
        return self.clock()

    def symbol(self, name: str) -> SymbolRules | None:
        """Pair rules by `BTCTRY`/`BTC_TRY`, or None if not active."""
        return self.config.symbol(name)

    def new_client_id(self) -> str:
        """A GUID for orders submitted without newOrderClientId (seeded, so runs repeat)."""
        return str(uuid.UUID(int=self._id_rng.getrandbits(128), version=4))

    def received(self, method: str, path: str) -> None:
        """Count one exchange request (/api/ or graph /v1/) that reached the simulator."""
        self.requests_received += 1
        self.request_log.append(ReceivedRequest(self.now_ms(), method, path))

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Receive every batch of engine events; returns the unsubscribe function."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    def publish(self) -> None:
        """Hand pending engine events to listeners."""
        events = self.engine.drain_events()
        if events:
            for listener in list(self._listeners):
                listener(events)

    def saved(self) -> dict[str, Any]:
        """The users' wallets, orders and trades, the id counters and the prices, for `--state-file`."""
        engine = self.engine
        accounts = {}
        for key in self.accounts:
            wallet = engine.wallet(key)
            accounts[key] = {
                "balances": {
                    a: {"total": str(wallet.balance(a).total), "locked": str(wallet.balance(a).locked)}
                    for a in wallet.assets()
                },
                "orders": [snapshot.order_to_json(o) for o in engine.orders_of(key)],
                "trades": [snapshot.trade_to_json(t) for t in engine.trades_of(key)],
            }
        prices = {s.name: str(self.crowd.mid(s.name)) for s in self.config.symbols}
        last = {s.name: str(p) for s in self.config.symbols if (p := engine.last_price(s.name)) is not None}
        return {
            "version": snapshot.VERSION,
            "saved_ms": self.now_ms(),
            # The engine's counters are private: a saved state is the one place that must carry them over.
            "next_order_id": engine._next_order_id,
            "next_trade_id": engine._next_trade_id,
            "mids": prices,
            "last_prices": last,
            "accounts": accounts,
        }

    def restore(self, data: dict[str, Any]) -> None:
        """Continue from a saved state: the saved accounts replace the configured ones' records, open orders rest
        in the book again, ids continue after the saved ones and the crowd trades around the saved prices."""
        engine = self.engine
        # Ids only grow: the later of the saved counter and this start's time-derived one.
        engine._next_order_id = max(engine._next_order_id, int(data["next_order_id"]))
        engine._next_trade_id = max(engine._next_trade_id, int(data["next_trade_id"]))
        for pair, mid in data.get("mids", {}).items():
            if self.config.symbol(pair) is not None:
                self.crowd.set_mid(pair, Decimal(mid))
        for key, saved in data.get("accounts", {}).items():
            if key not in self.accounts:
                continue  # an account this start does not configure (its secret is not saved)
            wallet = engine.wallet(key)
            for asset in wallet.assets():
                wallet.balance(asset).total = Decimal(0)
                wallet.balance(asset).locked = Decimal(0)
            for asset, bal in saved["balances"].items():
                wallet.balance(asset).total = Decimal(bal["total"])
                wallet.balance(asset).locked = Decimal(bal["locked"])
            orders = [snapshot.order_from_json(o) for o in saved["orders"]]
            engine._account_orders[key] = orders
            engine._account_trades[key] = [snapshot.trade_from_json(t) for t in saved["trades"]]
            for order in orders:
                engine._orders[order.order_id] = order
                if order.is_open and order.method == "limit" and engine.books.get(order.pair) is not None:
                    engine.books[order.pair].side(order.side).add(order)
        engine.drain_events()

    def tick(self) -> None:
        """Play the recorded records now due, if any, then let the crowd trade once."""
        now = self.now_ms()
        if self.playback is not None:
            self.playback.step(self.crowd, now)
        self.crowd.step(now)
        self.publish()


def _currencies(config: SimConfig) -> dict[str, Currency]:
    """Currencies of the active pairs first, then any other configured one."""
    configured = {c.symbol: c for c in config.currencies}
    result: dict[str, Currency] = {}
    for rules in config.symbols:
        for asset in (rules.denominator, rules.numerator):
            if asset not in result:
                result[asset] = configured.get(asset) or KNOWN_CURRENCIES.get(asset) or Currency(asset, asset, 8, 0)
    for currency in config.currencies:
        result.setdefault(currency.symbol, currency)
    return result
