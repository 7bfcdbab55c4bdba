"""Find strategies through the `btcbot.strategies` entry points and configure them from the environment.

Per strategy NAME (lower case in STRATEGY_STRATEGIES, upper case in variables):
- its parameters: `<prefix><PARAM>`, the prefix being `STRATEGY_<NAME>__` unless the plug-in sets its own
  (profit_v1 keeps the flat `STRATEGY_<PARAM>` names it always had);
- its allocation: `STRATEGY_<NAME>__ENABLED` (true), `STRATEGY_<NAME>__WEIGHT` (1: its share of free quote
  is weight / sum of the enabled weights), `STRATEGY_<NAME>__CAPITAL` (unset: no cap on the quote it holds).
A bad value stops start-up with one line naming the parameter and its variable.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from importlib.metadata import entry_points

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from btcbot.runtime.errors import SettingsError
from btcbot.strategy.api import ENTRY_POINT_GROUP, Params, Plugin, Strategy


class Allocation(BaseModel):
    """How much of the account one strategy may use."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    enabled: bool = True
    weight: Decimal = Field(Decimal(1), gt=0, allow_inf_nan=False)
    capital: Decimal | None = Field(None, gt=0, allow_inf_nan=False)


@dataclass(frozen=True)
class Configured:
    """One strategy ready to run: its plug-in, validated parameters, the built strategy and its allocation."""

    name: str
    plugin: Plugin
    params: Params
    strategy: Strategy
    allocation: Allocation


def discover() -> dict[str, Plugin]:
    """Every installed strategy plug-in by name (an entry point that is not a Plugin is an error)."""
    found: dict[str, Plugin] = {}
    for point in entry_points(group=ENTRY_POINT_GROUP):
        plugin = point.load()
        if not isinstance(plugin, Plugin):
            raise SettingsError(f"entry point {point.name} = {point.value} in {ENTRY_POINT_GROUP} is not a Plugin")
        if plugin.name != point.name:
            raise SettingsError(f"entry point {point.name} names a plugin called {plugin.name}")
        found[plugin.name] = plugin
    return found


def _problem(exc: ValidationError, name: str, variables: Mapping[str, str]) -> SettingsError:
    error = exc.errors()[0]
    field = str(error["loc"][0]) if error["loc"] else "?"
    variable = variables.get(field, f"{field} (no variable)")
    return SettingsError(f"{variable}: {error['msg']} (parameter {field} of strategy {name})")


def _read(model: type[BaseModel], prefix: str, environ: Mapping[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    values: dict[str, str] = {}
    variables: dict[str, str] = {}
    for field in model.model_fields:
        variable = f"{prefix}{field.upper()}"
        variables[field] = variable
        if variable in environ:
            values[field] = environ[variable]
    return values, variables


def configure_one(plugin: Plugin, environ: Mapping[str, str], symbols: tuple[str, ...]) -> Configured:
    """Validate one plug-in's parameters and allocation from `environ` and build it."""
    own = f"STRATEGY_{plugin.name.upper()}__"
    values, variables = _read(plugin.params, plugin.prefix(), environ)
    try:
        params = plugin.params.model_validate(values)
    except ValidationError as exc:
        raise _problem(exc, plugin.name, variables) from None
    shares, share_variables = _read(Allocation, own, environ)
    try:
        allocation = Allocation.model_validate(shares)
    except ValidationError as exc:
        raise _problem(exc, plugin.name, share_variables) from None
    known = set(share_variables.values()) | set(variables.values())
    for variable in environ:
        if variable.startswith(own) and variable not in known:
            listed = ", ".join(sorted(known)) or "none"
            raise SettingsError(f"{variable}: strategy {plugin.name} has no such parameter (known: {listed})")
    try:
        strategy = plugin.build(params, symbols)
    except ValueError as exc:  # parameters that are valid alone but do not fit the service (e.g. its symbols)
        raise SettingsError(f"{plugin.prefix()}*: {exc} (strategy {plugin.name})") from None
    return Configured(plugin.name, plugin, params, strategy, allocation)


def variables(plugins: Mapping[str, Plugin] | None = None) -> list[str]:
    """Every environment variable the installed strategies read (parameters and allocation)."""
    out: list[str] = []
    for plugin in (discover() if plugins is None else plugins).values():
        own = f"STRATEGY_{plugin.name.upper()}__"
        out += [f"{plugin.prefix()}{field.upper()}" for field in plugin.params.model_fields]
        out += [f"{own}{field.upper()}" for field in Allocation.model_fields]
    return out


def configure(
    names: Iterable[str],
    environ: Mapping[str, str],
    symbols: tuple[str, ...],
    plugins: Mapping[str, Plugin] | None = None,
) -> list[Configured]:
    """The enabled strategies of `names` (STRATEGY_STRATEGIES), configured; at least one must remain."""
    available = discover() if plugins is None else plugins
    out: list[Configured] = []
    for name in names:
        plugin = available.get(name)
        if plugin is None:
            installed = ", ".join(sorted(available)) or "none"
            raise SettingsError(f"STRATEGY_STRATEGIES: unknown strategy {name!r} (installed: {installed})")
        configured = configure_one(plugin, environ, symbols)
        if configured.allocation.enabled:
            out.append(configured)
    if not out:
        raise SettingsError("STRATEGY_STRATEGIES: every strategy listed is disabled (STRATEGY_<NAME>__ENABLED)")
    return out
