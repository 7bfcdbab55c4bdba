"""Ledger settings: LEDGER_* variables, the unprefixed DATABASE_URL shared with the CLI, and BTCTURK_* for
reconciliation with the exchange (optional here: without credentials the ledger books but does not reconcile)."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import NoDecode

from btcbot.ledger.positions import parse_amounts, parse_utc_offset
from btcbot.runtime.settings import CommonSettings, ExchangeSettings, service_config


class LedgerSettings(CommonSettings, ExchangeSettings):
    """Where the books are kept, how the portfolio is valued, and how often it is checked against the exchange."""

    model_config = service_config("LEDGER_")

    database_url: str = Field(
        "postgresql://postgres@127.0.0.1:5432/btcbot", validation_alias=AliasChoices("DATABASE_URL")
    )
    # Optional for the ledger (required by the mixin for services that trade): no key, no reconciliation.
    btcturk_api_key: str | None = Field(  # type: ignore[assignment]
        None, validation_alias=AliasChoices("BTCTURK_API_KEY"), min_length=1
    )
    btcturk_api_secret: SecretStr | None = Field(  # type: ignore[assignment]
        None, validation_alias=AliasChoices("BTCTURK_API_SECRET")
    )
    # Seeded once into an empty balances table ("TRY=1000000,BTC=1").
    opening_balances: Annotated[dict[str, Decimal], NoDecode] = Field(default_factory=dict)
    quote_asset: str = Field("TRY", pattern=r"^[A-Z0-9]{2,10}$")
    # How often marks that moved are turned into a fresh snapshot (unrealized PnL, drawdown).
    revalue_interval: float = Field(5.0, gt=0)
    # A snapshot at least this often even when nothing changed (a heartbeat: readers tell fresh from stale).
    snapshot_interval: float = Field(5.0, gt=0)
    pool_min_size: int = Field(1, ge=0)
    pool_max_size: int = Field(4, ge=1)
    db_timeout: float = Field(5.0, gt=0)
    # Daily PnL days run from midnight at this UTC offset ("+03:00" is Istanbul's day).
    day_utc_offset: str = "+00:00"
    # Batch ingestion: up to batch_max events per transaction, waiting at most batch_linger s for company.
    batch_max: int = Field(200, ge=1, le=5000)
    batch_linger: float = Field(0.005, ge=0, le=1)
    # Reconciliation with the exchange every reconcile_interval s (0: off); trades of the last
    # reconcile_lookback s are compared; a trade younger than reconcile_grace s may still be in flight.
    reconcile_interval: float = Field(30.0, ge=0)
    reconcile_lookback: float = Field(86_400.0, gt=0)
    reconcile_grace: float = Field(30.0, ge=0)
    reconcile_tolerance: Decimal = Field(Decimal(0), ge=0)
    # Fills for orders the ledger does not know wait in quarantine (not positions) until their order is known,
    # reconciliation finds the trade at the exchange, or an operator adopts them.
    quarantine_unknown_fills: bool = True
    # Kill chain: Alarm(ledger, quarantine) while a fill has waited in quarantine longer than this (s; 0: off).
    quarantine_alarm_after: float = Field(300.0, ge=0)

    @field_validator("opening_balances", mode="before")
    @classmethod
    def _parse_balances(cls, value: object) -> object:
        if isinstance(value, str):
            return parse_amounts(value)
        return value

    @field_validator("day_utc_offset")
    @classmethod
    def _check_offset(cls, value: str) -> str:
        parse_utc_offset(value)
        return value

    @property
    def day_offset_minutes(self) -> int:
        """The trading-day offset in minutes east of UTC."""
        return parse_utc_offset(self.day_utc_offset)

    @property
    def reconciles(self) -> bool:
        """True when exchange credentials are set and reconciliation is not switched off."""
        return bool(self.btcturk_api_key and self.btcturk_api_secret and self.reconcile_interval > 0)
