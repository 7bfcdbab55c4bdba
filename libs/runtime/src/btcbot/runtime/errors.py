"""Errors that decide what happens to a message, and start-up errors.

Exception
├── Retry                      transient: nak with delay, redelivered; dead-lettered after the last delivery
│   └── DependencyUnavailable  Redis, Postgres or the exchange cannot be reached; the service reports not ready
├── Poison                     the message can never succeed: dead-lettered at once and terminated
├── StaleToken                 a fencing token older than the latest reached the point of effect
└── SettingsError              a missing or invalid setting; start-up stops with the variable named
"""

from __future__ import annotations


class Retry(Exception):  # noqa: N818  (a verb reads better at raise sites: `raise Retry(...)`)
    """Try this message again later (nak with `delay` seconds, or the consumer's backoff)."""

    def __init__(self, reason: str, delay: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.delay = delay


class DependencyUnavailable(Retry):
    """A dependency (Redis, Postgres, exchange) did not answer; nothing was done, try later."""


class Poison(Exception):  # noqa: N818
    """This message can never be processed; park it in the dead-letter stream with the reason."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class StaleToken(Exception):  # noqa: N818
    """A lease's fencing token is older than the latest issued: the holder lost the lock."""


class SettingsError(Exception):
    """A setting is missing or invalid; the message names the environment variable."""
