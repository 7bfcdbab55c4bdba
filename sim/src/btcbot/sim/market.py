"""The simulated crowd: seeded traders quoting and hitting the book through the engine.

On its own the crowd's fair price is a random walk with each pair's own volatility, and its quotes sit about
the pair's spread apart (data/markets.json); on pairs played back from a recorded dataset it is driven from
outside (`follow`) and the recorded trades are sent through it (`replay_trade`). At start it also writes a
synthesized last day of trades into the engine's 24 h statistics (history.py), so tickers show each pair's
24 h change, range and volume from the first second.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable
from decimal import ROUND_DOWN, ROUND_HALF_EVEN, Decimal

from btcbot.sim.book import Side
from btcbot.sim.config import Fees, MarketSettings, SymbolRules
from btcbot.sim.engine import MatchingEngine, OrderRequest, Rejected
from btcbot.sim.history import MINUTES_PER_DAY, day_path

CROWD_ACCOUNT = "__crowd__"
# The crowd never runs out of money; its fills are free so its balances need no care.
_CROWD_FUNDS = Decimal(10) ** 15
# Quotes sit at least half the pair's spread from the mid, plus |N(0,1)| times this fraction of it.
_OFFSET_SCALE = 0.0025
_DAY_MS = 86_400_000
_MINUTE_MS = 60_000


def _on_tick(price: Decimal, tick: Decimal) -> Decimal:
    """The nearest price on the tick grid."""
    return (price / tick).quantize(Decimal(1), ROUND_HALF_EVEN) * tick


class Crowd:
    """Other market participants on every pair: they move a hidden mid and trade around it."""

    def __init__(
        self,
        engine: MatchingEngine,
        symbols: Iterable[SymbolRules],
        settings: MarketSettings,
        rng: random.Random,
        *,
        driven: Iterable[str] = (),
    ) -> None:
        self._engine = engine
        self._symbols = list(symbols)
        self._settings = settings
        self._rng = rng
        assets = {a for s in self._symbols for a in (s.numerator, s.denominator)}
        engine.open_account(
            CROWD_ACCOUNT,
            dict.fromkeys(sorted(assets), _CROWD_FUNDS),
            Fees(Decimal(0), Decimal(0), Decimal(0)),
            keep_history=False,
        )
        self._mid: dict[str, float] = {s.name: float(s.initial_price) for s in self._symbols}
        self._resting: dict[str, list[int]] = {s.name: [] for s in self._symbols}
        self._serial = 0
        # Pairs whose mid comes from a recording: no random walk, no random takers.
        self._driven = frozenset(driven)
        # Half the recorded spread, where known: the innermost quotes sit about this far from the mid.
        self._half_spread: dict[str, float] = {}
        # Time of the last step: the mid moves by volatility x sqrt(time since), whatever the tick interval.
        self._last_ms: int | None = None

    def mid(self, pair: str) -> Decimal:
        """The crowd's current idea of fair price."""
        return Decimal(repr(self._mid[pair]))

    def set_mid(self, pair: str, price: Decimal) -> None:
        """Move the crowd's fair price; trading then follows it (a scripted jump or crash)."""
        if price <= 0:
            raise ValueError("mid must be positive")
        self._mid[pair] = float(price)

    def follow(self, pair: str, mid: Decimal, spread: Decimal | None, now_ms: int) -> None:
        """Move a driven pair to a recorded mid (and spread), pulling the crowd's quotes it leaves on the wrong side."""
        self.set_mid(pair, mid)
        rules = self._engine.symbols[pair]
        if spread is None:
            self._half_spread.pop(pair, None)
        else:
            # Never closer than a tick, or rounding could put a bid and an ask at the same price.
            self._half_spread[pair] = max(float(spread) / 2, float(rules.tick_size))
        for order_id in list(self._resting[pair]):
            order = self._engine.order(order_id)
            if order is None or not order.is_open:
                self._resting[pair].remove(order_id)
            elif (order.side == "buy" and order.price >= mid) or (order.side == "sell" and order.price <= mid):
                self._cancel(pair, order_id, now_ms)

    def replay_trade(self, pair: str, side: Side, price: Decimal, amount: Decimal, now_ms: int) -> None:
        """Print a recorded trade: a taker of `side` for `amount`, up to `price`.

        The crowd's quotes at or through the recorded price contradict the recording and are pulled first.
        Other accounts' orders at or better than the price then fill first, at their own price (time
        priority at equal price); the crowd supplies the rest at exactly the recorded price.
        """
        rules = self._engine.symbols[pair]
        price = min(max(_on_tick(price, rules.tick_size), rules.min_price), rules.max_price)
        step = Decimal(1).scaleb(-rules.numerator_scale)
        amount = max(amount.quantize(step, ROUND_DOWN), step)
        for order_id in list(self._resting[pair]):
            order = self._engine.order(order_id)
            if order is None or not order.is_open:
                self._resting[pair].remove(order_id)
            elif (order.side == "buy" and order.price >= price) or (order.side == "sell" and order.price <= price):
                self._cancel(pair, order_id, now_ms)
        sign = 1 if side == "buy" else -1
        available = Decimal(0)
        for level in self._engine.books[pair].opposite(side).levels():
            if sign * (level.price - price) > 0 or available >= amount:
                break
            available += level.total
        if available < amount:
            passive: Side = "sell" if side == "buy" else "buy"
            self._limit(rules, passive, price, amount - available, now_ms)
        taker = self._engine.place(
            OrderRequest(CROWD_ACCOUNT, self._client_id(), pair, side, "limit", amount, price), now_ms
        )
        if not isinstance(taker, Rejected) and taker.is_open:
            # Immediate-or-cancel: a recorded taker never rests.
            self._engine.cancel(CROWD_ACCOUNT, taker.order_id, now_ms)

    def seed(self, now_ms: int) -> None:
        """Write each random-walk pair's synthesized last day into the 24 h stats, then fill the books."""
        history_seed = self._rng.getrandbits(64)
        for rules in self._symbols:
            if rules.name not in self._driven and self._settings.history_minutes > 0:
                self._write_history(rules, now_ms, random.Random(f"{history_seed}:{rules.name}"))
        self._last_ms = now_ms
        for rules in self._symbols:
            for _ in range(self._settings.depth_levels):
                self._quote(rules, "buy", now_ms)
                self._quote(rules, "sell", now_ms)

    def step(self, now_ms: int) -> None:
        """One tick: move the mid, cancel stale quotes, add new ones, maybe send a market order."""
        elapsed = max(0, now_ms - (now_ms if self._last_ms is None else self._last_ms))
        self._last_ms = now_ms
        root_day = math.sqrt(elapsed / _DAY_MS) * self._settings.volatility_scale
        for rules in self._symbols:
            pair = rules.name
            driven = pair in self._driven
            if not driven:
                sigma = rules.profile.daily_volatility * root_day
                self._mid[pair] *= math.exp(sigma * self._rng.gauss(0.0, 1.0))
            self._resting[pair] = [i for i in self._resting[pair] if self._engine.order(i) is not None]
            self._cancel_stale(rules, now_ms)
            for _ in range(self._settings.cancels_per_tick):
                if self._resting[pair]:
                    victim = self._rng.choice(self._resting[pair])
                    self._cancel(pair, victim, now_ms)
            book = self._engine.books[pair]
            for side in ("buy", "sell"):
                missing = self._settings.depth_levels - len(book.side("buy" if side == "buy" else "sell"))
                # Refill gradually so a swept side recovers over a few ticks, as real depth does.
                for _ in range(min(max(0, missing), self._settings.orders_per_tick)):
                    self._quote(rules, "buy" if side == "buy" else "sell", now_ms)
            for _ in range(self._settings.orders_per_tick):
                self._quote(rules, "buy" if self._rng.random() < 0.5 else "sell", now_ms)
            if not driven and self._rng.random() < self._settings.market_order_probability:
                self._market(rules, now_ms)

    def _write_history(self, rules: SymbolRules, now_ms: int, rng: random.Random) -> None:
        profile = rules.profile
        step = Decimal(1).scaleb(-rules.numerator_scale)
        path = day_path(
            rng,
            float(rules.initial_price),
            drift_24h=profile.drift_24h,
            daily_volatility=profile.daily_volatility,
            volume_24h=float(profile.volume_24h) * self._settings.history_minutes / MINUTES_PER_DAY,
            minutes=self._settings.history_minutes,
        )
        for trade in path:
            price = min(max(_on_tick(Decimal(repr(trade.price)), rules.tick_size), rules.min_price), rules.max_price)
            amount = max(Decimal(repr(trade.amount)).quantize(step, ROUND_DOWN), step)
            self._engine.record_past_trade(rules.name, price, amount, now_ms - trade.minutes_ago * _MINUTE_MS)

    def _cancel(self, pair: str, order_id: int, now_ms: int) -> None:
        self._engine.cancel(CROWD_ACCOUNT, order_id, now_ms)
        self._resting[pair].remove(order_id)

    def _cancel_stale(self, rules: SymbolRules, now_ms: int) -> None:
        """Keep each side of the crowd's quotes within its cap, dropping the farthest from the mid."""
        mid = self._mid[rules.name]
        for side in ("buy", "sell"):
            mine = [
                o
                for o in (self._engine.order(i) for i in self._resting[rules.name])
                if o is not None and o.side == side
            ]
            excess = len(mine) - self._settings.max_orders_per_side
            if excess <= 0:
                continue
            mine.sort(key=lambda o: abs(float(o.price) - mid), reverse=True)
            for order in mine[:excess]:
                self._cancel(rules.name, order.order_id, now_ms)

    def _client_id(self) -> str:
        self._serial += 1
        return f"crowd-{self._serial}"

    def _size(self, rules: SymbolRules) -> Decimal:
        step = Decimal(1).scaleb(-rules.numerator_scale)
        size = (rules.lot_size * Decimal(repr(round(self._rng.uniform(0.2, 3.0), 6)))).quantize(step, ROUND_DOWN)
        return max(size, step)

    def _quote(self, rules: SymbolRules, side: Side, now_ms: int) -> None:
        mid = self._mid[rules.name]
        spread = abs(self._rng.gauss(0.0, 1.0))
        # Relative distance, but at least a few ticks so coarse-tick pairs still get distinct levels.
        half_spread = self._half_spread.get(rules.name)
        if half_spread is None:
            min_offset = rules.profile.spread_bps / 20_000
            distance = mid * (min_offset + spread * _OFFSET_SCALE) + float(rules.tick_size) * (1 + spread * 8)
        else:
            distance = half_spread + mid * spread * _OFFSET_SCALE + float(rules.tick_size) * spread * 8
        raw = mid - distance if side == "buy" else mid + distance
        price = (Decimal(repr(raw)) / rules.tick_size).quantize(Decimal(1), ROUND_DOWN) * rules.tick_size
        if price < rules.min_price or price > rules.max_price:
            return
        self._limit(rules, side, price, self._size(rules), now_ms)

    def _limit(self, rules: SymbolRules, side: Side, price: Decimal, amount: Decimal, now_ms: int) -> None:
        result = self._engine.place(
            OrderRequest(CROWD_ACCOUNT, self._client_id(), rules.name, side, "limit", amount, price), now_ms
        )
        if not isinstance(result, Rejected) and result.is_open:
            self._resting[rules.name].append(result.order_id)

    def _market(self, rules: SymbolRules, now_ms: int) -> None:
        """A taker who leans toward the mid: buys when the book trades below it, sells above."""
        last = self._engine.reference_price(rules.name)
        mid = self._mid[rules.name]
        lean = 0.5 if last is None else (0.75 if float(last) < mid else 0.25)
        side: Side = "buy" if self._rng.random() < lean else "sell"
        size = self._size(rules)
        quantity = (size * self.mid(rules.name)).quantize(Decimal("0.01"), ROUND_DOWN) if side == "buy" else size
        self._engine.place(OrderRequest(CROWD_ACCOUNT, self._client_id(), rules.name, side, "market", quantity), now_ms)
