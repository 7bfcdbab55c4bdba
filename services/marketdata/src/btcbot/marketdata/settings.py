"""Market data settings: MARKETDATA_* plus the common and exchange settings."""

from __future__ import annotations

from decimal import Decimal
from typing import Literal

from pydantic import Field

from btcbot.marketdata.selection import UniverseRules
from btcbot.runtime.settings import CommonSettings, ExchangeSettings, service_config

_NS = 1_000_000_000


class MarketdataSettings(CommonSettings, ExchangeSettings):
    """Where books come from, how deep, how often to poll, and when a book counts as stale."""

    model_config = service_config("MARKETDATA_")

    source: Literal["ws", "rest"] = Field(
        "ws", description="ws: obdiff books and trades over the WebSocket, REST while it is down; rest: poll only"
    )
    resync_timeout: float = Field(5.0, gt=0, description="seconds to wait for an obdiff snapshot before asking again")
    poll_interval: float = Field(0.5, gt=0, description="seconds between order book polls of one symbol")
    depth: int = Field(10, ge=1, le=1000, description="levels per side in a BookSnapshot")
    heartbeat: float = Field(1.0, gt=0, description="seconds after which an unchanged WebSocket book is republished")
    stale_after: float = Field(5.0, gt=0, description="seconds of exchange-time lag that make a book stale")
    trades_interval: float = Field(2.0, gt=0, description="seconds between public trade polls of one symbol")
    trades_last: int = Field(50, ge=1, le=1000, description="trades asked for per poll")
    backoff_base: float = Field(0.5, gt=0, description="first retry delay after a failed poll, seconds")
    backoff_max: float = Field(10.0, gt=0, description="longest retry delay after failed polls, seconds")

    # The dynamic universe (docs/strategies.md "Dynamic universe"). Candidates are BTCBOT_SYMBOLS in the quote asset.
    universe: Literal["static", "dynamic"] = Field(
        "static", description="static: books of every BTCBOT_SYMBOLS pair; dynamic: of the universe's selection only"
    )
    universe_size: int = Field(5, ge=1, le=100, description="symbols the universe selects (top N by score)")
    universe_refresh: float = Field(3600.0, gt=0, description="seconds between selections")
    universe_max_spread_bps: float = Field(60.0, gt=0, description="widest spread a selected symbol may have, bps")
    universe_min_depth_try: Decimal = Field(
        Decimal(50_000), ge=0, description="least quote notional on the thinner side of the top levels"
    )
    universe_depth_levels: int = Field(10, ge=1, le=100, description="book levels a side counted as depth")
    universe_max_rejects: int = Field(3, ge=1, description="minimum-total rejects in the window that exclude a symbol")
    universe_reject_window: float = Field(14400.0, gt=0, description="seconds in which those rejects are counted")
    universe_change_every: float = Field(86400.0, ge=0, description="seconds between two additions to the selection")
    universe_cooldown: float = Field(86400.0, ge=0, description="seconds a symbol that left may not come back")
    universe_probation: float = Field(86400.0, ge=0, description="seconds a symbol with too many rejects stays out")
    universe_swap_margin: float = Field(0.0, ge=0, description="score a newcomer must beat the worst member by")
    universe_quote: str = Field("TRY", min_length=2, description="quote asset of the candidates")
    universe_follow_interval: float = Field(2.0, gt=0, description="seconds between checks for a new selection")

    @property
    def resync_timeout_ns(self) -> int:
        """The snapshot wait in nanoseconds."""
        return int(self.resync_timeout * _NS)

    @property
    def stale_after_ns(self) -> int:
        """The stale threshold in nanoseconds."""
        return int(self.stale_after * _NS)

    @property
    def universe_rules(self) -> UniverseRules:
        """The selection thresholds as the pure selection takes them."""
        return UniverseRules(
            size=self.universe_size,
            max_spread_bps=self.universe_max_spread_bps,
            min_depth_try=self.universe_min_depth_try,
            max_rejects=self.universe_max_rejects,
            reject_window_ns=int(self.universe_reject_window * _NS),
            change_every_ns=int(self.universe_change_every * _NS),
            cooldown_ns=int(self.universe_cooldown * _NS),
            probation_ns=int(self.universe_probation * _NS),
            swap_margin=self.universe_swap_margin,
        )

    @property
    def universe_candidates(self) -> tuple[str, ...]:
        """The configured symbols the universe chooses from: those quoted in `universe_quote`."""
        quote = self.universe_quote.upper()
        return tuple(s for s in self.symbols if s.endswith(quote) and len(s) > len(quote))
