"""JetStream streams and durable consumers: names, subjects, limits, redelivery policy.

Provisioning (create or update at every start) lives in the runtime; the definitions live here so that
every service, the CLI and the tests agree on them.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

DAY = 24 * 3600.0
# Seconds without a pull after which the server removes a fan-out durable (was an hour: docs/operations.md "Scaling").
FANOUT_IDLE_CLEANUP = 120.0


@dataclass(frozen=True)
class StreamSpec:
    """One stream: its subjects and retention limits (durations in seconds)."""

    name: str
    subjects: tuple[str, ...]
    description: str
    max_age: float = 0.0
    max_msgs_per_subject: int = -1
    duplicate_window: float = 120.0


@dataclass(frozen=True)
class ConsumerSpec:
    """A durable pull consumer with explicit ack, bounded redelivery and backoff.

    `backoff[i]` is the delay before delivery i+2 after a failure (the last value repeats); `ack_wait` is how
    long a delivery may stay unacknowledged (a crashed replica's messages come back after it).
    """

    durable: str
    stream: str
    filter_subjects: tuple[str, ...]
    max_deliver: int = 5
    ack_wait: float = 30.0
    backoff: tuple[float, ...] = (0.5, 2.0, 5.0, 15.0)
    max_ack_pending: int = 1000
    deliver: str = "all"  # all | new | last_per_subject
    description: str = ""
    # Fan-out: every replica gets its own copy of the stream (durable `<name>-<instance>`, removed by the
    # server after `idle_cleanup` seconds without a client); otherwise replicas share the durable and split the work.
    # The instance is the pod name, so every rollout leaves the old pods' durables behind: they must go soon (their
    # pending count is what lag-based scaling reads). A live replica pulls every second, and one whose durable was
    # removed anyway (an outage longer than this) makes it again (runtime consumer loop).
    fanout: bool = False
    idle_cleanup: float = FANOUT_IDLE_CLEANUP
    extra: dict[str, str] = field(default_factory=dict)

    def for_instance(self, instance: str) -> ConsumerSpec:
        """The spec one replica binds: itself for shared consumers, a per-replica durable for fan-out ones."""
        if not self.fanout:
            return self
        token = "".join(c if c.isalnum() or c in "-_" else "_" for c in instance)
        return replace(self, durable=f"{self.durable}-{token}")


MARKET = StreamSpec("MARKET", ("md.book.*", "md.trade.*"), "order books and trades; replay source", max_age=7 * DAY)
INTENTS = StreamSpec("INTENTS", ("intent.*",), "every strategy decision, for audit", max_age=30 * DAY)
ORDERS = StreamSpec(
    "ORDERS",
    ("order.submit.*", "order.cancel.*", "order.denied.*"),
    "execution input and risk decisions",
    max_age=30 * DAY,
)
EXECUTION = StreamSpec("EXECUTION", ("exec.*.*",), "what happened at the exchange", max_age=365 * DAY)
PORTFOLIO = StreamSpec("PORTFOLIO", ("portfolio.*",), "latest ledger state per account", max_msgs_per_subject=1)
# History per subject, so an undecodable last message can be seen for what it is and the state before it audited;
# the state is always the LAST message per subject in stream order (never the sender's clock).
CONTROL = StreamSpec(
    "CONTROL",
    ("control.>",),
    "trading mode, kill switch, automatic mode, alarms, halt resumes",
    max_msgs_per_subject=100,
)
# Every selection is kept: a restarted selector resumes from the last one, and the history explains past choices.
UNIVERSE = StreamSpec("UNIVERSE", ("universe.>",), "the dynamic universe's selections, with scores", max_age=365 * DAY)
DLQ = StreamSpec("DLQ", ("dlq.>",), "messages a service could not process, with the reason", max_age=90 * DAY)

ALL_STREAMS: tuple[StreamSpec, ...] = (MARKET, INTENTS, ORDERS, EXECUTION, PORTFOLIO, CONTROL, UNIVERSE, DLQ)

# Inputs of each service. A service may have several consumers; replicas of a service share each durable.
STRATEGY_BOOKS = ConsumerSpec(
    "strategy-books",
    MARKET.name,
    ("md.book.*",),
    deliver="new",
    max_deliver=3,
    backoff=(0.2, 1.0),
    description="books the strategy decides on (the replica owning the symbol's lease acts)",
    fanout=True,
)
STRATEGY_EXECUTION = ConsumerSpec(
    "strategy-execution",
    EXECUTION.name,
    ("exec.*.*",),
    deliver="new",
    description="order outcomes, so a strategy knows what it has in flight (a new owner reads history first)",
    fanout=True,
)
STRATEGY_DENIED = ConsumerSpec(
    "strategy-denied",
    ORDERS.name,
    ("order.denied.*",),
    deliver="new",
    description="risk's refusals, so a denied intent frees its symbol",
    fanout=True,
)
STRATEGY_PORTFOLIO = ConsumerSpec(
    "strategy-portfolio",
    PORTFOLIO.name,
    ("portfolio.*",),
    deliver="last_per_subject",
    description="latest positions and cost basis",
    fanout=True,
)
RISK_INTENTS = ConsumerSpec("risk-intents", INTENTS.name, ("intent.*",), description="intents to approve or deny")
RISK_CONTROL = ConsumerSpec(
    "risk-control",
    CONTROL.name,
    ("control.mode", "control.kill", "control.auto", "control.alarm.>"),
    deliver="last_per_subject",
    description="mode and kill switch",
    fanout=True,
)
RISK_PORTFOLIO = ConsumerSpec(
    "risk-portfolio",
    PORTFOLIO.name,
    ("portfolio.*",),
    deliver="last_per_subject",
    description="exposure for portfolio limits",
    fanout=True,
)
RISK_BOOKS = ConsumerSpec(
    "risk-books",
    MARKET.name,
    ("md.book.*",),
    deliver="new",
    max_deliver=2,
    backoff=(0.5,),
    description="book freshness per symbol: risk refuses to trade on a stale market",
    fanout=True,
)
RISK_EXECUTION = ConsumerSpec(
    "risk-execution",
    EXECUTION.name,
    ("exec.*.*",),
    deliver="new",
    description="order outcomes: terminal events release reservations, min-total rejects start cooldowns",
)
EXECUTION_ORDERS = ConsumerSpec(
    "execution-orders",
    ORDERS.name,
    ("order.submit.*", "order.cancel.*"),
    max_deliver=8,
    backoff=(1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0),
    description="orders to place or cancel at the exchange",
)
LEDGER_EXECUTION = ConsumerSpec(
    "ledger-execution",
    EXECUTION.name,
    ("exec.*.*",),
    max_deliver=10,
    backoff=(1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 60.0, 60.0),
    description="fills and order events to book",
)
LEDGER_MARKS = ConsumerSpec(
    "ledger-marks",
    MARKET.name,
    ("md.book.*",),
    deliver="new",
    max_deliver=2,
    backoff=(0.5,),
    description="book mids for unrealized PnL",
    fanout=True,
)

LEDGER_RESUMES = ConsumerSpec(
    "ledger-resumes",
    CONTROL.name,
    ("control.resume.*",),
    deliver="new",
    description="operator commands clearing a symbol's integrity halt once it reconciles",
)

ALL_CONSUMERS: tuple[ConsumerSpec, ...] = (
    STRATEGY_BOOKS,
    STRATEGY_EXECUTION,
    STRATEGY_DENIED,
    STRATEGY_PORTFOLIO,
    RISK_INTENTS,
    RISK_CONTROL,
    RISK_PORTFOLIO,
    RISK_BOOKS,
    RISK_EXECUTION,
    EXECUTION_ORDERS,
    LEDGER_EXECUTION,
    LEDGER_MARKS,
    LEDGER_RESUMES,
)


def stream_for_subject(subject: str) -> StreamSpec:
    """The stream that stores a subject (first token match); raises KeyError if none does."""
    head = subject.split(".", 1)[0]
    for spec in ALL_STREAMS:
        if any(s.split(".", 1)[0] == head for s in spec.subjects):
            return spec
    raise KeyError(f"no stream stores subject {subject!r}")
