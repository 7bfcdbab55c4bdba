"""`python -m btcbot.marketdata`: poll exchange books and trades onto the bus."""

from __future__ import annotations

from btcbot.marketdata.app import setup
from btcbot.marketdata.settings import MarketdataSettings
from btcbot.runtime.service import run_service


def main() -> None:
    """Run the market data service until SIGTERM."""
    raise SystemExit(run_service("marketdata", MarketdataSettings, setup))


if __name__ == "__main__":
    main()
