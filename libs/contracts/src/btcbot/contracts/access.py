"""Who may do what on the bus: one table of identities, from which every NATS permission is derived.

Each service has its own identity, plus `operator` (the CLI's control commands), `reader` (read-only inspection,
replay, verify, dead letters, doctor) and `admin` (provisions streams; `btcbot up` and a provisioning job).
An identity names the subjects it publishes (built from `subjects` and `streams`, never typed twice), the
durable consumers it owns (the ConsumerSpecs of `streams`), the streams whose history it reads with ephemeral
consumers, and the streams whose last message per subject it gets. `permissions()` turns a row into the
publish/subscribe allow and deny lists a nats-server enforces:

- data subjects it publishes (JetStream publishes are plain publishes with a reply inbox);
- its own inbox `_INBOX.<identity>.>` (the client sets `inbox_prefix`), so no identity sees another's replies;
- the JetStream API scoped to its own durables: create (`DURABLE.CREATE`, `CREATE`), `INFO`, `MSG.NEXT`, and
  `$JS.ACK.<stream>.<durable>.>` for acks. A fan-out durable is `<durable>-<instance>` and the instance is not
  known in advance, so on such a stream the consumer token is `*`, and every shared durable of another identity
  on that stream is denied by name (a deny wins over an allow in nats-server);
- ephemeral reads: `CONSUMER.CREATE.<stream>` (the server refuses a durable name there), `MSG.NEXT.<stream>.*`
  with the same denies; `STREAM.MSG.GET.<stream>` for last-message reads; `STREAM.INFO.*` and `$JS.API.INFO`.

Nobody but `admin` may create, update or delete a stream, or delete a consumer.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from btcbot.contracts import subjects
from btcbot.contracts.streams import (
    ALL_CONSUMERS,
    ALL_STREAMS,
    CONTROL,
    DLQ,
    EXECUTION,
    EXECUTION_ORDERS,
    INTENTS,
    LEDGER_EXECUTION,
    LEDGER_MARKS,
    LEDGER_RESUMES,
    MARKET,
    ORDERS,
    PORTFOLIO,
    RISK_BOOKS,
    RISK_CONTROL,
    RISK_EXECUTION,
    RISK_INTENTS,
    RISK_PORTFOLIO,
    STRATEGY_BOOKS,
    STRATEGY_DENIED,
    STRATEGY_EXECUTION,
    STRATEGY_PORTFOLIO,
    UNIVERSE,
    ConsumerSpec,
    StreamSpec,
)

JS_API = "$JS.API"
JS_ACK = "$JS.ACK"
INBOX_ROOT = "_INBOX"
_SAMPLE_SYMBOL = "BTCTRY"


def _any_symbol(build: Callable[[str], str]) -> str:
    """The subject family of a per-symbol builder: `subjects.submit` -> `order.submit.*`."""
    return build(_SAMPLE_SYMBOL).rsplit(".", 1)[0] + ".*"


def _alarms_of(source: str) -> str:
    """Every alarm subject of one source: `control.alarm.risk.>`."""
    return subjects.alarm(source, "x").rsplit(".", 1)[0] + ".>"


def _dead_letters_of(service: str) -> str:
    """Where one service parks messages: `dlq.risk.>`."""
    return subjects.dead_letter(service, "x").rsplit(".", 1)[0] + ".>"


@dataclass(frozen=True)
class Identity:
    """One row of the table: a NATS user and what it may do."""

    name: str
    description: str
    publishes: tuple[str, ...] = ()
    consumes: tuple[ConsumerSpec, ...] = ()
    reads: tuple[StreamSpec, ...] = ()  # history through ephemeral no-ack consumers (implies `gets`)
    gets: tuple[StreamSpec, ...] = ()  # the last message of a subject (STREAM.MSG.GET)
    inspects: bool = False  # may list streams and consumers and see every consumer's state (doctor, drain waits)
    admin: bool = False  # may do anything: provisions streams; never handed to a service

    @property
    def inbox_prefix(self) -> str:
        """The inbox prefix its clients use; only it may subscribe below it."""
        return f"{INBOX_ROOT}.{self.name}"


@dataclass(frozen=True)
class Permissions:
    """What nats-server enforces for one user (deny wins over allow)."""

    publish_allow: tuple[str, ...]
    publish_deny: tuple[str, ...] = ()
    subscribe_allow: tuple[str, ...] = ()
    subscribe_deny: tuple[str, ...] = ()

    def as_config(self) -> dict[str, object]:
        """The `permissions` block of a nats-server user (JSON is valid nats-server configuration)."""
        publish: dict[str, object] = {"allow": list(self.publish_allow)}
        if self.publish_deny:
            publish["deny"] = list(self.publish_deny)
        subscribe: dict[str, object] = {"allow": list(self.subscribe_allow)}
        if self.subscribe_deny:
            subscribe["deny"] = list(self.subscribe_deny)
        return {"publish": publish, "subscribe": subscribe}


MARKETDATA = Identity(
    "marketdata",
    "publishes books and trades, and the dynamic universe's selections (reads rejects and held positions)",
    publishes=(
        _any_symbol(subjects.book),
        _any_symbol(subjects.trade),
        subjects.UNIVERSE_SELECTED,
        _dead_letters_of("marketdata"),
    ),
    reads=(EXECUTION,),
    gets=(MARKET, UNIVERSE, PORTFOLIO),
)
STRATEGY = Identity(
    "strategy",
    "publishes intents and cancels its own orders; reads its recent history on takeover",
    publishes=(_any_symbol(subjects.intent), _any_symbol(subjects.cancel), _dead_letters_of("strategy")),
    consumes=(STRATEGY_BOOKS, STRATEGY_EXECUTION, STRATEGY_DENIED, STRATEGY_PORTFOLIO),
    reads=(INTENTS, EXECUTION, ORDERS),
    gets=(UNIVERSE,),
)
RISK = Identity(
    "risk",
    "the only identity that may submit orders; sets the automatic mode and raises its alarm",
    publishes=(
        _any_symbol(subjects.submit),
        _any_symbol(subjects.denied),
        _any_symbol(subjects.cancel),
        subjects.CONTROL_AUTO,
        _alarms_of("risk"),
        _dead_letters_of("risk"),
    ),
    consumes=(RISK_INTENTS, RISK_CONTROL, RISK_PORTFOLIO, RISK_BOOKS, RISK_EXECUTION),
    reads=(CONTROL, PORTFOLIO),
)
EXECUTION_IDENTITY = Identity(
    "execution",
    "the only identity that may report what happened at the exchange",
    publishes=(*EXECUTION.subjects, _alarms_of("execution"), _dead_letters_of("execution")),
    consumes=(EXECUTION_ORDERS,),
    gets=(CONTROL,),
)
LEDGER = Identity(
    "ledger",
    "the only identity that may publish portfolio snapshots",
    publishes=(*PORTFOLIO.subjects, _alarms_of("ledger"), _dead_letters_of("ledger")),
    consumes=(LEDGER_EXECUTION, LEDGER_MARKS, LEDGER_RESUMES),
    gets=(CONTROL,),
)
OPERATOR = Identity(
    "operator",
    "the CLI's control commands: trading mode, kill switch, halt resumes (never orders)",
    publishes=(subjects.CONTROL_MODE, subjects.CONTROL_KILL, subjects.CONTROL_RESUMES),
    reads=(CONTROL, DLQ),
)
CANARY = Identity(
    "canary",
    "`btcbot canary`: proposes one capped intent (risk still decides and signs), cancels it, watches its outcome",
    publishes=(_any_symbol(subjects.intent), _any_symbol(subjects.cancel)),
    reads=(ORDERS, EXECUTION, CONTROL),
    gets=(MARKET,),
)
READER = Identity(
    "reader",
    "read-only: inspection, replay, verify, dead letters, doctor",
    reads=ALL_STREAMS,
    inspects=True,
)
ADMIN = Identity(
    "admin",
    "provisions streams (btcbot up, the provisioning job); may do anything, so it is never given to a service",
    admin=True,
)

IDENTITIES: tuple[Identity, ...] = (
    MARKETDATA,
    STRATEGY,
    RISK,
    EXECUTION_IDENTITY,
    LEDGER,
    OPERATOR,
    CANARY,
    READER,
    ADMIN,
)
SERVICE_IDENTITIES: tuple[str, ...] = ("marketdata", "strategy", "risk", "execution", "ledger")


def identity(name: str) -> Identity:
    """The row of one identity; KeyError for an unknown name."""
    for row in IDENTITIES:
        if row.name == name:
            return row
    raise KeyError(f"no identity {name!r}; one of {[r.name for r in IDENTITIES]}")


def _consumer_rules(stream: str, consumer: str) -> list[str]:
    """The API subjects that create, inspect and pull one consumer (token `*` for any name)."""
    return [
        f"{JS_API}.CONSUMER.DURABLE.CREATE.{stream}.{consumer}",
        f"{JS_API}.CONSUMER.CREATE.{stream}.{consumer}",
        f"{JS_API}.CONSUMER.CREATE.{stream}.{consumer}.>",
        f"{JS_API}.CONSUMER.INFO.{stream}.{consumer}",
        f"{JS_API}.CONSUMER.MSG.NEXT.{stream}.{consumer}",
        f"{JS_ACK}.{stream}.{consumer}.>",
    ]


def _unique(items: list[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(items))


def permissions(row: Identity) -> Permissions:
    """The nats-server permissions of one identity, derived from its row."""
    inbox = f"{row.inbox_prefix}.>"
    if row.admin:
        return Permissions(publish_allow=(">",), subscribe_allow=(">",))
    allow: list[str] = [*row.publishes, f"{JS_API}.INFO", f"{JS_API}.STREAM.INFO.*"]
    fanout_streams: set[str] = set()
    owned: set[tuple[str, str]] = set()
    for spec in row.consumes:
        if spec.fanout:
            fanout_streams.add(spec.stream)
        else:
            owned.add((spec.stream, spec.durable))
            allow += _consumer_rules(spec.stream, spec.durable)
    for stream_name in sorted(fanout_streams):
        allow += _consumer_rules(stream_name, "*")
    for stream in row.reads:
        # An ephemeral no-ack consumer: created without a name (the server refuses a durable name there),
        # pulled under the name the server gave it.
        allow.append(f"{JS_API}.CONSUMER.CREATE.{stream.name}")
        allow.append(f"{JS_API}.CONSUMER.MSG.NEXT.{stream.name}.*")
    wildcard_streams = fanout_streams | {stream.name for stream in row.reads}
    for stream in (*row.reads, *row.gets):
        allow.append(f"{JS_API}.STREAM.MSG.GET.{stream.name}")
    if row.inspects:
        allow += [
            f"{JS_API}.STREAM.NAMES",
            f"{JS_API}.STREAM.LIST",
            f"{JS_API}.CONSUMER.NAMES.*",
            f"{JS_API}.CONSUMER.LIST.*",
            f"{JS_API}.CONSUMER.INFO.*.*",
        ]
    # Where a consumer token is a wildcard, every other identity's shared durable stays out of reach.
    deny: list[str] = []
    for spec in ALL_CONSUMERS:
        if spec.fanout or spec.stream not in wildcard_streams or (spec.stream, spec.durable) in owned:
            continue
        rules = _consumer_rules(spec.stream, spec.durable)
        if row.inspects:
            rules = [r for r in rules if ".CONSUMER.INFO." not in r]
        deny += rules
    return Permissions(
        publish_allow=_unique(allow),
        publish_deny=_unique(deny),
        subscribe_allow=(inbox,),
    )


def publishers_of(subject: str) -> tuple[str, ...]:
    """The identities whose publish allow list matches a concrete subject (admin included)."""
    return tuple(
        row.name for row in IDENTITIES if any(subject_matches(p, subject) for p in permissions(row).publish_allow)
    )


def subject_matches(pattern: str, subject: str) -> bool:
    """NATS subject matching: `*` is one token, `>` the rest (one token or more)."""
    pat = pattern.split(".")
    sub = subject.split(".")
    for i, part in enumerate(pat):
        if part == ">":
            return len(sub) > i
        if i >= len(sub) or part not in ("*", sub[i]):
            return False
    return len(pat) == len(sub)
