"""The service kit: everything a btcbot service needs besides its own logic."""

from btcbot.runtime.bus import Delivery, Handler, Publisher
from btcbot.runtime.errors import DependencyUnavailable, Poison, Retry, SettingsError, StaleToken
from btcbot.runtime.service import Service, run_service
from btcbot.runtime.settings import CommonSettings, ExchangeSettings, load_settings, service_config

__all__ = [
    "CommonSettings",
    "Delivery",
    "DependencyUnavailable",
    "ExchangeSettings",
    "Handler",
    "Poison",
    "Publisher",
    "Retry",
    "Service",
    "SettingsError",
    "StaleToken",
    "load_settings",
    "run_service",
    "service_config",
]
