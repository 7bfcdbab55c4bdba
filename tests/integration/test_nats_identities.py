"""Every identity of btcbot.contracts.access against a real nats-server started from the generated configuration.

For each identity: what its row allows works (publishing its subjects, creating, pulling and acking its own
durables, its reads), and what it does not allow is refused by the server (a permissions violation reported
to the client, nothing stored, nothing delivered). Without credentials a client cannot connect at all.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import nats
import nats.errors
import pytest
import pytest_asyncio
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext

from btcbot.contracts import subjects
from btcbot.contracts.access import ADMIN, IDENTITIES, OPERATOR, Identity, identity, publishers_of
from btcbot.contracts.streams import ALL_CONSUMERS, ALL_STREAMS, CONTROL, ConsumerSpec, stream_for_subject
from btcbot.devstack.infra import EmbeddedServer
from btcbot.devstack.natsusers import NatsUser
from btcbot.runtime.inspect import read_stream
from btcbot.runtime.jetstream import NatsAuth, consumer_config, provision

pytestmark = pytest.mark.integration

SYMBOL = "BTCTRY"
# One concrete subject of every family the system publishes.
SAMPLES = (
    subjects.book(SYMBOL),
    subjects.trade(SYMBOL),
    subjects.intent(SYMBOL),
    subjects.submit(SYMBOL),
    subjects.cancel(SYMBOL),
    subjects.denied(SYMBOL),
    *(subjects.execution(kind, SYMBOL) for kind in subjects.EXEC_KINDS),
    subjects.portfolio("main"),
    subjects.CONTROL_MODE,
    subjects.CONTROL_KILL,
    subjects.CONTROL_AUTO,
    *(subjects.alarm(source, "probe") for source in ("risk", "execution", "ledger", "operator")),
    subjects.resume(SYMBOL),
    *(subjects.dead_letter(s, "intent.BTCTRY") for s in ("marketdata", "strategy", "risk", "execution", "ledger")),
)
NON_ADMIN = tuple(row for row in IDENTITIES if not row.admin)


@dataclass
class Client:
    """A connection as one identity, with the errors the server reported to it."""

    nc: NatsClient
    js: JetStreamContext
    errors: list[str] = field(default_factory=list)

    def violations(self) -> str:
        """The permission violations the server reported (nats-py lower-cases them)."""
        return "\n".join(e.lower() for e in self.errors if "permissions violation" in e.lower())


async def connect_as(url: str, user: NatsUser | None, name: str) -> Client:
    errors: list[str] = []

    async def on_error(exc: Exception) -> None:
        errors.append(str(exc))

    opts: dict[str, Any] = NatsAuth(user.user, user.password).options() if user is not None else {}
    nc = NatsClient()
    try:
        await asyncio.wait_for(
            nc.connect(
                url,
                name=name,
                error_cb=on_error,
                allow_reconnect=False,
                max_reconnect_attempts=1,
                reconnect_time_wait=0.1,
                connect_timeout=2,
                **opts,
            ),
            10,
        )
    except BaseException:
        await nc.close()  # a refused connect leaves its socket open otherwise
        raise
    return Client(nc, nc.jetstream(timeout=1.5), errors)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def bus(secured_nats: tuple[EmbeddedServer, dict[str, NatsUser]]) -> AsyncIterator[Client]:
    """The admin's connection, with every stream provisioned (as `btcbot up` does)."""
    server, users = secured_nats
    admin = await connect_as(server.url, users[ADMIN.name], "admin")
    await provision(admin.js, ALL_STREAMS)
    yield admin
    await admin.nc.close()


async def _last_seqs(admin: Client) -> dict[str, int]:
    return {spec.name: int((await admin.js.stream_info(spec.name)).state.last_seq or 0) for spec in ALL_STREAMS}


def _concrete(pattern: str) -> str:
    return ".".join({"*": SYMBOL, ">": "probe"}.get(token, token) for token in pattern.split("."))


@pytest.mark.parametrize("row", NON_ADMIN, ids=lambda r: r.name)
async def test_publishes_only_its_own_subjects(
    row: Identity, bus: Client, secured_nats: tuple[EmbeddedServer, dict[str, NatsUser]]
) -> None:
    server, users = secured_nats
    client = await connect_as(server.url, users[row.name], row.name)
    try:
        for pattern in row.publishes:
            subject = _concrete(pattern)
            ack = await client.js.publish(subject, b"allowed", headers={"Nats-Msg-Id": f"{row.name}:{subject}"})
            assert ack.stream == stream_for_subject(subject).name
        refused = [s for s in SAMPLES if row.name not in publishers_of(s)]
        assert refused, "every identity is refused something"
        before = await _last_seqs(bus)
        for subject in refused:
            await client.nc.publish(subject, b"forged")
        await client.nc.flush(timeout=2)
        await asyncio.sleep(0.2)  # the server's -ERR lines arrive after the flush's PONG at the latest
        assert await _last_seqs(bus) == before, "a refused publish was stored"
        for subject in refused:
            assert f'publish to "{subject.lower()}"' in client.violations(), (
                f"{row.name}: no violation reported for {subject}"
            )
        # A stream change is the admin's alone.
        with pytest.raises((nats.errors.TimeoutError, nats.errors.NoRespondersError)):
            await client.js.delete_stream(CONTROL.name)
        assert (await bus.js.stream_info(CONTROL.name)).config.name == CONTROL.name
    finally:
        await client.nc.close()


@pytest.mark.parametrize("row", NON_ADMIN, ids=lambda r: r.name)
async def test_subscribes_only_to_its_own_inbox(
    row: Identity, bus: Client, secured_nats: tuple[EmbeddedServer, dict[str, NatsUser]]
) -> None:
    server, users = secured_nats
    client = await connect_as(server.url, users[row.name], row.name)
    other = next(r for r in NON_ADMIN if r.name != row.name)
    try:
        seen: list[str] = []

        async def collect(msg: Any) -> None:
            seen.append(msg.subject)

        for subject in (">", "order.submit.*", "control.>", f"{other.inbox_prefix}.>", "$JS.ACK.>"):
            await client.nc.subscribe(subject, cb=collect)
        await client.nc.flush(timeout=2)
        await bus.nc.publish(subjects.submit(SYMBOL), b"x")
        await bus.nc.publish(f"{other.inbox_prefix}.reply", b"x")
        await bus.nc.flush(timeout=2)
        await asyncio.sleep(0.3)
        assert seen == []
        for subject in (">", "order.submit.*", f"{other.inbox_prefix}.>"):
            assert f'subscription to "{subject.lower()}"' in client.violations(), client.errors
    finally:
        await client.nc.close()


async def _own_consumers(row: Identity) -> list[ConsumerSpec]:
    return [spec.for_instance(f"test-{row.name}") for spec in row.consumes]


@pytest.mark.parametrize("row", [r for r in NON_ADMIN if r.consumes], ids=lambda r: r.name)
async def test_creates_pulls_and_acks_its_own_durables(
    row: Identity, bus: Client, secured_nats: tuple[EmbeddedServer, dict[str, NatsUser]]
) -> None:
    server, users = secured_nats
    client = await connect_as(server.url, users[row.name], row.name)
    try:
        specs = await _own_consumers(row)
        await provision(client.js, ALL_STREAMS, specs)  # streams exist: only its own consumers are created
        for spec in specs:
            await bus.js.publish(_concrete(spec.filter_subjects[0]), b"work")
        for spec in specs:
            sub = await client.js.pull_subscribe_bind(spec.durable, stream=spec.stream)
            msgs = await sub.fetch(batch=100, timeout=3)
            for msg in msgs:
                await msg.ack_sync(timeout=2)
            info = await client.js.consumer_info(spec.stream, spec.durable)
            assert info.num_ack_pending == 0, spec.durable
            assert info.num_pending == 0, spec.durable
            await sub.unsubscribe()
        assert client.violations() == ""
    finally:
        await client.nc.close()


@pytest.mark.parametrize("row", NON_ADMIN, ids=lambda r: r.name)
async def test_cannot_touch_another_identitys_durables(
    row: Identity, bus: Client, secured_nats: tuple[EmbeddedServer, dict[str, NatsUser]]
) -> None:
    server, users = secured_nats
    mine = {(s.stream, s.durable) for s in row.consumes}
    foreign = [s for s in ALL_CONSUMERS if not s.fanout and (s.stream, s.durable) not in mine]
    for spec in foreign:
        await bus.js.add_consumer(spec.stream, consumer_config(spec))
    client = await connect_as(server.url, users[row.name], row.name)
    try:
        for spec in foreign[:3]:  # each refusal waits out a request timeout
            sub = await client.js.pull_subscribe_bind(spec.durable, stream=spec.stream)
            with pytest.raises((nats.errors.TimeoutError, TimeoutError)):
                await sub.fetch(batch=1, timeout=0.5)
            await sub.unsubscribe()
            with pytest.raises((nats.errors.TimeoutError, nats.errors.NoRespondersError)):
                await client.js.add_consumer(spec.stream, consumer_config(spec))
        for spec in foreign[:3]:
            assert f"$js.api.consumer.msg.next.{spec.stream}.{spec.durable}".lower() in client.violations()
    finally:
        await client.nc.close()


@pytest.mark.parametrize("row", NON_ADMIN, ids=lambda r: r.name)
async def test_reads_only_the_streams_of_its_row(
    row: Identity, bus: Client, secured_nats: tuple[EmbeddedServer, dict[str, NatsUser]]
) -> None:
    server, users = secured_nats
    await bus.js.publish(subjects.CONTROL_MODE, b"state")
    client = await connect_as(server.url, users[row.name], row.name)
    try:
        readable = {s.name for s in row.reads}
        for spec in ALL_STREAMS:
            if spec.name in readable:
                got = [m async for m in read_stream(client.js, spec.name)]
                assert len(got) == (await bus.js.stream_info(spec.name)).state.messages
            elif spec.name == CONTROL.name:
                with pytest.raises((nats.errors.TimeoutError, TimeoutError, nats.errors.NoRespondersError)):
                    _ = [m async for m in read_stream(client.js, spec.name)]
        gettable = readable | {s.name for s in row.gets}
        if CONTROL.name in gettable:
            assert (await client.js.get_last_msg(CONTROL.name, subjects.CONTROL_MODE)).data is not None
        else:
            with pytest.raises((nats.errors.TimeoutError, nats.errors.NoRespondersError)):
                await client.js.get_last_msg(CONTROL.name, subjects.CONTROL_MODE)
    finally:
        await client.nc.close()


async def test_a_client_without_credentials_cannot_connect(
    secured_nats: tuple[EmbeddedServer, dict[str, NatsUser]],
) -> None:
    server, users = secured_nats
    with pytest.raises((nats.errors.Error, OSError, TimeoutError)):
        await connect_as(server.url, None, "anonymous")
    wrong = NatsUser("risk", "risk", users["reader"].password)  # a real password of another user
    with pytest.raises((nats.errors.Error, OSError, TimeoutError)):
        await connect_as(server.url, wrong, "impostor")
    client = await connect_as(server.url, users["risk"], "risk")  # the right one gets in
    assert client.nc.is_connected
    await client.nc.close()


async def test_the_operator_sets_the_mode_but_cannot_submit_orders(
    bus: Client, secured_nats: tuple[EmbeddedServer, dict[str, NatsUser]]
) -> None:
    server, users = secured_nats
    client = await connect_as(server.url, users[OPERATOR.name], OPERATOR.name)
    try:
        for subject in (subjects.CONTROL_MODE, subjects.CONTROL_KILL, subjects.resume(SYMBOL)):
            ack = await client.js.publish(subject, b"command")
            assert ack.stream == CONTROL.name
        orders = (await bus.js.stream_info("ORDERS")).state.last_seq
        with pytest.raises((nats.errors.TimeoutError, nats.errors.NoRespondersError)):
            await client.js.publish(subjects.submit(SYMBOL), b"order", timeout=1)
        assert (await bus.js.stream_info("ORDERS")).state.last_seq == orders
        assert 'publish to "order.submit.btctry"' in client.violations()
    finally:
        await client.nc.close()


def test_only_risk_may_submit_and_only_execution_may_report() -> None:
    assert publishers_of(subjects.submit(SYMBOL)) == ("risk", "admin")
    assert publishers_of(subjects.execution("filled", SYMBOL)) == ("execution", "admin")
    assert publishers_of(subjects.portfolio("main")) == ("ledger", "admin")
    assert "operator" in publishers_of(subjects.CONTROL_KILL)
    assert identity("reader").publishes == ()


async def test_a_reader_creates_only_nameless_ephemeral_consumers(
    bus: Client, secured_nats: tuple[EmbeddedServer, dict[str, NatsUser]]
) -> None:
    """The one create subject a reader has refuses a durable, so it cannot add or redefine a named consumer."""
    server, users = secured_nats
    client = await connect_as(server.url, users["reader"], "reader")
    try:
        request = {"stream_name": CONTROL.name, "config": {"durable_name": "risk-control-x", "ack_policy": "explicit"}}
        reply = await client.nc.request(
            f"$JS.API.CONSUMER.CREATE.{CONTROL.name}", json.dumps(request).encode(), timeout=2
        )
        assert "error" in json.loads(reply.data)
        names = [c.name for c in await bus.js.consumers_info(CONTROL.name)]
        assert "risk-control-x" not in names
    finally:
        await client.nc.close()
