"""Partition leases against a real Redis: one owner per partition, takeover, fail-closed, release, fair sharing."""

from __future__ import annotations

import asyncio
import contextlib
import secrets

import pytest
import redis.asyncio as aioredis

from btcbot.runtime.leases import Callback, PartitionLeases, fair_share

pytestmark = pytest.mark.integration

SYMBOLS = ("BTCTRY", "ETHTRY", "AVAXTRY")


@pytest.fixture
async def client(redis_url: str):
    c = aioredis.from_url(redis_url)
    yield c
    await c.aclose()


@pytest.fixture
def prefix(redis_prefix: str) -> str:
    return f"{redis_prefix}:{secrets.token_hex(3)}"


class Events:
    def __init__(self) -> None:
        self.log: list[tuple[str, str]] = []

    async def acquired(self, symbol: str) -> None:
        self.log.append(("acquire", symbol))

    async def lost(self, symbol: str) -> None:
        self.log.append(("lose", symbol))


def leases(client, prefix, owner, events=None, ttl=0.3, renew=0.1):
    events = events or Events()
    return PartitionLeases(client, prefix, owner, SYMBOLS, ttl, renew, on_acquire=events.acquired, on_lose=events.lost)


async def test_two_owners_split_every_partition_exactly_once(client, prefix) -> None:
    a, b = leases(client, prefix, "a", ttl=5, renew=1), leases(client, prefix, "b", ttl=5, renew=1)
    assert not a.ready()
    await asyncio.gather(a.step(), b.step())
    assert a.ready()
    assert b.ready()
    assert a.owned() | b.owned() == set(SYMBOLS)
    assert not a.owned() & b.owned()
    await asyncio.gather(a.step(), b.step())  # renewing keeps the split
    assert a.owned() | b.owned() == set(SYMBOLS)
    assert not a.owned() & b.owned()
    await a.release_all()
    await b.release_all()


async def test_single_owner_takes_everything_in_one_round(client, prefix) -> None:
    events = Events()
    a = leases(client, prefix, "a", events)
    await a.step()
    assert a.owned() == set(SYMBOLS)
    assert events.log == [("acquire", s) for s in SYMBOLS]
    assert all(a.lease(s) is not None for s in SYMBOLS)
    await a.release_all()
    assert a.owned() == frozenset()
    assert events.log[3:] == [("lose", s) for s in SYMBOLS]


async def test_standby_takes_over_after_the_holder_stops_renewing(client, prefix) -> None:
    a_events, b_events = Events(), Events()
    a, b = leases(client, prefix, "a", a_events), leases(client, prefix, "b", b_events)
    await a.step()
    await b.step()
    assert b.owned() == frozenset()
    first = a.lease("BTCTRY")
    # a stalls: no renewals. It stops trusting its leases before they lapse in Redis...
    await asyncio.sleep(0.25)
    assert a.owned() == frozenset()
    await b.step()
    assert b.owned() == frozenset()  # ...while Redis still has them for a little longer
    await asyncio.sleep(0.1)
    await b.step()
    assert b.owned() == set(SYMBOLS)
    second = b.lease("BTCTRY")
    assert first is not None
    assert second is not None
    assert second.token > first.token
    await a.step()  # a wakes up: the renewal fails and it learns it lost everything
    assert a.owned() == frozenset()
    assert sorted(a_events.log) == sorted([("acquire", s) for s in SYMBOLS] + [("lose", s) for s in SYMBOLS])
    await b.release_all()


class Proxy:
    """A TCP proxy in front of Redis that can be cut, to play a Redis outage without touching the real one."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.server: asyncio.Server | None = None
        self.writers: list[asyncio.StreamWriter] = []

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return int(self.server.sockets[0].getsockname()[1])

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self.target)
        self.writers += [writer, up_writer]

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(Exception):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    async def cut(self) -> None:
        assert self.server is not None
        self.server.close()
        for w in self.writers:
            w.close()
        await self.server.wait_closed()


async def test_redis_down_owns_nothing_once_the_lease_would_lapse(client, prefix, redis_url) -> None:
    url = aioredis.connection.parse_url(redis_url)
    proxy = Proxy(str(url.get("host", "127.0.0.1")), int(url.get("port", 6379)))
    port = await proxy.start()
    flaky = aioredis.Redis(host="127.0.0.1", port=port, db=int(url.get("db", 0)), socket_timeout=0.2)
    events = Events()
    a = leases(flaky, prefix, "a", events)
    stop = asyncio.Event()
    task = asyncio.create_task(a.run(stop))
    try:
        for _ in range(50):
            if a.owned() == set(SYMBOLS):
                break
            await asyncio.sleep(0.02)
        assert a.owned() == set(SYMBOLS)
        await proxy.cut()
        await asyncio.sleep(0.3)  # the TTL: Redis would have let the leases lapse by now
        assert a.owned() == frozenset()
        assert ("lose", "BTCTRY") in events.log  # the loop noticed too, not only owns()
        b = leases(client, prefix, "b")
        await b.step()
        assert b.owned() == set(SYMBOLS)
        await b.release_all()
    finally:
        stop.set()
        await asyncio.wait_for(task, 5)
        await flaky.aclose()


async def test_stop_releases_so_a_standby_takes_over_at_once(client, prefix) -> None:
    a, b = leases(client, prefix, "a", ttl=30, renew=5), leases(client, prefix, "b", ttl=30, renew=5)
    stop = asyncio.Event()
    task = asyncio.create_task(a.run(stop))
    for _ in range(100):
        if a.ready():
            break
        await asyncio.sleep(0.01)
    assert a.ready()
    await b.step()
    assert b.owned() == frozenset()
    stop.set()
    await asyncio.wait_for(task, 5)
    assert a.owned() == frozenset()
    await b.step()  # well inside the 30 s TTL
    assert b.owned() == set(SYMBOLS)
    await b.release_all()


async def test_a_failed_rebuild_gives_the_lease_back(client, prefix) -> None:
    async def broken(symbol: str) -> None:
        if symbol == "ETHTRY":
            raise RuntimeError("history unavailable")

    a = PartitionLeases(client, prefix, "a", SYMBOLS, 5, 1, on_acquire=broken)
    b = leases(client, prefix, "b", ttl=5, renew=1)
    await a.step()
    assert a.owned() == {"BTCTRY", "AVAXTRY"}
    await b.step()
    assert b.owned() == {"ETHTRY"}
    await a.release_all()
    await b.release_all()


def test_renew_interval_must_leave_room_before_the_ttl() -> None:
    with pytest.raises(ValueError, match="renew interval"):
        PartitionLeases(aioredis.Redis(), "p", "a", SYMBOLS, 1.0, 0.9)


# -- fair sharing -------------------------------------------------------------------------------------------

PAIR = ("BTCTRY", "ETHTRY")


class Acting:
    """Records every on_acquire taken while another replica still owns the partition (owns() is what gates acting).

    With `locks` (client, prefix) it also records an on_lose that runs after the Redis lock was already given up:
    only meaningful while no lease lapses (long TTL, every replica stepping).
    """

    def __init__(self, locks: tuple[aioredis.Redis, str] | None = None) -> None:
        self.replicas: list[PartitionLeases] = []
        self.overlaps: list[str] = []
        self.handovers = 0
        self.locks = locks

    def events(self, owner: str) -> tuple[Callback, Callback]:
        async def acquired(symbol: str) -> None:
            self.handovers += 1
            self.overlaps += [f"{owner} took {symbol} from {r.owner}" for r in self.replicas if r.owns(symbol)]

        async def lost(symbol: str) -> None:
            if self.locks is not None:
                client, prefix = self.locks
                held = await client.get(f"{prefix}:lock:partition:{symbol}")
                if held is None or not held.decode().startswith(f"{owner}|"):
                    self.overlaps.append(f"{owner} released {symbol} before it stopped acting")

        return acquired, lost


def sharing(client, prefix, owner, acting, partitions=PAIR, ttl=5.0, renew=1.0) -> PartitionLeases:
    acquired, lost = acting.events(owner)
    leases = PartitionLeases(client, prefix, owner, partitions, ttl, renew, on_acquire=acquired, on_lose=lost)
    acting.replicas.append(leases)
    return leases


def assert_no_overlap(replicas: list[PartitionLeases], acting: Acting) -> None:
    assert acting.overlaps == []
    for i, one in enumerate(replicas):
        for other in replicas[i + 1 :]:
            assert not one.owned() & other.owned(), (
                f"{one.owner} and {other.owner} both own {one.owned() & other.owned()}"
            )


async def rounds(acting: Acting, n: int) -> None:
    for _ in range(n):
        for r in acting.replicas:
            await r.step()
            assert_no_overlap(acting.replicas, acting)


def test_fair_share_is_the_ceiling_of_partitions_per_live_member() -> None:
    assert fair_share(2, 1) == 2
    assert fair_share(2, 2) == 1
    assert fair_share(2, 3) == 1
    assert fair_share(3, 2) == 2
    assert fair_share(5, 0) == 5


async def test_two_replicas_end_up_with_one_partition_each(client, prefix) -> None:
    acting = Acting(locks=(client, prefix))
    a, b = sharing(client, prefix, "a", acting), sharing(client, prefix, "b", acting)
    await a.step()
    assert a.owned() == set(PAIR)  # alone it owns everything, as before
    await b.step()  # b joins, finds nothing free
    assert_no_overlap([a, b], acting)
    assert b.owned() == frozenset()
    await a.step()  # a counts two members for the first time: it waits a round before giving anything back
    assert_no_overlap([a, b], acting)
    assert a.owned() == set(PAIR)
    await b.step()
    await a.step()  # the same two members again: a gives one back
    assert_no_overlap([a, b], acting)
    assert len(a.owned()) == 1
    await b.step()
    assert a.members == b.members == 2
    assert len(a.owned()) == len(b.owned()) == 1
    assert a.owned() | b.owned() == set(PAIR)
    assert a.owned() == {"BTCTRY"}  # a gave back the one it took last
    handovers = acting.handovers
    await rounds(acting, 3)  # stable: no more handovers once shared
    assert acting.handovers == handovers
    assert len(a.owned()) == len(b.owned()) == 1
    await a.release_all()
    await b.release_all()


async def test_concurrent_rounds_share_without_overlap(client, prefix) -> None:
    acting = Acting(locks=(client, prefix))
    replicas = [sharing(client, prefix, name, acting) for name in ("a", "b")]
    for _ in range(6):
        await asyncio.gather(*(r.step() for r in replicas))
        assert_no_overlap(replicas, acting)
    assert sorted(len(r.owned()) for r in replicas) == [1, 1]
    for r in replicas:
        await r.release_all()


async def test_a_third_replica_beyond_the_partitions_owns_nothing(client, prefix) -> None:
    acting = Acting(locks=(client, prefix))
    replicas = [sharing(client, prefix, name, acting) for name in ("a", "b", "c")]
    await rounds(acting, 3)
    assert sorted(len(r.owned()) for r in replicas) == [0, 1, 1]
    assert set().union(*(r.owned() for r in replicas)) == set(PAIR)
    assert all(r.members == 3 for r in replicas)
    for r in replicas:
        await r.release_all()


async def test_a_replica_that_stops_renewing_leaves_its_share_to_the_others(client, prefix) -> None:
    acting = Acting()
    a = sharing(client, prefix, "a", acting, ttl=0.3, renew=0.1)
    b = sharing(client, prefix, "b", acting, ttl=0.3, renew=0.1)
    await rounds(acting, 3)
    assert len(a.owned()) == len(b.owned()) == 1
    # a stalls (no step, no release): b must hold both within the TTL, never while a still trusts its lease.
    for _ in range(8):
        await asyncio.sleep(0.05)
        await b.step()
        assert_no_overlap([a, b], acting)
        if b.owned() == set(PAIR):
            break
    assert b.owned() == set(PAIR)
    assert b.members == 1
    assert a.owned() == frozenset()
    # a comes back: it learns it lost its lease, rejoins, and the two share again.
    await rounds(acting, 3)
    assert len(a.owned()) == len(b.owned()) == 1
    await a.release_all()
    await b.release_all()


async def test_a_replica_that_stops_gracefully_hands_over_at_the_next_round(client, prefix) -> None:
    acting = Acting()
    a, b = sharing(client, prefix, "a", acting), sharing(client, prefix, "b", acting)
    await rounds(acting, 3)
    assert len(a.owned()) == len(b.owned()) == 1
    await a.release_all()  # well inside the 5 s TTL, a leaves the members too
    await b.step()
    assert b.owned() == set(PAIR)
    assert b.members == 1
    await b.release_all()


async def test_the_partition_set_can_change_and_dropped_partitions_go_back(client, prefix) -> None:
    events = Events()
    a = leases(client, prefix, "a", events, ttl=5, renew=1)
    b = leases(client, prefix, "b", ttl=5, renew=1)
    a.set_partitions(["BTCTRY"])
    b.set_partitions(["BTCTRY"])
    await a.step()
    assert a.owned() == {"BTCTRY"}
    # A new selection: BTCTRY is out (not owned at once, given back next round), two others come in.
    a.set_partitions(["ETHTRY", "AVAXTRY"])
    b.set_partitions(["ETHTRY", "AVAXTRY", "BTCTRY"])
    assert not a.owns("BTCTRY")
    await a.step()
    assert a.owned() == {"ETHTRY", "AVAXTRY"}
    assert ("lose", "BTCTRY") in events.log
    await b.step()
    assert b.owned() == {"BTCTRY"}  # a released it, so b takes it at once
    await a.release_all()
    await b.release_all()
