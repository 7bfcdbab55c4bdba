"""Named sets of settings for `btcbot up --profile NAME`, kept in one place: settings name -> value.

Names are the environment variables the services read (`STRATEGY_*`, `RISK_*`, ...), passed to every service;
`SIM_<OPTION>` names are the simulator's command-line options (`SIM_TICK_INTERVAL` -> `--tick-interval`). A variable
set in `up`'s own environment wins over the profile, so one setting can be tried without editing this table.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

PROFILES: Mapping[str, Mapping[str, str]] = {
    # `make demo`: a minute that trades visibly. profit_v1 buys at the ask when flat and sells at +15 bps over its
    # average cost (the simulator's taker fee with tax is ~10.6 bps a side, and the average cost already holds the
    # buy's) or at -30 bps; 1 s between intents instead of 2 s, and risk's cooldown per symbol and side is 1 s
    # instead of 60 s (which let one buy and one sell through per symbol and minute: the quiet demo of issue 10).
    # The simulator ticks every 0.1 s instead of 0.2 s, and its demo market profile moves prices 15 times as much as
    # its realistic one (BTCTRY about 1 % a minute), so the market moves those bps within seconds.
    "demo": {
        "SIM_PROFILE": "demo",
        "SIM_TICK_INTERVAL": "0.1",
        "STRATEGY_ORDER_NOTIONAL": "500",
        "STRATEGY_TAKE_PROFIT_BPS": "15",
        "STRATEGY_STOP_LOSS_BPS": "30",
        "STRATEGY_COOLDOWN": "1",
        "RISK_ORDER_COOLDOWN": "1",
    },
}

_SIM_PREFIX = "SIM_"
# Simulator settings that are secrets or wiring `up` sets itself, never a profile's business.
_SIM_RESERVED = frozenset({"SIM_API_KEY", "SIM_API_SECRET", "SIM_ADMIN_TOKEN"})


@dataclass(frozen=True)
class Applied:
    """A profile resolved against the environment: what the services get and the simulator's extra options."""

    name: str | None
    service_env: dict[str, str]
    sim_args: tuple[str, ...]


def apply_profile(name: str | None, env: Mapping[str, str]) -> Applied:
    """The settings of profile `name` that `env` does not set itself; ValueError naming an unknown profile."""
    if name is None:
        return Applied(None, {}, ())
    settings = PROFILES.get(name)
    if settings is None:
        raise ValueError(f"unknown profile {name!r} (--profile): one of {', '.join(sorted(PROFILES))}")
    service_env: dict[str, str] = {}
    sim_args: list[str] = []
    for key, value in settings.items():
        given = env.get(key)
        chosen = value if given is None or given == "" else given
        if key.startswith(_SIM_PREFIX) and key not in _SIM_RESERVED:
            sim_args += ["--" + key.removeprefix(_SIM_PREFIX).lower().replace("_", "-"), chosen]
        else:
            service_env[key] = chosen
    return Applied(name, service_env, tuple(sim_args))
