"""Simulator configuration: symbols and their exchange rules, fees, accounts, market and fault settings."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from decimal import Decimal

from btcbot.sim.catalog import KNOWN_CURRENCIES, KNOWN_SYMBOLS, Currency, PairMarket, SymbolRules
from btcbot.sim.dataset import Dataset

__all__ = [
    "KNOWN_CURRENCIES",
    "KNOWN_SYMBOLS",
    "MARKET_PROFILES",
    "Account",
    "Currency",
    "Faults",
    "Fees",
    "MarketSettings",
    "PairMarket",
    "SimConfig",
    "SymbolRules",
]


# The pairs a simulator offers when none are named: BTCTurk's two largest TRY pairs and the USDT legs.
DEFAULT_SYMBOL_NAMES = ("BTCTRY", "ETHTRY", "BTCUSDT", "USDTTRY")


@dataclass(frozen=True)
class Fees:
    """Fee rates as fractions of notional; tax is a ratio of the fee (VAT on commission)."""

    maker: Decimal = Decimal("0.0005")
    taker: Decimal = Decimal("0.0009")
    tax_ratio: Decimal = Decimal("0.18")

    @property
    def headroom(self) -> Decimal:
        """Largest fee+tax fraction an order can incur; buy orders reserve it on top of notional."""
        return max(self.maker, self.taker) * (1 + self.tax_ratio)


@dataclass(frozen=True)
class Account:
    """An API key pair (secret is base64, like BTCTurk's) with its starting balances."""

    api_key: str
    secret_b64: str = field(repr=False)
    balances: dict[str, Decimal] = field(default_factory=dict)
    # The user id WS order events carry; 0 lets the simulator number accounts itself.
    user_id: int = 0


@dataclass
class Faults:
    """Runtime-switchable misbehaviour; mutated in place through /sim/faults."""

    latency_ms: int = 0
    error_5xx_rate: float = 0.0
    storm_429_retry_after: int = 0
    stale_book: bool = False
    lose_response_next: int = 0
    lose_response_rate: float = 0.0
    ws_drop_next: int = 0
    ws_sequence_gap_next: int = 0

    def to_dict(self) -> dict[str, object]:
        """JSON-friendly view for the admin API."""
        return dataclasses.asdict(self)

    def update(self, changes: dict[str, object]) -> None:
        """Apply a partial update; unknown keys or wrong types raise ValueError."""
        kinds = {f.name: f.type for f in dataclasses.fields(self)}
        for key, value in changes.items():
            kind = kinds.get(key)
            if kind is None:
                raise ValueError(f"unknown fault {key!r}")
            if kind == "bool":
                if not isinstance(value, bool):
                    raise ValueError(f"{key} must be a boolean")
            elif kind == "int":
                if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                    raise ValueError(f"{key} must be a non-negative integer")
            elif isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
                raise ValueError(f"{key} must be a number between 0 and 1")
            setattr(self, key, float(value) if kind == "float" else value)


@dataclass(frozen=True)
class MarketSettings:
    """Shape of the simulated crowd trading on each pair.

    Each pair's mid moves with its own daily volatility (data/markets.json) times `volatility_scale`, scaled to
    the time between ticks, so a tick interval changes the pace of trading, not how far prices go in a minute.
    """

    volatility_scale: float = 1.0
    depth_levels: int = 25
    orders_per_tick: int = 3
    cancels_per_tick: int = 2
    market_order_probability: float = 0.3
    max_orders_per_side: int = 60
    # Minutes of synthesized past trades written into the 24 h stats and candles at start (0: none).
    history_minutes: int = 1440


# `--profile`: `realistic` moves each pair at its own daily volatility (BTCTRY about 7 bps a minute); `demo` moves
# them 15 times as much (BTCTRY about 1 % a minute, ETHTRY 1.4 %), so a 30 bps take-profit triggers several times
# in a 60 s demo. Spreads, depths and the synthesized 24 h history are the same in both.
DEMO_VOLATILITY_SCALE = 15.0
MARKET_PROFILES: dict[str, MarketSettings] = {
    "realistic": MarketSettings(),
    "demo": MarketSettings(volatility_scale=DEMO_VOLATILITY_SCALE),
}


@dataclass(frozen=True)
class SimConfig:
    """Everything the simulator needs; `create_app` takes one of these."""

    symbols: tuple[SymbolRules, ...] = tuple(KNOWN_SYMBOLS[n] for n in DEFAULT_SYMBOL_NAMES)
    currencies: tuple[Currency, ...] = tuple(KNOWN_CURRENCIES[a] for a in ("TRY", "BTC", "ETH", "USDT"))
    accounts: tuple[Account, ...] = ()
    fees: Fees = field(default_factory=Fees)
    seed: int = 7
    tick_interval: float = 0.2
    market: MarketSettings = field(default_factory=MarketSettings)
    faults: Faults = field(default_factory=Faults)
    # First order and trade ids; None derives them from the start time so a restarted simulator
    # never reuses an id that a ledger has already stored.
    first_order_id: int | None = None
    first_trade_id: int | None = None
    # First id of deposits/withdrawals (the transactions/crypto and /fiat lists); None: the start time in ms.
    first_transfer_id: int | None = None
    stamp_window_ms: int = 5000
    rate_limits_enabled: bool = True
    # UNCERTAIN in the spec: the 2025 docs print balances with a decimal comma; default is the dot.
    balance_decimal_comma: bool = False
    # UNCERTAIN: /api/v2/trades `last` maximum (50 per docs text, 1000 per an old table).
    max_trades_last: int = 50
    orderbook_default_limit: int = 100
    orderbook_max_limit: int = 1000
    # UNCERTAIN: the docs omit `data` in the cancel response; set True to send "data": null.
    cancel_response_has_data: bool = False
    # The docs sample shows `amount` of user trades rounded (4 places) next to an exact `preciseAmount`;
    # None sends the exact amount, an int rounds `amount` to that many places like the sample.
    trade_amount_scale: int | None = None
    # WebSocket: obdiff batches go out every book interval (BTCTurk batches ~0.75 s); full books on the
    # orderbook channel and tickers every snapshot interval (BTCTurk: at most once a second).
    ws_book_interval: float = 0.75
    ws_snapshot_interval: float = 1.0
    # Start the background market task in create_app; tests drive the market by hand with False.
    run_market: bool = True
    # A recorded dataset to play back (see dataset.py): its pairs follow the recording instead of the random
    # walk, at `playback_speed` times the recorded pace, looping at the end.
    dataset: Dataset | None = None
    playback_speed: float = 1.0
    # The token /sim/* admin endpoints (all but /sim/health) require; None: they answer 401 to everyone.
    admin_token: str | None = None

    def symbol(self, name: str) -> SymbolRules | None:
        """Look a pair up by `BTCTRY` or `BTC_TRY` spelling, case-insensitively."""
        wanted = name.replace("_", "").upper()
        return next((s for s in self.symbols if s.name == wanted), None)


def default_symbols(names: list[str]) -> tuple[SymbolRules, ...]:
    """Known rules for the given pair names (`all`: every known pair); raises ValueError on an unknown pair."""
    if [n.lower() for n in names] == ["all"]:
        return tuple(KNOWN_SYMBOLS.values())
    unknown = [n for n in names if n.upper() not in KNOWN_SYMBOLS]
    if unknown:
        raise ValueError(f"unknown symbols {unknown}; known: {sorted(KNOWN_SYMBOLS)}")
    return tuple(KNOWN_SYMBOLS[n.upper()] for n in names)


def currencies_for(symbols: tuple[SymbolRules, ...]) -> tuple[Currency, ...]:
    """The currencies the given pairs trade, in a stable order."""
    needed: list[str] = []
    for rules in symbols:
        for asset in (rules.denominator, rules.numerator):
            if asset not in needed:
                needed.append(asset)
    return tuple(KNOWN_CURRENCIES[a] for a in needed)
