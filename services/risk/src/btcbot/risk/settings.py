"""Risk settings: RISK_* plus the common and exchange settings."""

from __future__ import annotations

from decimal import Decimal

from pydantic import Field

from btcbot.risk.limits import RiskLimits
from btcbot.runtime.settings import CommonSettings, ExchangeSettings, service_config

_NS = 1_000_000_000


class RiskSettings(CommonSettings, ExchangeSettings):
    """Our order limits and how often the exchange rules are refreshed."""

    model_config = service_config("RISK_")

    max_order_notional: Decimal = Field(Decimal(5000), gt=0, description="largest order value in quote")
    max_intent_age: float = Field(30.0, gt=0, description="seconds after which an intent is denied as stale")
    max_book_age: float = Field(
        10.0, ge=0, description="seconds after which a symbol's last book is too old to trade on (0: no check)"
    )
    shared_verdicts: bool = Field(
        True, description="record each intent's first verdict in Redis so every replica repeats it on redelivery"
    )
    rules_refresh: float = Field(300.0, gt=0, description="seconds between exchangeinfo reloads")
    rules_retry_max: float = Field(30.0, gt=0, description="longest wait between failed exchangeinfo loads")

    def limits(self) -> RiskLimits:
        """The limits these settings describe."""
        return RiskLimits(
            max_order_notional=self.max_order_notional,
            max_intent_age_ns=int(self.max_intent_age * _NS),
            max_book_age_ns=int(self.max_book_age * _NS) if self.max_book_age > 0 else None,
        )
