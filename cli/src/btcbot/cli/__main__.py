"""`python -m btcbot.cli` is the `btcbot` command."""

from btcbot.cli.main import main

main()
