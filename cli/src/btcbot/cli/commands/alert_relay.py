"""`btcbot alert-relay`: Alertmanager's webhook to Telegram and JSON URLs."""

from __future__ import annotations

import argparse
import asyncio
import os

HELP = "relay Alertmanager's webhook to Telegram and generic JSON URLs (ALERT_RELAY_*)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Configured by ALERT_RELAY_* variables."""


def run(args: argparse.Namespace) -> int:
    """Serve until stopped."""
    from btcbot.cli.alertrelay import run_alert_relay

    return asyncio.run(run_alert_relay(os.environ))
