"""Settings read once from the environment: a small common base plus one model per service.

Common fields come from unprefixed variables (NATS_URL, REDIS_URL, BTCBOT_*); each service's own fields use
its prefix (RISK_MAX_ORDER_NOTIONAL). Secrets are SecretStr, masked in repr and logs.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Collection
from pathlib import Path
from typing import Annotated, Literal, TypeVar

from pydantic import AliasChoices, Field, SecretStr, ValidationError, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from btcbot.contracts.signing import Signer, check_key_id, decode_secret, parse_keys
from btcbot.runtime import redact
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
    # Servers that keep each stream: 1 on a single NATS server, 3 in a three-node cluster (JetStream R3).
    # Unset: existing streams keep theirs, new ones get 1 (so a process without it never shrinks a cluster's).
    stream_replicas: int | None = Field(None, ge=1, le=5, validation_alias=_alias("BTCBOT_STREAM_REPLICAS"))
    redis_url: str = Field("redis://127.0.0.1:6379/0", validation_alias=_alias("REDIS_URL"))
    # Redis behind Sentinel (docs/operations.md "Redis failover"): "host:port,host:port" and the master's name,
    # set together; then REDIS_URL gives only the database number and credentials, Sentinel gives the address.
    redis_sentinels: Annotated[tuple[tuple[str, int], ...], NoDecode] = Field(
        (), validation_alias=_alias("REDIS_SENTINELS")
    )
    redis_sentinel_master: str = Field("", validation_alias=_alias("REDIS_SENTINEL_MASTER"))
    # Replicas that must acknowledge each claim and fencing token before an order is placed (WAIT). Unset: 1
    # with Sentinel, 0 on a single server (dev). The wait is bounded by REDIS_REPLICA_ACK_TIMEOUT seconds.
    redis_min_replicas_ack: int | None = Field(None, ge=0, le=10, validation_alias=_alias("REDIS_MIN_REPLICAS_ACK"))
    redis_replica_ack_timeout: float = Field(1.0, ge=0.01, le=1.5, validation_alias=_alias("REDIS_REPLICA_ACK_TIMEOUT"))
    key_prefix: str = Field("btcbot", validation_alias=_alias("BTCBOT_KEY_PREFIX"), min_length=1)
    account: str = Field("main", validation_alias=_alias("BTCBOT_ACCOUNT"), pattern=r"^[A-Za-z0-9_-]+$")
    symbols: Annotated[tuple[str, ...], NoDecode] = Field(
        ("BTCTRY", "ETHTRY"), validation_alias=_alias("BTCBOT_SYMBOLS")
    )
    instance: str = Field(default_factory=_default_instance, validation_alias=_alias("BTCBOT_INSTANCE"))
    # Loopback outside a cluster: the probes are local. The Kubernetes manifests set 0.0.0.0 explicitly.
    health_host: str = Field("127.0.0.1", validation_alias=_alias("BTCBOT_HEALTH_HOST"))
    health_port: int = Field(8080, ge=0, le=65535, validation_alias=_alias("BTCBOT_HEALTH_PORT"))
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field("INFO", validation_alias=_alias("BTCBOT_LOG_LEVEL"))
    log_format: Literal["json", "console"] = Field("json", validation_alias=_alias("BTCBOT_LOG_FORMAT"))
    trace_file: Path | None = Field(None, validation_alias=_alias("BTCBOT_TRACE_FILE"))
    otlp_endpoint: str | None = Field(None, validation_alias=_alias("OTEL_EXPORTER_OTLP_ENDPOINT"))
    # How often the kit polls its durables' pending / ack-pending and dependency states into /metrics.
    metrics_poll_interval: float = Field(5.0, gt=0, le=300, validation_alias=_alias("BTCBOT_METRICS_POLL_INTERVAL"))
    shutdown_grace: float = Field(10.0, gt=0, validation_alias=_alias("BTCBOT_SHUTDOWN_GRACE"))
    connect_timeout: float = Field(10.0, gt=0, validation_alias=_alias("BTCBOT_CONNECT_TIMEOUT"))
    # Per-symbol ownership among replicas (DESIGN.md "Scaling and redundancy"); off: every replica owns every symbol.
    partition_leases: bool = Field(True, validation_alias=_alias("BTCBOT_PARTITION_LEASES"))
    partition_ttl: float = Field(5.0, ge=0.3, le=300, validation_alias=_alias("BTCBOT_PARTITION_TTL"))
    # A message dated further than this ahead of the time JetStream stored it is dead-lettered FUTURE_DATED.
    max_clock_skew: float = Field(5.0, gt=0, le=3600, validation_alias=_alias("BTCBOT_MAX_CLOCK_SKEW"))
    # Message signatures (docs/security.md "Signatures and key rotation"): the keys this process accepts
    # ("kid:base64,kid2:base64"; several at once while keys rotate), and the one it signs with, if it signs.
    signing_keys: SecretStr = Field(SecretStr(""), validation_alias=_alias("BTCBOT_SIGNING_KEYS"))
    signing_key_id: str = Field("", validation_alias=_alias("BTCBOT_SIGNING_KEY_ID"))
    signing_key: SecretStr = Field(SecretStr(""), validation_alias=_alias("BTCBOT_SIGNING_KEY"), validate_default=True)

    @field_validator("signing_keys")
    @classmethod
    def _check_signing_keys(cls, value: SecretStr) -> SecretStr:
        parse_keys(value.get_secret_value())
        return value

    @field_validator("signing_key_id")
    @classmethod
    def _check_signing_key_id(cls, value: str) -> str:
        return check_key_id(value) if value else value

    @field_validator("signing_key")
    @classmethod
    def _check_signing_key(cls, value: SecretStr, info: ValidationInfo) -> SecretStr:
        key_id = info.data.get("signing_key_id", "")
        if bool(value.get_secret_value()) != bool(key_id):
            raise ValueError("BTCBOT_SIGNING_KEY and BTCBOT_SIGNING_KEY_ID must be set together")
        if value.get_secret_value():
            secret = decode_secret(value.get_secret_value())
            listed = info.data.get("signing_keys")
            if isinstance(listed, SecretStr) and parse_keys(listed.get_secret_value()).get(key_id, secret) != secret:
                raise ValueError(f"key id {key_id!r} is also in BTCBOT_SIGNING_KEYS with another secret")
        return value

    def signer(self) -> Signer | None:
        """The key this process signs with (None: it signs nothing)."""
        if not self.signing_key_id:
            return None
        return Signer(self.signing_key_id, decode_secret(self.signing_key.get_secret_value()))

    def verification_keys(self) -> dict[str, bytes]:
        """The keys whose signatures this process accepts: BTCBOT_SIGNING_KEYS and its own signing key."""
        keys = parse_keys(self.signing_keys.get_secret_value())
        signer = self.signer()
        return {**keys, **signer.keys()} if signer is not None else keys

    @field_validator("redis_sentinels", mode="before")
    @classmethod
    def _split_sentinels(cls, value: object) -> object:
        return parse_sentinels(value) if isinstance(value, str) else value

    @field_validator("redis_sentinel_master")
    @classmethod
    def _check_sentinel_master(cls, value: str, info: ValidationInfo) -> str:
        sentinels = info.data.get("redis_sentinels", ())
        if bool(value) != bool(sentinels):
            raise ValueError("REDIS_SENTINELS and REDIS_SENTINEL_MASTER must be set together")
        return value

    def replicas_to_ack(self) -> int:
        """How many Redis replicas must acknowledge a claim or token write (REDIS_MIN_REPLICAS_ACK, or its default)."""
        if self.redis_min_replicas_ack is not None:
            return self.redis_min_replicas_ack
        return 1 if self.redis_sentinels else 0

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


def parse_sentinels(value: str) -> tuple[tuple[str, int], ...]:
    """ "host:port,host:port" as (host, port) pairs; ValueError naming the bad entry."""
    found = []
    for entry in (part.strip() for part in value.split(",")):
        if not entry:
            continue
        host, sep, port = entry.rpartition(":")
        if not (sep and host and port.isdigit() and 0 < int(port) < 65536):
            raise ValueError(f"not host:port: {entry!r} (expected e.g. sentinel-0:26379,sentinel-1:26379)")
        found.append((host.strip("[]"), int(port)))
    return tuple(found)


def env_name(model: type[BaseSettings], field_name: str) -> str:
    """The environment variable a user sets for one settings field: its alias, else the model's prefix + name.

    `field_name` may be the field's name or one of its aliases (pydantic reports errors by alias), so
    `env_name(ExecutionSettings, "BTCTURK_API_KEY")` is `BTCTURK_API_KEY`, never `EXECUTION_BTCTURK_API_KEY`.
    """
    for name, field in model.model_fields.items():
        aliases = _aliases(field.validation_alias)
        if field_name == name or field_name in aliases:
            if aliases:
                return aliases[0]
            prefix = str(model.model_config.get("env_prefix", ""))
            return f"{prefix}{name}".upper()
    raise KeyError(f"{model.__name__} has no setting {field_name!r}")


def _aliases(alias: object) -> list[str]:
    if isinstance(alias, str):
        return [alias]
    if isinstance(alias, AliasChoices):
        return [choice for choice in alias.choices if isinstance(choice, str)]
    return []


def _error_name(model: type[BaseSettings], loc: tuple[int | str, ...]) -> str:
    """The variable a validation error is about (a model-level error has no field: the model's name)."""
    if not loc:
        return model.__name__
    try:
        return env_name(model, str(loc[0]))
    except KeyError:
        return str(loc[0])


def register_secrets_of(value: object) -> None:
    """Register every secret a settings object holds (SecretStr fields, URL credentials) for redaction."""
    if isinstance(value, SecretStr):
        redact.register_secret(value.get_secret_value())
    elif isinstance(value, str):
        redact.register_url(value)
    elif isinstance(value, BaseSettings):
        for name in type(value).model_fields:
            register_secrets_of(getattr(value, name))
    elif isinstance(value, dict):
        for item in value.values():
            register_secrets_of(item)
    elif isinstance(value, tuple | list | set | frozenset):
        for item in value:
            register_secrets_of(item)


def load_settings(cls: type[S]) -> S:
    """Read settings from the environment; a bad or missing one raises SettingsError naming the variable.

    Every secret the settings hold is registered with `redact`, so no log line or error can print it.
    """
    redact.register_env(os.environ)
    try:
        settings = cls()
    except ValidationError as exc:
        problems = [f"{name}: {msg}" for name, _kind, msg in _problems(cls, exc)]
        raise SettingsError("invalid settings: " + "; ".join(problems)) from None
    register_secrets_of(settings)
    return settings


def bad_settings(cls: type[BaseSettings], provided: Collection[str] = ()) -> list[str]:
    """What is wrong with the environment for `cls`, as "VARIABLE: why", without building anything.

    For a launcher that will set some variables itself (`btcbot up`): a missing variable is not reported,
    nor one named in `provided` (the launcher's value replaces the user's).
    """
    try:
        cls()
    except ValidationError as exc:
        return [
            f"{name}: {msg}" for name, kind, msg in _problems(cls, exc) if kind != "missing" and name not in provided
        ]
    return []


def _problems(cls: type[BaseSettings], exc: ValidationError) -> list[tuple[str, str, str]]:
    return [(_error_name(cls, error["loc"]), error["type"], error["msg"]) for error in exc.errors()]
