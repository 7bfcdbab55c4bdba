"""Execution settings (EXECUTION_* variables) and the arming check that guards live trading."""

from __future__ import annotations

from typing import Literal
from urllib.parse import urlsplit

import httpx
from pydantic import AliasChoices, Field, SecretStr, field_validator

from btcbot.runtime.errors import SettingsError
from btcbot.runtime.settings import CommonSettings, ExchangeSettings, service_config

LIVE_ACK_PHRASE = "I understand this places real orders"
LIVE_HOST = "api.btcturk.com"


class ExecutionSettings(CommonSettings, ExchangeSettings):
    """How execution talks to the exchange and how patient it is."""

    model_config = service_config("EXECUTION_")

    live: bool = False
    live_ack: str = ""
    fill_poll_interval: float = Field(0.5, gt=0)
    # Fills also come from the user WebSocket ("ws"); while it is up, polling slows to this safety-net rate.
    user_feed: Literal["ws", "off"] = "ws"
    fill_poll_interval_ws: float = Field(10.0, gt=0)
    # BTCTurk issues a separate key pair for WebSocket login; unset, the REST pair is used.
    btcturk_ws_api_key: str | None = Field(None, validation_alias=AliasChoices("BTCTURK_WS_API_KEY"), min_length=1)
    btcturk_ws_api_secret: SecretStr | None = Field(None, validation_alias=AliasChoices("BTCTURK_WS_API_SECRET"))
    # On start, fills this far back are re-read (and deduplicated) to cover the time we were down.
    fill_lookback: float = Field(6 * 3600.0, gt=0)
    claim_ttl: float = Field(7 * 24 * 3600.0, gt=0)
    lock_ttl: float = Field(15.0, gt=0)
    lock_wait: float = Field(2.0, ge=0)
    unknown_lookups: int = Field(3, ge=1)
    lookup_delay: float = Field(2.0, gt=0)
    max_order_age: float = Field(120.0, ge=0)
    # The sweep: how often unsettled orders are checked, and how long a record must sit untouched first.
    sweep_interval: float = Field(5.0, gt=0)
    sweep_settle: float = Field(20.0, ge=0)
    # An order at the exchange that no journal record explains: adopt it, cancel it, or only report it.
    unknown_orders: Literal["adopt", "cancel", "report"] = "adopt"
    # Cancel a resting order this many seconds after its command was made (0: never; strategy owns TTLs).
    order_ttl: float = Field(0.0, ge=0)
    # How often the symbols' exchange rules (exchangeinfo) are re-read; every order is checked against them.
    rules_refresh: float = Field(3600.0, gt=0)
    # Kill chain: Alarm(execution, breaker_open) once an exchange breaker stays open this long (s), and
    # Alarm(execution, repeated_failures) after this many failed exchange calls in a row (0: off).
    breaker_alarm_after: float = Field(60.0, gt=0)
    failure_alarm_after: int = Field(5, ge=0)
    # Development only: place SubmitOrders without checking their signature (risk's, BTCBOT_SIGNING_KEYS).
    # Without it, execution refuses to start with no verification key (fail closed); never with EXECUTION_LIVE.
    accept_unsigned: bool = False

    @field_validator("btcturk_ws_url")
    @classmethod
    def _ws_scheme(cls, value: str) -> str:
        if urlsplit(value).scheme not in ("ws", "wss"):
            raise ValueError(f"not a WebSocket URL (ws:// or wss://): {value!r}")
        return value

    def ws_credentials(self) -> tuple[str, str]:
        """The WebSocket login's key pair: BTCTURK_WS_API_KEY/SECRET if set, else the REST pair.

        Raises SettingsError when only one of the two overrides is set.
        """
        key, secret = self.btcturk_ws_api_key, self.btcturk_ws_api_secret
        if key is None and secret is None:
            return self.btcturk_api_key, self.btcturk_api_secret.get_secret_value()
        if key is None or secret is None or not secret.get_secret_value():
            raise SettingsError("BTCTURK_WS_API_KEY and BTCTURK_WS_API_SECRET must be set together")
        return key, secret.get_secret_value()


def order_keys(settings: ExecutionSettings) -> dict[str, bytes] | None:
    """The keys a SubmitOrder must be signed with; None: unsigned orders accepted (EXECUTION_ACCEPT_UNSIGNED).

    Raises SettingsError when there is no key and unsigned orders were not accepted deliberately, or when
    EXECUTION_ACCEPT_UNSIGNED is combined with live trading.
    """
    if settings.accept_unsigned:
        if settings.live:
            raise SettingsError("EXECUTION_ACCEPT_UNSIGNED=true is for development: never with EXECUTION_LIVE=true")
        return None
    keys = settings.verification_keys()
    if not keys:
        raise SettingsError(
            "BTCBOT_SIGNING_KEYS is empty: execution needs risk's verification key(s) to accept orders"
            " (EXECUTION_ACCEPT_UNSIGNED=true accepts unsigned orders, for development only)"
        )
    return keys


def connect_host(url: str) -> str:
    """The host the HTTP client will actually connect to, as httpx parses and IDNA-encodes it.

    Raises SettingsError for a URL with any non-ASCII character (ideographic full stops, homoglyphs: httpx
    folds `api。btcturk。com` into `api.btcturk.com`, so judging the text as written would call a real exchange
    a simulator) or one httpx cannot parse.
    """
    if not url.isascii():
        raise SettingsError(f"BTCTURK_BASE_URL/BTCTURK_WS_URL must be plain ASCII, got {url!r}")
    try:
        host = httpx.URL(url).raw_host.decode("ascii")
    except (httpx.InvalidURL, UnicodeError) as exc:
        raise SettingsError(f"cannot parse the exchange URL {url!r}: {exc}") from None
    return host.lower().rstrip(".")


def is_real_exchange(base_url: str) -> bool:
    """True if the HTTP client would connect to BTCTurk's production API (SettingsError if it cannot be told)."""
    return connect_host(base_url) == LIVE_HOST


def arming(settings: ExecutionSettings) -> str:
    """Say whether orders go to the real exchange ("live") or a simulator ("dry-run").

    Raises SettingsError naming the setting when the combination is not a deliberate, complete choice.
    """
    real = is_real_exchange(settings.btcturk_base_url)
    connect_host(settings.btcturk_ws_url)  # a non-ASCII feed URL is refused the same way
    if not settings.live:
        if real:
            raise SettingsError(
                f"BTCTURK_BASE_URL={settings.btcturk_base_url} is the real exchange but EXECUTION_LIVE is not"
                " true; point it at the simulator or arm live trading deliberately"
            )
        return "dry-run"
    if settings.live_ack != LIVE_ACK_PHRASE:
        raise SettingsError(f'EXECUTION_LIVE=true needs EXECUTION_LIVE_ACK="{LIVE_ACK_PHRASE}"')
    if not settings.btcturk_api_key or not settings.btcturk_api_secret.get_secret_value():
        raise SettingsError("EXECUTION_LIVE=true needs BTCTURK_API_KEY and BTCTURK_API_SECRET")
    if not real or urlsplit(settings.btcturk_base_url).scheme != "https":
        raise SettingsError(
            f"EXECUTION_LIVE=true needs BTCTURK_BASE_URL=https://{LIVE_HOST}, not {settings.btcturk_base_url}"
        )
    return "live"


def preflight(settings: ExecutionSettings) -> None:
    """Every check of the settings as a whole, run before anything connects (SettingsError naming the variable):
    the live arming, the WebSocket key pair, and the keys orders must be signed with."""
    arming(settings)
    settings.ws_credentials()
    order_keys(settings)
