"""The `btcbot` subcommands: one small module each, registered in one table.

Each module defines `HELP` (one line for `btcbot --help`), `add_arguments(parser)` and `run(args) -> int`.
A module imports what it runs only inside `run`, so `btcbot <command>` loads only its own code.
"""

from __future__ import annotations

from types import ModuleType

from btcbot.cli.commands import (
    alert_relay,
    canary,
    control,
    dlq,
    doctor,
    down,
    ledger,
    migrate,
    nats_config,
    replay,
    report,
    service,
    sim,
    status,
    up,
    verify,
)

# One table: command name -> its module, in the order `btcbot --help` lists them.
COMMANDS: dict[str, ModuleType] = {
    "up": up,
    "status": status,
    "down": down,
    "sim": sim,
    "service": service,
    "doctor": doctor,
    "canary": canary,
    "nats-config": nats_config,
    "migrate": migrate,
    "report": report,
    "verify": verify,
    "control": control,
    "ledger": ledger,
    "alert-relay": alert_relay,
    "dlq": dlq,
    "replay": replay,
}
