"""Settings read once from the environment: a small common base plus one model per service.

Common fields come from unprefixed variables (NATS_URL, REDIS_URL, BTCBOT_*); each service's own fields use
its prefix (RISK_MAX_ORDER_NOTIONAL). Secrets are SecretStr, masked in repr and logs.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Annotated, Literal, TypeVar

from pydantic import AliasChoices, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from btcbot.runtime.errors import SettingsError

S = TypeVar("S", bound=BaseSettings)


def _alias(name: str) -> AliasChoices:
    return AliasChoices(name)


def service_config(prefix: str) -> SettingsConfigDict:
    """Model config for a service's settings: its own env prefix, strict about types, frozen."""
    return SettingsConfigDict(env_prefix=prefix, extra="ignore", frozen=True, populate_by_name=False)


def _default_instance() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


class CommonSettings(BaseSettings):
    """What every service needs: bus, Redis, identity, health, logging and telemetry."""

    model_config = SettingsConfigDict(extra="ignore", frozen=True)

    nats_url: str = Field("nats://127.0.0.1:4222", validation_alias=_alias("NATS_URL"))
    # The service's NATS identity (docs/security.md): user and password, or a creds file, or an nkey seed file.
    # None of them set: no authentication (a plain dev server).
    nats_user: str | None = Field(None, validation_alias=_alias("NATS_USER"), min_length=1)
    nats_password: SecretStr | None = Field(None, validation_alias=_alias("NATS_PASSWORD"))
    nats_creds_file: Path | None = Field(None, validation_alias=_alias("NATS_CREDS_FILE"))
    nats_nkey_seed_file: Path | None = Field(None, validation_alias=_alias("NATS_NKEY_SEED_FILE"))
    # Replies come to `<prefix>.<id>`; the server lets an identity subscribe only below `_INBOX.<identity>`.
    # Unset: `_INBOX.<NATS_USER>` with a user, else nats-py's `_INBOX`.
    nats_inbox_prefix: str | None = Field(None, validation_alias=_alias("NATS_INBOX_PREFIX"), min_length=1)
    redis_url: str = Field("redis://127.0.0.1:6379/0", validation_alias=_alias("REDIS_URL"))
    key_prefix: str = Field("btcbot", validation_alias=_alias("BTCBOT_KEY_PREFIX"), min_length=1)
    account: str = Field("main", validation_alias=_alias("BTCBOT_ACCOUNT"), pattern=r"^[A-Za-z0-9_-]+$")
    symbols: Annotated[tuple[str, ...], NoDecode] = Field(
        ("BTCTRY", "ETHTRY"), validation_alias=_alias("BTCBOT_SYMBOLS")
    )
    instance: str = Field(default_factory=_default_instance, validation_alias=_alias("BTCBOT_INSTANCE"))
    health_host: str = Field("0.0.0.0", validation_alias=_alias("BTCBOT_HEALTH_HOST"))
    health_port: int = Field(8080, ge=0, le=65535, validation_alias=_alias("BTCBOT_HEALTH_PORT"))
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field("INFO", validation_alias=_alias("BTCBOT_LOG_LEVEL"))
    log_format: Literal["json", "console"] = Field("json", validation_alias=_alias("BTCBOT_LOG_FORMAT"))
    trace_file: Path | None = Field(None, validation_alias=_alias("BTCBOT_TRACE_FILE"))
    otlp_endpoint: str | None = Field(None, validation_alias=_alias("OTEL_EXPORTER_OTLP_ENDPOINT"))
    shutdown_grace: float = Field(10.0, gt=0, validation_alias=_alias("BTCBOT_SHUTDOWN_GRACE"))
    connect_timeout: float = Field(10.0, gt=0, validation_alias=_alias("BTCBOT_CONNECT_TIMEOUT"))
    # Per-symbol ownership among replicas (DESIGN.md "Scaling and redundancy"); off: every replica owns every symbol.
    partition_leases: bool = Field(True, validation_alias=_alias("BTCBOT_PARTITION_LEASES"))
    partition_ttl: float = Field(5.0, ge=0.3, le=300, validation_alias=_alias("BTCBOT_PARTITION_TTL"))
    # A message dated further than this ahead of the time JetStream stored it is dead-lettered FUTURE_DATED.
    max_clock_skew: float = Field(5.0, gt=0, le=3600, validation_alias=_alias("BTCBOT_MAX_CLOCK_SKEW"))

    @field_validator("symbols", mode="before")
    @classmethod
    def _split_symbols(cls, value: object) -> object:
        if isinstance(value, str):
            value = tuple(s.strip().upper() for s in value.split(",") if s.strip())
        if isinstance(value, tuple | list):
            for symbol in value:
                if not (isinstance(symbol, str) and symbol.isalnum() and symbol.isupper()):
                    raise ValueError(f"not a symbol: {symbol!r} (expected e.g. BTCTRY,ETHTRY)")
            if not value:
                raise ValueError("at least one symbol is needed")
            return tuple(value)
        return value


class ExchangeSettings(BaseSettings):
    """How to reach BTCTurk (or the simulator, the default)."""

    model_config = SettingsConfigDict(extra="ignore", frozen=True)

    btcturk_base_url: str = Field("http://127.0.0.1:8800", validation_alias=_alias("BTCTURK_BASE_URL"))
    btcturk_ws_url: str = Field("ws://127.0.0.1:8800/ws", validation_alias=_alias("BTCTURK_WS_URL"))
    btcturk_api_key: str = Field(..., validation_alias=_alias("BTCTURK_API_KEY"), min_length=1)
    btcturk_api_secret: SecretStr = Field(..., validation_alias=_alias("BTCTURK_API_SECRET"))
    btcturk_timeout: float = Field(5.0, gt=0, validation_alias=_alias("BTCTURK_TIMEOUT"))


def _env_name(model: type[BaseSettings], field_name: str) -> str:
    field = model.model_fields.get(field_name)
    if field is not None and isinstance(field.validation_alias, AliasChoices):
        first = field.validation_alias.choices[0]
        if isinstance(first, str):
            return first
    prefix = str(model.model_config.get("env_prefix", ""))
    return f"{prefix}{field_name}".upper()


def load_settings(cls: type[S]) -> S:
    """Read settings from the environment; a bad or missing one raises SettingsError naming the variable."""
    try:
        return cls()
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            field = str(error["loc"][0]) if error["loc"] else "?"
            problems.append(f"{_env_name(cls, field)}: {error['msg']}")
        raise SettingsError(f"invalid settings for {cls.__name__}: " + "; ".join(problems)) from None
