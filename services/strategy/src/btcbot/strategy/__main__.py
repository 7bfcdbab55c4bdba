"""`python -m btcbot.strategy`: turn books into order intents."""

from __future__ import annotations

from btcbot.runtime.service import run_service
from btcbot.strategy.app import setup
from btcbot.strategy.settings import StrategySettings


def main() -> None:
    """Run the strategy service until SIGTERM."""
    raise SystemExit(run_service("strategy", StrategySettings, setup))


if __name__ == "__main__":
    main()
