"""One engine for live, replay and backtest: a pure `handle(message, now_ns) -> outputs`, and a routing bus that
runs engines in memory with the same code the services run.

An engine (a "kernel") owns no I/O: it takes a decoded contract message and the time it is decided at, and
returns what to publish, each output with its subject. Live, the kit's adapter decodes, calls the kernel,
publishes and acks; in replay and backtest, a `RoutingBus` delivers each output to every subscriber whose subject
pattern matches (NATS wildcards), in time order, so a multi-hop flow (strategy -> risk -> venue -> ledger) runs
in one process, deterministically.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from btcbot.contracts.messages import Message


@dataclass(frozen=True, slots=True)
class Out:
    """One message an engine wants published, and where."""

    subject: str
    message: Message


class Kernel(Protocol):
    """A pure engine: state changes only through `handle`, the clock is an argument, outputs are returned."""

    def handle(self, message: Message, now_ns: int) -> Sequence[Out]:
        """Take one input decided at `now_ns`; return the messages to publish (possibly none)."""
        ...


def subject_matches(pattern: str, subject: str) -> bool:
    """NATS subject matching: `*` is one token, a final `>` is one or more tokens."""
    want = pattern.split(".")
    have = subject.split(".")
    for i, part in enumerate(want):
        if part == ">":
            return i < len(have)
        if i >= len(have) or (part != "*" and part != have[i]):
            return False
    return len(want) == len(have)


Tap = Callable[[str, Message, int], None]


@dataclass(order=True)
class _Scheduled:
    at_ns: int
    order: int
    subject: str = field(compare=False)
    message: Message = field(compare=False)
    target: int = field(compare=False)  # index of the subscription, or -1 for "every match"


@dataclass(frozen=True)
class _Subscription:
    patterns: tuple[str, ...]
    kernel: Kernel
    latency_ns: int
    name: str


class RoutingBus:
    """A deterministic in-memory bus: a publish reaches every subscriber whose pattern matches its subject.

    Deliveries happen in (time, publish order): an output published while handling a message at `t` reaches a
    subscriber at `t + latency` of that subscription (0 by default, so a chain of hops runs at one instant and in
    causal order). A message id seen before is dropped, as JetStream's duplicate window does. `taps` see every
    publish (subject, message, time) in order: the recording of a replay or backtest.
    """

    def __init__(self) -> None:
        self._subs: list[_Subscription] = []
        self._queue: list[_Scheduled] = []
        self._order = 0
        self._seen: set[str] = set()
        self._taps: list[Tap] = []
        self.published: list[tuple[str, Message]] = []
        self.duplicates = 0
        self.delivered = 0
        self.now_ns = 0

    def subscribe(self, patterns: str | Iterable[str], kernel: Kernel, *, latency_ns: int = 0, name: str = "") -> None:
        """Deliver messages whose subject matches one of `patterns` to `kernel`, `latency_ns` after their publish."""
        wanted = (patterns,) if isinstance(patterns, str) else tuple(patterns)
        self._subs.append(_Subscription(wanted, kernel, latency_ns, name or type(kernel).__name__))

    def tap(self, tap: Tap) -> None:
        """Call `tap(subject, message, now_ns)` for every message published (after duplicates are dropped)."""
        self._taps.append(tap)

    def publish(self, subject: str, message: Message, at_ns: int) -> bool:
        """Publish at `at_ns`; False when the id was published before (dropped)."""
        if message.id in self._seen:
            self.duplicates += 1
            return False
        self._seen.add(message.id)
        self.published.append((subject, message))
        for tap in self._taps:
            tap(subject, message, at_ns)
        for index, sub in enumerate(self._subs):
            if any(subject_matches(p, subject) for p in sub.patterns):
                self._order += 1
                heapq.heappush(self._queue, _Scheduled(at_ns + sub.latency_ns, self._order, subject, message, index))
        return True

    def feed(self, subject: str, message: Message, at_ns: int) -> None:
        """An input from outside (a recorded book): published at `at_ns`, after everything due before it ran."""
        self.run(until_ns=at_ns - 1)
        self.publish(subject, message, at_ns)

    def pending(self) -> int:
        """Deliveries scheduled and not yet made."""
        return len(self._queue)

    def run(self, until_ns: int | None = None) -> int:
        """Make every delivery due at or before `until_ns` (all when None), in order; returns how many."""
        made = 0
        while self._queue and (until_ns is None or self._queue[0].at_ns <= until_ns):
            item = heapq.heappop(self._queue)
            self.now_ns = max(self.now_ns, item.at_ns)
            sub = self._subs[item.target]
            for out in sub.kernel.handle(item.message, item.at_ns):
                self.publish(out.subject, out.message, item.at_ns)
            made += 1
        self.delivered += made
        return made
