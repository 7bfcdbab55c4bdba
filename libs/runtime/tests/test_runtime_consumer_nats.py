"""The consumer loop against a real nats-server: ack, retry, poison, undecodable input, trace continuation."""

from __future__ import annotations

import asyncio
import secrets
from decimal import Decimal

import msgspec
import pytest
from opentelemetry import trace

from btcbot.contracts import ids
from btcbot.contracts.codec import Codec
from btcbot.contracts.messages import DeadLetter, OrderIntent
from btcbot.contracts.streams import DLQ, ConsumerSpec, StreamSpec
from btcbot.runtime.bus import Delivery
from btcbot.runtime.consumer import Consumer
from btcbot.runtime.errors import Poison, Retry
from btcbot.runtime.jetstream import NatsPublisher, connect, provision

pytestmark = pytest.mark.integration


def intent(n: int) -> OrderIntent:
    return OrderIntent(
        id=f"intent-{n}",
        ts_ns=1,
        strategy="s",
        symbol="BTCTRY",
        side="buy",
        order_type="limit",
        price=Decimal("100"),
        quantity=Decimal("1"),
        reason="test",
        book_id="b",
    )


@pytest.fixture
async def env(nats_url: str):
    nc = await connect(nats_url, "runtime-test", 5, reconnect_forever=False)
    js = nc.jetstream()
    tag = secrets.token_hex(3).upper()
    stream = StreamSpec(f"T{tag}", (f"t{tag}.*",), "test stream")
    spec = ConsumerSpec(f"c{tag}", stream.name, (f"t{tag}.*",), max_deliver=3, backoff=(0.05, 0.05))
    await provision(js, [stream, DLQ], [spec])
    await provision(js, [stream, DLQ], [spec])  # idempotent at every start
    yield nc, js, stream, spec, f"t{tag}.BTCTRY"
    await js.delete_stream(stream.name)
    await nc.close()


async def run_until(consumer: Consumer[OrderIntent], done: asyncio.Event, timeout: float = 10.0) -> None:
    stop = asyncio.Event()
    task = asyncio.create_task(consumer.run(stop))
    try:
        await asyncio.wait_for(done.wait(), timeout)
    finally:
        stop.set()
        await asyncio.wait_for(task, 5)


async def dead_letters(js, subject_filter: str) -> list[DeadLetter]:
    sub = await js.pull_subscribe(subject_filter, stream=DLQ.name)
    try:
        msgs = await sub.fetch(batch=10, timeout=2)
    except Exception:
        return []
    finally:
        await sub.unsubscribe()
    return [msgspec.msgpack.decode(m.data, type=DeadLetter) for m in msgs]


async def test_handler_gets_the_message_once_and_a_duplicate_publish_is_dropped(env) -> None:
    _nc, js, _stream, spec, subject = env
    publisher = NatsPublisher(js)
    tracer = trace.get_tracer("test")
    seen: list[tuple[OrderIntent, Delivery]] = []
    done = asyncio.Event()

    async def handler(message: OrderIntent, delivery: Delivery) -> None:
        seen.append((message, delivery))
        done.set()

    with tracer.start_as_current_span("producer"):
        await publisher.publish(subject, intent(1))
        await publisher.publish(subject, intent(1))  # same id: JetStream drops it
    assert publisher.duplicates == 1
    consumer = Consumer("svc", js, publisher, spec, Codec(OrderIntent), handler)
    await run_until(consumer, done)
    await asyncio.sleep(0.3)
    assert len(seen) == 1
    message, delivery = seen[0]
    assert message == intent(1)
    assert delivery.deliveries == 1
    assert delivery.headers["Nats-Msg-Id"] == "intent-1"
    info = await js.consumer_info(spec.stream, spec.durable)
    assert info.num_ack_pending == 0
    assert info.num_pending == 0


async def test_traceparent_continues_the_producer_trace(env) -> None:
    from opentelemetry.sdk.trace import TracerProvider

    provider = TracerProvider()
    _nc, js, _stream, spec, subject = env
    publisher = NatsPublisher(js)
    done = asyncio.Event()
    got: list[str] = []

    async def handler(message: OrderIntent, delivery: Delivery) -> None:
        got.append(delivery.headers["traceparent"].split("-")[1])
        done.set()

    with provider.get_tracer("test").start_as_current_span("producer") as span:
        expected = f"{span.get_span_context().trace_id:032x}"
        await publisher.publish(subject, intent(2))
    await run_until(Consumer("svc", js, publisher, spec, Codec(OrderIntent), handler), done)
    assert got == [expected]


async def test_retry_redelivers_then_dead_letters_after_max_deliver(env) -> None:
    _nc, js, _stream, spec, subject = env
    publisher = NatsPublisher(js)
    attempts: list[int] = []
    done = asyncio.Event()

    async def handler(message: OrderIntent, delivery: Delivery) -> None:
        attempts.append(delivery.deliveries)
        if delivery.deliveries >= spec.max_deliver:
            done.set()
        raise Retry("exchange busy", delay=0.05)

    await publisher.publish(subject, intent(3))
    await run_until(Consumer("svc", js, publisher, spec, Codec(OrderIntent), handler), done)
    assert attempts == [1, 2, 3]
    letters = [d for d in await dead_letters(js, f"dlq.svc.{subject}") if d.original_subject == subject]
    assert letters
    assert "exchange busy" in letters[-1].error
    assert letters[-1].deliveries == 3
    assert msgspec.msgpack.decode(letters[-1].payload, type=OrderIntent) == intent(3)


async def test_garbage_and_poison_go_to_the_dead_letter_stream_at_once(env) -> None:
    _nc, js, _stream, spec, subject = env
    publisher = NatsPublisher(js)
    handled: list[str] = []
    done = asyncio.Event()

    async def handler(message: OrderIntent, delivery: Delivery) -> None:
        handled.append(message.id)
        done.set()
        raise Poison("price is not on the tick")

    await js.publish(subject, b"\xc1 definitely not msgpack", headers={"Nats-Msg-Id": "garbage-1"})
    await publisher.publish(subject, intent(4))
    await run_until(Consumer("svc", js, publisher, spec, Codec(OrderIntent), handler), done)
    await asyncio.sleep(0.2)
    letters = {d.original_sequence: d for d in await dead_letters(js, f"dlq.svc.{subject}")}
    errors = sorted(d.error.split(":")[0] for d in letters.values())
    assert errors == ["poison", "undecodable"]
    assert handled == ["intent-4"]
    garbage = next(d for d in letters.values() if d.error.startswith("undecodable"))
    assert garbage.payload == b"\xc1 definitely not msgpack"
    assert garbage.id == ids.dead_letter_id(spec.durable, garbage.original_stream, garbage.original_sequence)


async def test_fanout_consumers_give_every_replica_every_message(env) -> None:
    _nc, js, stream, _spec, subject = env
    fan = ConsumerSpec("fan", stream.name, (subject,), fanout=True, idle_cleanup=60)
    replicas = [fan.for_instance("host-1"), fan.for_instance("host/2")]
    assert [r.durable for r in replicas] == ["fan-host-1", "fan-host_2"]
    await provision(js, [stream], replicas)
    info = await js.consumer_info(stream.name, "fan-host-1")
    assert info.config.inactive_threshold == 60
    publisher = NatsPublisher(js)
    await publisher.publish(subject, intent(9))
    for spec in replicas:
        done = asyncio.Event()
        got: list[str] = []

        async def handler(message: OrderIntent, delivery: Delivery, got=got, done=done) -> None:
            got.append(message.id)
            done.set()

        await run_until(Consumer("svc", js, publisher, spec, Codec(OrderIntent), handler), done)
        assert got == ["intent-9"]


async def test_future_dated_and_insane_money_are_dead_lettered_before_the_handler(env) -> None:
    import time

    from btcbot.contracts.messages import BookSnapshot, Level, OrderFilled

    _nc, js, _stream, spec, subject = env
    publisher = NatsPublisher(js)
    handled: list[str] = []
    done = asyncio.Event()
    now = time.time_ns()

    def book(n: int, ts_ns: int) -> BookSnapshot:
        return BookSnapshot(id=f"book-{n}", ts_ns=ts_ns, symbol="BTCTRY", sequence=n,
                            bids=(Level(Decimal("99"), Decimal("1")),), asks=(Level(Decimal("101"), Decimal("1")),),
                            exchange_ts_ns=ts_ns, received_ts_ns=ts_ns)  # fmt: skip

    def fill(n: int, quantity: str) -> OrderFilled:
        return OrderFilled(id=f"fill-{n}", ts_ns=now, client_order_id="c", exchange_order_id="e", strategy="s",
                           symbol="BTCTRY", side="buy", trade_id=str(n), price=Decimal("100"),
                           quantity=Decimal(quantity), fee=Decimal("0.1"), fee_asset="TRY")  # fmt: skip

    async def handler(message: BookSnapshot | OrderFilled, delivery: Delivery) -> None:
        handled.append(message.id)
        assert delivery.stored_ns > 0
        if message.id == "book-9":
            done.set()

    await publisher.publish(subject, book(1, now + 3600 * 10**9))  # an hour ahead of its storage time
    await publisher.publish(subject, fill(2, "NaN"))
    await publisher.publish(subject, fill(3, "1E+400"))
    await publisher.publish(subject, fill(4, "-1"))
    await publisher.publish(subject, book(5, now + 2 * 10**9))  # inside the skew: accepted
    await publisher.publish(subject, book(9, time.time_ns()))
    codec: Codec[BookSnapshot | OrderFilled] = Codec(BookSnapshot | OrderFilled)
    await run_until(Consumer("svc", js, publisher, spec, codec, handler), done)
    assert handled == ["book-5", "book-9"]
    letters = {msgspec.msgpack.decode(d.payload, type=BookSnapshot | OrderFilled).id: d.error
               for d in await dead_letters(js, f"dlq.svc.{subject}")}  # fmt: skip
    assert letters["book-1"].startswith("FUTURE_DATED: dated 3")
    assert letters["fill-2"] == "INVALID_MONEY: OrderFilled.quantity=NaN"
    assert letters["fill-3"] == "INVALID_MONEY: OrderFilled.quantity=1E+400"
    assert letters["fill-4"] == "INVALID_MONEY: OrderFilled.quantity=-1"
    assert set(letters) == {"book-1", "fill-2", "fill-3", "fill-4"}


async def _consumer_names(js, stream: str) -> set[str]:
    return {c.name for c in await js.consumers_info(stream)}


async def test_a_departed_replicas_fanout_durable_goes_away_while_a_live_one_stays(env) -> None:
    """A rollout: the old pod's durable is removed by the server after idle_cleanup; the live pod's stays."""
    _nc, js, stream, _spec, subject = env
    fan = ConsumerSpec("roll", stream.name, (subject,), fanout=True, deliver="new", idle_cleanup=1.0)
    old, live = fan.for_instance("pod-old"), fan.for_instance("pod-live")
    await provision(js, [stream], [old, live])
    assert {old.durable, live.durable} <= await _consumer_names(js, stream.name)
    publisher = NatsPublisher(js)
    got: list[str] = []

    async def handler(message: OrderIntent, delivery: Delivery) -> None:
        got.append(message.id)

    stop = asyncio.Event()
    task = asyncio.create_task(Consumer("svc", js, publisher, live, Codec(OrderIntent), handler).run(stop))
    try:
        names: set[str] = set()
        for n in range(60):  # bounded: 60 x 0.25 s; the server sweeps inactive consumers every few seconds
            await publisher.publish(subject, intent(100 + n))  # pending piles up on the departed pod's durable
            names = await _consumer_names(js, stream.name)
            if old.durable not in names:
                break
            await asyncio.sleep(0.25)
        assert old.durable not in names, "the departed replica's durable is still there"
        assert live.durable in names, "the live replica's durable must stay"
    finally:
        stop.set()
        await asyncio.wait_for(task, 5)
    assert got, "the live replica kept consuming"


async def test_a_live_replica_makes_its_fanout_durable_again_when_the_server_removed_it(env) -> None:
    _nc, js, stream, _spec, subject = env
    fan = ConsumerSpec("back", stream.name, (subject,), fanout=True, deliver="new", idle_cleanup=30)
    own = fan.for_instance("pod-a")
    await provision(js, [stream], [own])
    publisher = NatsPublisher(js)
    done = asyncio.Event()
    got: list[str] = []

    async def handler(message: OrderIntent, delivery: Delivery) -> None:
        got.append(message.id)
        done.set()

    stop = asyncio.Event()
    task = asyncio.create_task(Consumer("svc", js, publisher, own, Codec(OrderIntent), handler).run(stop))
    try:
        await asyncio.sleep(0.3)
        await js.delete_consumer(stream.name, own.durable)  # as the server does after idle_cleanup
        for _ in range(40):  # bounded: the loop notices on its next fetch and makes the durable again
            if own.durable in await _consumer_names(js, stream.name):
                break
            await asyncio.sleep(0.25)
        await publisher.publish(subject, intent(7))
        await asyncio.wait_for(done.wait(), 10)
    finally:
        stop.set()
        await asyncio.wait_for(task, 5)
    assert got == ["intent-7"]
    info = await js.consumer_info(stream.name, own.durable)
    assert info.config.inactive_threshold == 30
