"""`python -m btcbot.risk`: approve or deny order intents."""

from __future__ import annotations

from btcbot.risk.app import setup
from btcbot.risk.settings import RiskSettings, preflight
from btcbot.runtime.service import run_service


def main() -> None:
    """Run the risk service until SIGTERM."""
    raise SystemExit(run_service("risk", RiskSettings, setup, preflight=preflight))


if __name__ == "__main__":
    main()
