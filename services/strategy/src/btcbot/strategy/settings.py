"""Strategy settings: STRATEGY_* plus the common settings."""

from __future__ import annotations

from decimal import Decimal

from pydantic import Field

from btcbot.runtime.settings import CommonSettings, service_config
from btcbot.strategy.signals import ProfitParams

_NS = 1_000_000_000


def _ns(seconds: float) -> int:
    return int(seconds * _NS)


class StrategySettings(CommonSettings):
    """Limits of profit_v1; money in the quote asset, times in seconds."""

    model_config = service_config("STRATEGY_")

    order_notional: Decimal = Field(Decimal(1000), gt=0, description="quote spent per entry")
    max_order_notional: Decimal = Field(Decimal(5000), gt=0, description="largest exit order value in quote")
    max_spread_bps: Decimal = Field(Decimal(30), gt=0, description="widest spread to enter at")
    take_profit_bps: Decimal = Field(
        Decimal(25), gt=0, description="gain over avg cost that triggers a sell (covers the round trip fees)"
    )
    stop_loss_bps: Decimal | None = Field(None, gt=0, description="loss under avg cost that triggers a sell")
    dust_notional: Decimal = Field(Decimal(100), ge=0, description="position value below which we count flat")
    cooldown: float = Field(2.0, ge=0, description="seconds between intents of one symbol")
    intent_timeout: float = Field(15.0, gt=0, description="seconds an unanswered intent stays in flight")
    order_ttl: float = Field(60.0, gt=0, description="seconds before a resting order is canceled")
    max_drift_bps: Decimal | None = Field(
        Decimal(50), gt=0, description="distance of a resting order from mid at which it is canceled"
    )
    max_book_age: float = Field(5.0, gt=0, description="oldest book (by exchange time) to act on")
    quantity_scale: int = Field(8, ge=0, le=18, description="decimals a quantity is rounded down to")
    require_portfolio: bool = Field(True, description="act only after the first PortfolioSnapshot")

    def params(self) -> ProfitParams:
        """The engine parameters these settings describe."""
        return ProfitParams(
            order_notional=self.order_notional,
            max_order_notional=self.max_order_notional,
            max_spread_bps=self.max_spread_bps,
            take_profit_bps=self.take_profit_bps,
            stop_loss_bps=self.stop_loss_bps,
            dust_notional=self.dust_notional,
            cooldown_ns=_ns(self.cooldown),
            intent_timeout_ns=_ns(self.intent_timeout),
            order_ttl_ns=_ns(self.order_ttl),
            max_drift_bps=self.max_drift_bps,
            max_book_age_ns=_ns(self.max_book_age),
            quantity_scale=self.quantity_scale,
            require_portfolio=self.require_portfolio,
        )
