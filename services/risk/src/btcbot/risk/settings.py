"""Risk settings: RISK_* plus the common and exchange settings."""

from __future__ import annotations

from decimal import Decimal

from pydantic import Field

from btcbot.risk.limits import RiskLimits
from btcbot.risk.modes import BudgetLimits
from btcbot.runtime.errors import SettingsError
from btcbot.runtime.reservations import QUOTE_SCALE, ReserveLimits, to_units
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
    # Pre-trade limits on what is in flight, reserved atomically in Redis across replicas (docs/risk.md).
    max_open_orders_per_symbol: int = Field(1, ge=1, description="approved, unfinished orders per symbol")
    max_open_orders: int = Field(5, ge=1, description="approved, unfinished orders in total")
    order_cooldown: float = Field(60.0, ge=0, description="seconds after an approval before the same symbol and side")
    cash_reserve: Decimal = Field(Decimal(300), ge=0, description="quote cash buys never spend")
    max_symbol_exposure: Decimal = Field(
        Decimal(5000), gt=0, description="bot position value + buys in flight + the order, per symbol, in quote"
    )
    exposure_budget: Decimal = Field(
        Decimal(10000), gt=0, description="the bot's exposure + every buy in flight + the order, in quote"
    )
    deny_unknown_outcome: bool = Field(
        True, description="deny a symbol's submits while one of its approved orders has no known outcome"
    )
    min_total_rejects: int = Field(3, ge=1, description="minimum-total rejects (BTCTurk 1123) that start a cooldown")
    min_total_window: float = Field(3600.0, gt=0, description="seconds in which those rejects are counted")
    min_total_cooldown: float = Field(14400.0, ge=0, description="seconds a symbol is refused after them")
    rules_refresh: float = Field(300.0, gt=0, description="seconds between exchangeinfo reloads")
    rules_retry_max: float = Field(30.0, gt=0, description="longest wait between failed exchangeinfo loads")

    # The automatic budget (risk/modes.py); money in the quote asset; 0 switches a rule off.
    auto_mode: bool = Field(
        True, description="evaluate the automatic budget (off only for drills that run risk without a ledger)"
    )
    max_drawdown: Decimal = Field(Decimal(3000), ge=0, description="bot drawdown from its peak -> OBSERVE_ONLY")
    max_daily_loss: Decimal = Field(Decimal(1000), ge=0, description="bot loss today -> OBSERVE_ONLY")
    max_gross_exposure: Decimal = Field(Decimal(10000), ge=0, description="bot gross exposure above -> REDUCE_ONLY")
    max_position_share: Decimal = Field(
        Decimal("0.30"), ge=0, le=1, description="largest bot position above this share of equity -> REDUCE_ONLY"
    )
    max_day_fees: Decimal = Field(Decimal(0), ge=0, description="fees today above -> REDUCE_ONLY (0: off)")
    max_snapshot_age: float = Field(
        60.0, ge=0, description="seconds after which the last portfolio snapshot is stale -> OBSERVE_ONLY"
    )
    mode_cooldown: float = Field(900.0, ge=0, description="seconds an automatic mode set by a money rule holds")
    mode_tick: float = Field(1.0, gt=0, description="seconds between budget evaluations without a new snapshot")
    failure_alarm_after: int = Field(
        5, ge=1, description="consecutive intent-handling failures that raise the risk.repeated_failures alarm"
    )

    def budget(self) -> BudgetLimits:
        """The automatic budget these settings describe (0 switches a rule off)."""

        def opt(value: Decimal) -> Decimal | None:
            return value if value > 0 else None

        return BudgetLimits(
            max_drawdown=opt(self.max_drawdown),
            max_daily_loss=opt(self.max_daily_loss),
            max_exposure=opt(self.max_gross_exposure),
            max_position_share=opt(self.max_position_share),
            max_day_fees=opt(self.max_day_fees),
            max_snapshot_age_ns=int(self.max_snapshot_age * _NS) if self.max_snapshot_age > 0 else None,
            cooldown_ns=int(self.mode_cooldown * _NS),
        )

    def limits(self) -> RiskLimits:
        """The limits these settings describe."""
        return RiskLimits(
            max_order_notional=self.max_order_notional,
            max_intent_age_ns=int(self.max_intent_age * _NS),
            max_book_age_ns=int(self.max_book_age * _NS) if self.max_book_age > 0 else None,
        )

    def reserve_limits(self) -> ReserveLimits:
        """The in-flight limits the reservation script enforces, in its units."""
        return ReserveLimits(
            max_open_per_symbol=self.max_open_orders_per_symbol,
            max_open_total=self.max_open_orders,
            cooldown_ms=int(self.order_cooldown * 1000),
            cash_reserve=to_units(self.cash_reserve, QUOTE_SCALE, up=True),
            symbol_cap=to_units(self.max_symbol_exposure, QUOTE_SCALE, up=False),
            budget=to_units(self.exposure_budget, QUOTE_SCALE, up=False),
            deny_unknown_outcome=self.deny_unknown_outcome,
            min_total_rejects=self.min_total_rejects,
            min_total_window_ms=int(self.min_total_window * 1000),
            min_total_cooldown_ms=int(self.min_total_cooldown * 1000),
        )


def preflight(settings: RiskSettings) -> None:
    """Checks of the settings as a whole, before anything connects: risk signs every order, so it needs a key."""
    if settings.signer() is None:
        raise SettingsError("risk signs every order: BTCBOT_SIGNING_KEY_ID and BTCBOT_SIGNING_KEY are required")
