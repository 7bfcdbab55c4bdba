"""Strategy settings: STRATEGY_* plus the common settings; each strategy's own parameters via registry.py."""

from __future__ import annotations

import os
from collections.abc import Mapping
from decimal import Decimal
from typing import Annotated

from pydantic import AliasChoices, Field, field_validator, model_validator
from pydantic_settings import NoDecode

from btcbot.runtime.settings import CommonSettings, service_config
from btcbot.strategy.registry import Configured, configure, configure_one
from btcbot.strategy.signals import ProfitParams, Slot
from btcbot.strategy.strategies.profit_v1 import PLUGIN as PROFIT_V1
from btcbot.strategy.strategies.profit_v1 import ProfitV1Params

_NS = 1_000_000_000


def _ns(seconds: float) -> int:
    return int(seconds * _NS)


class StrategySettings(CommonSettings):
    """Which strategies run, and the engine's limits (times in seconds) shared by all of them."""

    model_config = service_config("STRATEGY_")

    strategies: Annotated[tuple[str, ...], NoDecode] = Field(
        ("profit_v1",), description="strategies to run, comma separated (entry points of btcbot.strategies)"
    )
    cooldown: float = Field(2.0, ge=0, description="seconds between intents of one strategy and symbol")
    intent_timeout: float = Field(15.0, gt=0, description="seconds an unanswered intent stays in flight")
    order_ttl: float = Field(60.0, gt=0, description="seconds before a resting order is canceled")
    max_drift_bps: Decimal | None = Field(
        Decimal(50), gt=0, description="distance of a resting order from mid at which it is canceled"
    )
    max_book_age: float = Field(5.0, gt=0, description="oldest book (by exchange time) to act on")
    require_portfolio: bool = Field(True, description="act only after the first PortfolioSnapshot")
    rules_refresh: float = Field(300.0, gt=0, description="seconds between exchangeinfo reloads")
    # exchangeinfo is public: the strategy needs only where the exchange (or the simulator) is.
    btcturk_base_url: str = Field("http://127.0.0.1:8800", validation_alias=AliasChoices("BTCTURK_BASE_URL"))
    btcturk_timeout: float = Field(5.0, gt=0, validation_alias=AliasChoices("BTCTURK_TIMEOUT"))

    @field_validator("strategies", mode="before")
    @classmethod
    def _split(cls, value: object) -> object:
        if isinstance(value, str):
            value = tuple(s.strip().lower() for s in value.split(",") if s.strip())
        if isinstance(value, tuple | list):
            if not value:
                raise ValueError("at least one strategy is needed (e.g. profit_v1,mean_reversion)")
            if len(set(value)) != len(value):
                raise ValueError(f"a strategy is listed twice: {','.join(value)}")
        return value

    @model_validator(mode="after")
    def _check_strategies(self) -> StrategySettings:
        # Read with the settings, so a bad strategy parameter stops start-up (exit 2, one line naming the variable)
        # before anything connects. SettingsError is no ValueError: pydantic lets it through as it is.
        self.configured()
        self.params()
        return self

    def configured(self, environ: Mapping[str, str] | None = None) -> list[Configured]:
        """The enabled strategies, their parameters validated (SettingsError naming the variable)."""
        return configure(self.strategies, os.environ if environ is None else environ, self.symbols)

    def slots(self, configured: list[Configured]) -> list[Slot]:
        """The engine's slots for `configured` strategies."""
        return [Slot(c.name, c.strategy, c.allocation.weight, c.allocation.capital) for c in configured]

    def params(self, environ: Mapping[str, str] | None = None) -> ProfitParams:
        """The engine's limits, with profit_v1's knobs (STRATEGY_ORDER_NOTIONAL, ...) validated."""
        environ = os.environ if environ is None else environ
        profit = configure_one(PROFIT_V1, environ, self.symbols).params
        assert isinstance(profit, ProfitV1Params)
        return ProfitParams(
            order_notional=profit.order_notional,
            max_order_notional=profit.max_order_notional,
            max_spread_bps=profit.max_spread_bps,
            take_profit_bps=profit.take_profit_bps,
            sell_fraction=profit.sell_fraction,
            stop_loss_bps=profit.stop_loss_bps,
            dust_notional=profit.dust_notional,
            cooldown_ns=_ns(self.cooldown),
            intent_timeout_ns=_ns(self.intent_timeout),
            order_ttl_ns=_ns(self.order_ttl),
            max_drift_bps=self.max_drift_bps,
            max_book_age_ns=_ns(self.max_book_age),
            require_portfolio=self.require_portfolio,
        )
