"""The original bot's strategies, each a plug-in of the `btcbot.strategies` entry-point group."""
