"""WebSocket client against a local websockets server: login, subscribe, reconnect, storm guard."""

import asyncio
import json

import pytest
from websockets.asyncio.server import ServerConnection, serve

from btcbot.btcturk.auth import Secret, sign
from btcbot.btcturk.book import LocalBook
from btcbot.btcturk.errors import AuthError
from btcbot.btcturk.retry import RetryPolicy
from btcbot.btcturk.ws import BtcTurkWebSocket
from btcbot.btcturk.wsmodels import (
    BookDiff,
    BookSnapshot,
    Connected,
    Disconnected,
    Hello,
    OrderEvent,
    SubscriptionAck,
)

PUB = "wspub"
PRIV = "YnRjdHVyay10ZXN0LXNlY3JldC1ieXRlcw=="
FAST = RetryPolicy(base_delay=0.01, max_delay=0.02)


class FakeExchange:
    def __init__(self, drop_first=True):
        self.connections = 0
        self.received: list[list] = []
        self.drop_first = drop_first

    async def handler(self, conn: ServerConnection) -> None:
        self.connections += 1
        number = self.connections
        await send(conn, 991, current="5.1.0", min="2.3.0")
        async for raw in conn:
            msg = json.loads(raw)
            self.received.append(msg)
            kind, body = msg
            if kind == 114:
                ok = body["signature"] == sign(Secret(PRIV), body["publicKey"] + str(body["nonce"]))
                await send(conn, 114, ok=ok, message="ok" if ok else "bad")
                if ok:
                    await send(conn, 451, pairId=1, symbol="BTCTRY", id=7, method=0, userId=1, orderType=0,
                               price="1", amount="2", numLeft="2", denomLeft="2", newOrderClientId="c")  # fmt: skip
            elif kind == 151:
                action = "join" if body["join"] else "leave"
                await send(conn, 100, ok=True, message=f"{action}|{body['channel']}:{body['event']}")
                if body["join"] and body["channel"] == "obdiff":
                    cs = 100 * number
                    book = {"PS": "BTCTRY", "channel": "obdiff", "event": "BTCTRY"}
                    await send(conn, 431, CS=cs, AO=[{"A": "1", "P": "11"}], BO=[{"A": "1", "P": "10"}], **book)
                    await send(conn, 432, CS=cs + 1, AO=[], BO=[{"CP": 0, "A": "3", "P": "10"}], **book)
                    if number == 1 and self.drop_first:
                        await conn.close()
                        return


async def send(conn: ServerConnection, kind: int, **fields) -> None:
    await conn.send(json.dumps([kind, {"type": kind, **fields}]))


async def drain(ws: BtcTurkWebSocket) -> None:
    async with asyncio.timeout(5):
        async for _ in ws.messages():
            pass


@pytest.fixture
async def exchange():
    fake = FakeExchange()
    async with serve(fake.handler, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        yield fake, f"ws://127.0.0.1:{port}"


async def test_login_subscribe_book_and_reconnect(exchange):
    fake, url = exchange
    ws = BtcTurkWebSocket(url, public_key=PUB, private_key=PRIV, backoff=FAST)
    await ws.subscribe("obdiff", "BTCTRY")
    seen = []
    book = LocalBook("BTCTRY")
    async with ws:
        async with asyncio.timeout(5):
            async for message in ws.messages():
                seen.append(message)
                if isinstance(message, Disconnected):
                    book.invalidate()
                elif isinstance(message, BookSnapshot):
                    book.apply_snapshot(message)
                elif isinstance(message, BookDiff):
                    book.apply_diff(message)
                    if message.cs == 201:
                        break
    kinds = [type(m) for m in seen]
    assert kinds[0] is Connected
    assert Hello in kinds
    assert OrderEvent in kinds  # user event after login, without subscribing
    assert sum(1 for m in seen if isinstance(m, Disconnected)) == 1
    assert [m.connection for m in seen if isinstance(m, Connected)] == [1, 2]
    acks = [m for m in seen if isinstance(m, SubscriptionAck)]
    assert [(a.channel, a.event, a.join) for a in acks] == [("obdiff", "BTCTRY", True)] * 2
    assert book.cs == 201
    assert book.bids() == ((10, 3),)
    logins = [m for m in fake.received if m[0] == 114]
    assert len(logins) == 2  # logged in again after the reconnect
    assert logins[0][1]["nonce"] == 3000


async def test_login_refused_raises_auth_error(exchange):
    _, url = exchange
    ws = BtcTurkWebSocket(url, public_key=PUB, private_key="d3Jvbmc=", backoff=FAST)
    async with ws:
        with pytest.raises(AuthError, match="login refused"):
            await drain(ws)


async def test_resubscribe_and_unsubscribe_send_frames():
    fake = FakeExchange(drop_first=False)
    async with serve(fake.handler, "127.0.0.1", 0) as server:
        url = f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}"
        ws = BtcTurkWebSocket(url, backoff=FAST)
        async with ws:
            async with asyncio.timeout(5):
                async for message in ws.messages():
                    if isinstance(message, Connected):
                        await ws.subscribe("trade", "BTCTRY")
                        await ws.resubscribe("obdiff", "ETHTRY")
                        await ws.unsubscribe("trade", "BTCTRY")
                    if isinstance(message, SubscriptionAck) and message.join is False and message.channel == "trade":
                        break
        assert ws.subscriptions == (("obdiff", "ETHTRY"),)
    sent = [(m[1]["channel"], m[1]["event"], m[1]["join"]) for m in fake.received if m[0] == 151]
    assert sent == [
        ("trade", "BTCTRY", True),
        ("obdiff", "ETHTRY", False),
        ("obdiff", "ETHTRY", True),
        ("trade", "BTCTRY", False),
    ]


async def test_connection_attempts_stay_under_15_per_minute():
    now = [0.0]
    attempts: list[float] = []

    async def fake_sleep(seconds):
        now[0] += seconds
        await asyncio.sleep(0)

    ws: BtcTurkWebSocket

    async def failing_connector(url):
        attempts.append(now[0])
        if len(attempts) >= 40:
            await ws.aclose()
        raise OSError("connection refused")

    ws = BtcTurkWebSocket(
        "ws://unused", connector=failing_connector, clock=lambda: now[0], sleep=fake_sleep,
        backoff=RetryPolicy(base_delay=0.001, max_delay=0.002),
    )  # fmt: skip
    async with asyncio.timeout(5):
        async for _ in ws.messages():
            pytest.fail("no message expected")
    assert len(attempts) == 40
    worst = max(sum(1 for t in attempts if start <= t < start + 60.0) for start in attempts)
    assert worst <= 15


def test_requires_both_keys():
    with pytest.raises(ValueError, match="both"):
        BtcTurkWebSocket(public_key="x")
    assert PRIV not in repr(BtcTurkWebSocket(public_key=PUB, private_key=PRIV))
