"""Ledger settings: LEDGER_* variables, plus the unprefixed DATABASE_URL shared with the CLI."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated

from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import NoDecode

from btcbot.ledger.positions import parse_amounts
from btcbot.runtime.settings import CommonSettings, service_config


class LedgerSettings(CommonSettings):
    """Where the books are kept and how the portfolio is valued."""

    model_config = service_config("LEDGER_")

    database_url: str = Field(
        "postgresql://postgres@127.0.0.1:5432/btcbot", validation_alias=AliasChoices("DATABASE_URL")
    )
    # Seeded once into an empty balances table ("TRY=1000000,BTC=1"); reconciliation with the exchange
    # replaces this later.
    opening_balances: Annotated[dict[str, Decimal], NoDecode] = Field(default_factory=dict)
    quote_asset: str = Field("TRY", pattern=r"^[A-Z0-9]{2,10}$")
    # How often marks that moved are turned into a fresh snapshot (unrealized PnL, drawdown).
    revalue_interval: float = Field(5.0, gt=0)
    pool_min_size: int = Field(1, ge=0)
    pool_max_size: int = Field(4, ge=1)
    db_timeout: float = Field(5.0, gt=0)

    @field_validator("opening_balances", mode="before")
    @classmethod
    def _parse_balances(cls, value: object) -> object:
        if isinstance(value, str):
            return parse_amounts(value)
        return value
