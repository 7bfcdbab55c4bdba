"""`python -m btcbot.ledger`: run the ledger service."""

from __future__ import annotations

from btcbot.ledger.app import setup
from btcbot.ledger.settings import LedgerSettings
from btcbot.runtime.service import run_service


def main() -> None:
    """Run the ledger until SIGTERM."""
    raise SystemExit(run_service("ledger", LedgerSettings, setup))


if __name__ == "__main__":
    main()
