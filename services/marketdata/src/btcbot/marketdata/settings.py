"""Market data settings: MARKETDATA_* plus the common and exchange settings."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

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

    @property
    def resync_timeout_ns(self) -> int:
        """The snapshot wait in nanoseconds."""
        return int(self.resync_timeout * _NS)

    @property
    def stale_after_ns(self) -> int:
        """The stale threshold in nanoseconds."""
        return int(self.stale_after * _NS)
