"""The routing bus: wildcard matching, time order, causal order within an instant, duplicate drop."""

from __future__ import annotations

from collections.abc import Sequence

from btcbot.contracts.messages import Alarm, Message
from btcbot.runtime.kernel import Out, RoutingBus, subject_matches


def _alarm(ident: str, ts: int = 0) -> Alarm:
    return Alarm(id=ident, ts_ns=ts, source="t", kind="k", active=True, detail="")


class Echo:
    """Answers `a.*` with `b.<token>` and records what it saw."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, int]] = []

    def handle(self, message: Message, now_ns: int) -> Sequence[Out]:
        self.seen.append((message.id, now_ns))
        if message.id.startswith("a"):
            return [Out("b.x", _alarm("b" + message.id[1:], now_ns))]
        return []


def test_subject_matching_follows_nats_wildcards() -> None:
    assert subject_matches("md.book.*", "md.book.BTCTRY")
    assert not subject_matches("md.book.*", "md.book.BTCTRY.x")
    assert subject_matches("exec.>", "exec.fill.BTCTRY")
    assert not subject_matches("exec.>", "exec")
    assert subject_matches("a.b", "a.b")
    assert not subject_matches("a.b", "a.c")
    assert not subject_matches("a.*.c", "a.b")


def test_deliveries_run_in_time_then_causal_order_and_duplicates_drop() -> None:
    bus = RoutingBus()
    first, second = Echo(), Echo()
    bus.subscribe("a.*", first)
    bus.subscribe(["b.*", "c.>"], second, latency_ns=5)
    bus.feed("a.1", _alarm("a1"), 10)
    bus.feed("a.1", _alarm("a1"), 11)  # same id: dropped
    bus.feed("c.z.z", _alarm("c1"), 12)
    bus.run()
    assert first.seen == [("a1", 10)]
    # b1 is published at 10 (while a1 is handled) and due at 15; c1 is published at 12 and due at 17.
    assert second.seen == [("b1", 15), ("c1", 17)]
    assert bus.duplicates == 1
    assert [s for s, _ in bus.published] == ["a.1", "b.x", "c.z.z"]
