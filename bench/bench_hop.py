"""Benchmark: the cost of one JetStream hop through the service kit, against raw nats-py in the same run.

Starts its own nats-server (JetStream, temporary store, free port), then measures two paths on the same server:

  raw  nats-py: js.publish of a msgpack payload with a Nats-Msg-Id, pull fetch (batch 50), decode, ack
  kit  btcbot.runtime: NatsPublisher.publish of a BookSnapshot, Consumer.run with a trivial handler (typed
       decode, consumer span continuing the producer's trace, metrics, ack)

Each path runs two phases on a fresh stream of its own:
  pipelined  N messages published back to back (each publish waits for its PubAck, as services do) while the
             consumer drains them: throughput, and latency including queueing
  ping-pong  one message in flight at a time: the latency of the hop itself

Latency is from just before publish to the handler's first line. Spans are recorded by an SDK tracer provider
without exporter, which is what a service runs with when no trace file or OTLP endpoint is set.

    .venv/bin/python bench/bench_hop.py [-n 5000] [--pingpong 1000] [--rounds 3]

Stops by itself (every wait is bounded) and removes the server and its store.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import msgspec
import nats
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy, StreamConfig
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider

from btcbot.contracts import ids
from btcbot.contracts.codec import Codec
from btcbot.contracts.messages import BookSnapshot, Level
from btcbot.contracts.streams import ConsumerSpec, StreamSpec
from btcbot.runtime.bus import Delivery
from btcbot.runtime.consumer import Consumer
from btcbot.runtime.jetstream import NatsPublisher, provision
from btcbot.runtime.logging import configure_logging

ROOT = Path(__file__).resolve().parent.parent
NATS_SERVER = ROOT / ".venv" / "bin" / "nats-server"
SYMBOL = "BTCTRY"
BATCH = 50
PHASE_TIMEOUT = 120.0  # seconds; a phase that has not finished by then is a failure, not a hang


# --- server ----------------------------------------------------------------------------------------------


@dataclass
class Server:
    proc: subprocess.Popen[bytes]
    url: str
    workdir: Path

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        shutil.rmtree(self.workdir, ignore_errors=True)


def start_server() -> Server:
    """A private nats-server with JetStream on a free loopback port."""
    workdir = Path(tempfile.mkdtemp(prefix="bench-hop-"))
    ports_dir, store = workdir / "ports", workdir / "store"
    ports_dir.mkdir()
    args = [str(NATS_SERVER), "-js", "-a", "127.0.0.1", "-p", "-1", "--ports_file_dir", str(ports_dir)]
    proc = subprocess.Popen([*args, "-sd", str(store)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    server = Server(proc, "", workdir)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            err = proc.stderr.read().decode() if proc.stderr else ""
            server.stop()
            raise RuntimeError(f"nats-server exited: {err}")
        files = list(ports_dir.glob("*.ports"))
        if files:
            with contextlib.suppress(json.JSONDecodeError):
                server.url = json.loads(files[0].read_text())["nats"][0]
                return server
        time.sleep(0.05)
    server.stop()
    raise RuntimeError("nats-server did not write its ports file within 15 s")


# --- measurement -----------------------------------------------------------------------------------------


@dataclass
class Result:
    msgs_per_s: float
    p50_us: float
    p99_us: float


def summarize(latencies_ns: list[int], seconds: float) -> Result:
    ordered = sorted(latencies_ns)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return Result(len(ordered) / seconds, statistics.median(ordered) / 1e3, p99 / 1e3)


class Tracker:
    """Publish-start times by message id, latencies at handling, and a signal when enough arrived."""

    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.sent: dict[str, int] = {}
        self.latencies: list[int] = []
        self.done = asyncio.Event()
        self.arrived = asyncio.Event()

    def before_publish(self, msg_id: str) -> None:
        self.sent[msg_id] = time.perf_counter_ns()

    def handled(self, msg_id: str) -> None:
        self.latencies.append(time.perf_counter_ns() - self.sent.pop(msg_id))
        self.arrived.set()
        if len(self.latencies) >= self.expected:
            self.done.set()


def book(seq: int) -> BookSnapshot:
    """A realistic 10-level book (the strategy's input hop)."""
    ts = 1_764_000_000_000_000_000 + seq * 1_000_000
    bids = tuple(Level(Decimal(3_500_000 - i * 25), Decimal("0.0125") + i) for i in range(10))
    asks = tuple(Level(Decimal(3_500_050 + i * 25), Decimal("0.0110") + i) for i in range(10))
    return BookSnapshot(
        id=ids.book_id(SYMBOL, ts, seq),
        ts_ns=ts,
        symbol=SYMBOL,
        sequence=seq,
        bids=bids,
        asks=asks,
        exchange_ts_ns=ts,
        received_ts_ns=ts + 1_000,
    )


def as_plain(message: BookSnapshot) -> dict[str, Any]:
    """The same content as a plain dict, for the raw path's msgpack payload."""
    return msgspec.to_builtins(message)  # type: ignore[no-any-return]


Publish = Callable[[BookSnapshot], Awaitable[None]]


async def produce(messages: list[BookSnapshot], publish: Publish, tracker: Tracker, pingpong: bool) -> None:
    for message in messages:
        tracker.arrived.clear()
        tracker.before_publish(message.id)
        await publish(message)
        if pingpong:
            await asyncio.wait_for(tracker.arrived.wait(), 10)


async def run_phase(
    messages: list[BookSnapshot],
    publish: Publish,
    consume: Callable[[Tracker, asyncio.Event], Coroutine[Any, Any, None]],
    pingpong: bool,
) -> Result:
    tracker = Tracker(len(messages))
    stop = asyncio.Event()
    consumer: asyncio.Task[None] = asyncio.create_task(consume(tracker, stop))
    started = time.perf_counter()
    try:
        await asyncio.wait_for(produce(messages, publish, tracker, pingpong), PHASE_TIMEOUT)
        await asyncio.wait_for(tracker.done.wait(), PHASE_TIMEOUT)
    finally:
        elapsed = time.perf_counter() - started
        stop.set()
        await asyncio.wait_for(consumer, 10)
    return summarize(tracker.latencies, elapsed)


# --- the two paths -------------------------------------------------------------------------------------


async def raw_path(js: Any, name: str, messages: list[BookSnapshot], pingpong: bool) -> Result:
    subject = f"bench.{name.lower()}.{SYMBOL}"
    await js.add_stream(StreamConfig(name=name, subjects=[f"bench.{name.lower()}.*"]))
    await js.add_consumer(
        name,
        ConsumerConfig(
            durable_name=f"{name.lower()}-c", ack_policy=AckPolicy.EXPLICIT, deliver_policy=DeliverPolicy.ALL
        ),
    )
    payloads = {m.id: as_plain(m) for m in messages}
    encoder, decoder = msgspec.msgpack.Encoder(), msgspec.msgpack.Decoder()

    async def publish(message: BookSnapshot) -> None:
        body = encoder.encode(payloads[message.id])
        await js.publish(subject, body, headers={"Nats-Msg-Id": message.id})

    async def consume(tracker: Tracker, stop: asyncio.Event) -> None:
        sub = await js.pull_subscribe_bind(f"{name.lower()}-c", stream=name)
        try:
            while not stop.is_set():
                try:
                    msgs = await sub.fetch(batch=BATCH, timeout=1.0)
                except nats.errors.TimeoutError:
                    continue
                for msg in msgs:
                    data = decoder.decode(msg.data)
                    tracker.handled(data["id"])
                    await msg.ack()
        finally:
            await sub.unsubscribe()

    try:
        return await run_phase(messages, publish, consume, pingpong)
    finally:
        await js.delete_stream(name)


async def kit_path(js: Any, name: str, messages: list[BookSnapshot], pingpong: bool) -> Result:
    prefix = f"bench{name.lower()}"
    stream = StreamSpec(name, (f"{prefix}.*",), "benchmark")
    spec = ConsumerSpec(f"{prefix}-c", name, (f"{prefix}.*",))
    await provision(js, [stream], [spec])
    publisher = NatsPublisher(js)
    subject = f"{prefix}.{SYMBOL}"

    async def publish(message: BookSnapshot) -> None:
        await publisher.publish(subject, message)

    async def consume(tracker: Tracker, stop: asyncio.Event) -> None:
        async def handler(message: BookSnapshot, delivery: Delivery) -> None:
            tracker.handled(message.id)

        consumer: Consumer[BookSnapshot] = Consumer(
            "bench", js, publisher, spec, Codec(BookSnapshot), handler, batch=BATCH
        )
        await consumer.run(stop)

    try:
        return await run_phase(messages, publish, consume, pingpong)
    finally:
        await js.delete_stream(name)


# --- main ----------------------------------------------------------------------------------------------


async def bench(n: int, n_pingpong: int, rounds: int, url: str) -> dict[str, dict[str, list[Result]]]:
    nc = await nats.connect(url, name="bench-hop")
    js = nc.jetstream(timeout=10)
    seq = iter(range(1, 10**9))

    def batch(count: int) -> list[BookSnapshot]:
        return [book(next(seq)) for _ in range(count)]

    results: dict[str, dict[str, list[Result]]] = {"raw": {}, "kit": {}}
    paths = {"raw": raw_path, "kit": kit_path}
    try:
        # Warm up both paths (connections, server file store, code paths) before anything is timed.
        await raw_path(js, "WARMRAW", batch(300), pingpong=False)
        await kit_path(js, "WARMKIT", batch(300), pingpong=False)
        for r in range(rounds):
            # Alternate which path goes first, so drift in the machine's load does not favour one.
            order = ("raw", "kit") if r % 2 == 0 else ("kit", "raw")
            for phase, count, pingpong in (("pipelined", n, False), ("ping-pong", n_pingpong, True)):
                for path in order:
                    name = f"{path.upper()}{phase[:4].upper()}{r}"
                    res = await paths[path](js, name, batch(count), pingpong)
                    results[path].setdefault(phase, []).append(res)
    finally:
        await nc.drain()
    return results


def median(results: list[Result]) -> Result:
    """Per-figure median over rounds."""
    return Result(
        statistics.median(r.msgs_per_s for r in results),
        statistics.median(r.p50_us for r in results),
        statistics.median(r.p99_us for r in results),
    )


def report(results: dict[str, dict[str, list[Result]]], n: int, n_pingpong: int, rounds: int) -> None:
    raw = {phase: median(rs) for phase, rs in results["raw"].items()}
    kit = {phase: median(rs) for phase, rs in results["kit"].items()}
    print(
        f"bench_hop: one JetStream hop, BookSnapshot (10 levels), median of {rounds} rounds, "
        f"{os.cpu_count()} CPUs, Python {sys.version.split()[0]}"
    )
    print(f"{'phase':<11} {'path':<4} {'msgs':>6} {'msgs/s':>9} {'p50 us':>9} {'p99 us':>9}")
    for phase, count in (("pipelined", n), ("ping-pong", n_pingpong)):
        for path, res in (("raw", raw[phase]), ("kit", kit[phase])):
            print(f"{phase:<11} {path:<4} {count:>6} {res.msgs_per_s:>9.0f} {res.p50_us:>9.0f} {res.p99_us:>9.0f}")
    throughput = raw["pipelined"].msgs_per_s / kit["pipelined"].msgs_per_s
    hop_p50 = kit["ping-pong"].p50_us / raw["ping-pong"].p50_us
    hop_p99 = kit["ping-pong"].p99_us / raw["ping-pong"].p99_us
    print(
        f"kit overhead: throughput x{throughput:.2f} slower (pipelined), "
        f"hop latency x{hop_p50:.2f} at p50 and x{hop_p99:.2f} at p99 (ping-pong)"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", type=int, default=5000, help="messages in the pipelined phase (max 100000)")
    parser.add_argument("--pingpong", type=int, default=1000, help="messages in the ping-pong phase (max 20000)")
    parser.add_argument("--rounds", type=int, default=3, help="repeats of both phases, reported as medians (max 10)")
    args = parser.parse_args()
    if not (0 < args.n <= 100_000 and 0 < args.pingpong <= 20_000 and 0 < args.rounds <= 10):
        parser.error("message counts out of range")
    if not NATS_SERVER.exists():
        print(f"bench_hop: {NATS_SERVER} is missing; run `uv sync` first", file=sys.stderr)
        return 2
    # As in a service, minus the info lines (stream creation) that would clutter the figures.
    configure_logging("bench", "bench", "WARNING", "console")
    trace.set_tracer_provider(TracerProvider())
    server = start_server()
    try:
        results = asyncio.run(bench(args.n, args.pingpong, args.rounds, server.url))
    finally:
        server.stop()
    report(results, args.n, args.pingpong, args.rounds)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
