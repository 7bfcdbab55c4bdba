"""`python -m btcbot.cli` is the `btcbot` command."""

from btcbot.cli.main import main

if __name__ == "__main__":  # importable without running (the image build imports every entry module)
    main()
