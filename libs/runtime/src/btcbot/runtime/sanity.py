"""Sanity checks every consumer applies before a handler sees a message: pure, no I/O.

A message's own clock (`ts_ns`) is the sender's word; the time JetStream stored it is the server's. A message
dated further ahead of its storage time than the allowed skew cannot be trusted to order anything (a release
dated an hour ahead would outrank every later kill), so it is refused as FUTURE_DATED. Comparing with the
storage time, not with "now", gives the same answer live, at a restart's rebuild and in a replay.
"""

from __future__ import annotations

FUTURE_DATED = "FUTURE_DATED"


def is_future_dated(ts_ns: int, stored_ns: int, max_skew_ns: int) -> bool:
    """True when a message claims a creation time more than `max_skew_ns` after it was stored."""
    return ts_ns - stored_ns > max_skew_ns
