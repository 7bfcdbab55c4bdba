"""What `btcbot up` checks before it starts or connects to anything: each failure is one UserError line (exit 2).

- `--duration` is a positive number;
- every `--symbols` entry is a pair the simulator offers (the message lists what it offers);
- live trading is not armed (`up` trades only against its own simulator, so EXECUTION_LIVE=true is a mistake
  here, not a request; live trading runs the services themselves: docs/operations.md);
- no service would refuse a setting the user exported (the services inherit `up`'s environment), apart from
  the variables `up` sets for them itself.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from importlib import import_module

from pydantic import TypeAdapter, ValidationError
from pydantic_settings import BaseSettings

from btcbot.cli.errors import UserError
from btcbot.runtime.settings import CommonSettings, ExchangeSettings, bad_settings, env_name

SERVICES = ("ledger", "execution", "risk", "strategy", "marketdata")
# Common and exchange fields `up` sets for every service (infra, simulator, identities, signing keys, health).
_PROVIDED_COMMON = (
    "nats_url",
    "redis_url",
    "key_prefix",
    "symbols",
    "trace_file",
    "health_port",
    "instance",
    "shutdown_grace",
    "signing_keys",
    "signing_key_id",
    "signing_key",
    "nats_user",
    "nats_password",
    "nats_creds_file",
    "nats_inbox_prefix",
)
_PROVIDED_EXCHANGE = ("btcturk_base_url", "btcturk_ws_url", "btcturk_api_key", "btcturk_api_secret")


def provided_by_up() -> frozenset[str]:
    """The variables `up` sets for its services, named as the settings classes name them."""
    names = {env_name(CommonSettings, f) for f in _PROVIDED_COMMON}
    names |= {env_name(ExchangeSettings, f) for f in _PROVIDED_EXCHANGE}
    ledger = settings_class("ledger")
    names |= {env_name(ledger, "database_url"), env_name(ledger, "opening_balances")}
    return frozenset(names)


def settings_class(service: str) -> type[BaseSettings]:
    """The settings class of a service (`btcbot.<service>.settings`, the one CommonSettings subclass there)."""
    module = import_module(f"btcbot.{service}.settings")
    for value in vars(module).values():
        if isinstance(value, type) and issubclass(value, CommonSettings) and value.__module__ == module.__name__:
            return value
    raise LookupError(f"btcbot.{service}.settings defines no settings class")


def check_duration(duration: float | None) -> None:
    """`--duration` must be a positive, finite number of seconds."""
    if duration is not None and not 0 < duration < float("inf"):
        raise UserError(f"--duration {duration:g}: must be a positive number of seconds")


def check_symbols(symbols: tuple[str, ...], offered: Collection[str]) -> None:
    """Every symbol must be one the simulator offers; the message says which are not and lists the offer."""
    if not symbols:
        raise UserError(f"--symbols is empty; the simulator offers {', '.join(sorted(offered))}")
    unknown = [s for s in symbols if s not in offered]
    if unknown:
        raise UserError(
            f"--symbols {','.join(unknown)}: not offered by the simulator; it offers {', '.join(sorted(offered))}"
        )


def offered_symbols() -> frozenset[str]:
    """The pairs the simulator can list (its known exchange rules)."""
    from btcbot.sim.config import KNOWN_SYMBOLS

    return frozenset(KNOWN_SYMBOLS)


def check_not_live(env: Mapping[str, str]) -> None:
    """Refuse EXECUTION_LIVE=true (and an unreadable value of it): `up` never trades on the real exchange."""
    variable = env_name(settings_class("execution"), "live")
    raw = env.get(variable)
    if raw is None:
        return
    try:
        live = TypeAdapter(bool).validate_python(raw)
    except ValidationError:
        raise UserError(f"{variable}={raw!r}: not a boolean (true/false)") from None
    if live:
        raise UserError(
            f"{variable}={raw}: `btcbot up` trades only against its own simulator; unset {variable}"
            " (live trading runs the services themselves, see docs/operations.md)"
        )


def check_service_settings(provided: Collection[str]) -> None:
    """Every service's settings as the environment gives them, apart from what `up` provides (`provided`)."""
    problems: list[str] = []
    for service in SERVICES:
        problems += [p for p in bad_settings(settings_class(service), provided) if p not in problems]
    if problems:
        raise UserError("invalid settings: " + "; ".join(problems))


def check_up(duration: float | None, symbols: tuple[str, ...], env: Mapping[str, str]) -> None:
    """Everything above, cheapest first."""
    check_duration(duration)
    check_symbols(symbols, offered_symbols())
    check_not_live(env)
    check_service_settings(provided_by_up())
