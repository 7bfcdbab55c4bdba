"""`python -m btcbot.execution`: run the execution service."""

from __future__ import annotations

from btcbot.execution.app import setup
from btcbot.execution.settings import ExecutionSettings, preflight
from btcbot.runtime.service import run_service


def main() -> None:
    """Run the service until SIGTERM."""
    raise SystemExit(run_service("execution", ExecutionSettings, setup, preflight=preflight))


if __name__ == "__main__":
    main()
