"""WebSocket frames from btcturk-api.md parsed into typed messages."""

import json
from decimal import Decimal

import pytest

from btcbot.btcturk.errors import ProtocolError
from btcbot.btcturk.models import OrderMethod, Side
from btcbot.btcturk.wsmodels import (
    BalanceUpdated,
    BookChange,
    BookDiff,
    BookSnapshot,
    Hello,
    LoginResult,
    OrderEvent,
    OrderEventKind,
    OrderMatch,
    SubscriptionAck,
    TickerAll,
    TradeList,
    Unknown,
    UserTradeEvent,
    WsTicker,
    WsTrade,
)
from btcbot.btcturk.wsparse import decode_frame, subscribe_frame

D = Decimal


def test_subscribe_frame():
    assert json.loads(subscribe_frame("obdiff", "BTCTRY")) == [
        151,
        {"type": 151, "channel": "obdiff", "event": "BTCTRY", "join": True},
    ]
    assert json.loads(subscribe_frame("trade", "BTCTRY", join=False))[1]["join"] is False


def test_hello_and_acks():
    assert decode_frame('[991, {"type":991,"current":"5.1.0","min":"2.3.0"}]') == Hello("5.1.0", "2.3.0")
    ack = decode_frame('[100, {"type":100, "ok":true, "message":"join|trade:BTCTRY"}]')
    assert ack == SubscriptionAck(ok=True, message="join|trade:BTCTRY", join=True, channel="trade", event="BTCTRY")
    leave = decode_frame('[100, {"type":100, "ok":true, "message":"leave|obdiff:ETHTRY"}]')
    assert isinstance(leave, SubscriptionAck)
    assert (leave.join, leave.channel, leave.event) == (False, "obdiff", "ETHTRY")
    odd = decode_frame('[100, {"type":100, "ok":false, "message":"whatever"}]')
    assert isinstance(odd, SubscriptionAck)
    assert (odd.ok, odd.join, odd.channel) == (False, None, None)
    assert decode_frame('[114, {"type":114, "ok":false, "message":"bad sig"}]') == LoginResult(False, "bad sig")


def test_ticker_pair_and_all():
    item = {"PS": "BTCTRY", "B": "461928", "A": 462485, "BA": "0.1", "AA": "0.2", "LA": "462485", "O": "456915",
            "H": "473976", "L": "444201", "V": "917.41", "AV": "462868.29", "D": "5570", "DP": "1.22",
            "DS": "TRY", "NS": "BTC", "PId": 1}  # fmt: skip
    t = decode_frame(json.dumps([402, {**item, "type": 402, "channel": "ticker", "event": "BTCTRY"}]))
    assert isinstance(t, WsTicker)
    assert (t.pair, t.bid, t.ask, t.last, t.daily_percent, t.pair_id) == (
        "BTCTRY", D("461928"), D("462485"), D("462485"), D("1.22"), 1,
    )  # fmt: skip
    all_ = decode_frame(json.dumps([401, {"items": [item, {"PS": "ETHTRY"}], "channel": "ticker", "event": "all",
                                          "type": 401}]))  # fmt: skip
    assert isinstance(all_, TickerAll)
    assert [i.pair for i in all_.items] == ["BTCTRY", "ETHTRY"]
    assert all_.items[1].bid is None


def test_trades_421_422():
    lst = decode_frame(
        '[421, {"symbol":"BTCTRY","items":[{"D":"1651204111661","I":"100163785789620803","A":"0.0072834700",'
        '"P":"586484.0000000000","S":0}],"channel":"trade","event":"BTCTRY","type":421}]'
    )
    assert lst == TradeList(
        pair="BTCTRY",
        trades=(WsTrade("BTCTRY", "100163785789620803", 1651204111661, D("586484"), D("0.00728347"), Side.BUY),),
    )
    one = decode_frame(
        '[422, {"D":"1651204593830","I":"100163785789620825","A":"0.0008777700","P":"586950.0000000000",'
        '"PS":"BTCTRY","S":1,"channel":"trade","event":"BTCTRY","type":422}]'
    )
    assert one == WsTrade("BTCTRY", "100163785789620825", 1651204593830, D("586950"), D("0.00087777"), Side.SELL)


def test_book_431_432():
    snap = decode_frame(
        '[431, {"CS":6905470,"PS":"BTCTRY","AO":[{"A":"0.01394686","P":"591468"}],'
        '"BO":[{"A":"0.00289257","P":"590951"}],"channel":"orderbook","event":"BTCTRY","type":431}]'
    )
    assert snap == BookSnapshot(
        pair="BTCTRY",
        cs=6905470,
        bids=((D("590951"), D("0.00289257")),),
        asks=((D("591468"), D("0.01394686")),),
        channel="orderbook",
    )
    diff = decode_frame(
        '[432, {"CS":6905471,"PS":"BTCTRY","AO":[{"CP":3,"P":"67.64","A":"7"}],'
        '"BO":[{"CP":1,"P":"590952","A":"1"},{"CP":0,"P":"590951","A":"2"}],"channel":"obdiff",'
        '"event":"BTCTRY","type":432}]'
    )
    assert isinstance(diff, BookDiff)
    assert diff.cs == 6905471
    assert [c.change for c in diff.bids] == [BookChange.NEW, BookChange.UPDATE]
    assert diff.asks[0].change is BookChange.DELETE
    with pytest.raises(ProtocolError, match="unknown CP"):
        decode_frame('[432, {"CS":1,"PS":"X","AO":[{"CP":7,"P":"1","A":"1"}],"BO":[],"type":432}]')


def test_order_events_451_452():
    sample = {"type": 451, "pairId": 60, "symbol": "DOTTRY", "id": 25338545070, "method": 0, "userId": 10062194,
              "orderType": 1, "price": "1515.58", "amount": "6.08", "numLeft": "6.08", "denomLeft": "9203.66872832",
              "newOrderClientId": "advanced-android"}  # fmt: skip
    ev = decode_frame(json.dumps([451, sample]))
    assert ev == OrderEvent(
        kind=OrderEventKind.INSERT,
        order_id=25338545070,
        pair="DOTTRY",
        side=Side.SELL,
        method=OrderMethod.LIMIT,
        price=D("1515.58"),
        amount=D("6.08"),
        num_left=D("6.08"),
        denom_left=D("9203.66872832"),
        client_order_id="advanced-android",
        pair_id=60,
        user_id=10062194,
    )
    deleted = decode_frame(json.dumps([452, {**sample, "type": 452, "newOrderClientId": None}]))
    assert isinstance(deleted, OrderEvent)
    assert deleted.kind is OrderEventKind.DELETE
    assert deleted.client_order_id is None


def test_order_match_441():
    m = decode_frame(
        '[441, {"type":441,"id":25338545070,"method":0,"pair":60,"symbol":"DOTTRY","isBid":true,'
        '"price":"1515.58","amount":"1.5","timestamp":1700000000000,"clientId":"c1","numLeft":"4.58"}]'
    )
    assert isinstance(m, OrderMatch)
    assert (m.order_id, m.side, m.pair, m.pair_id, m.amount, m.client_order_id, m.num_left) == (
        25338545070, Side.BUY, "DOTTRY", 60, D("1.5"), "c1", D("4.58"),
    )  # fmt: skip


def test_user_trade_423():
    ev = decode_frame(
        '[423, {"type":423,"id":1181163798924649598,"orderId":10938696222,"timestamp":1663848223334,'
        '"numeratorSymbol":"ETHW","denominatorSymbol":"TRY","amount":"-0.3384","price":"122.00",'
        '"fee":"-0.06297817","tax":"-0.01133607","orderType":"sell","orderClientId":"x","preciseAmount":"-0.33840811"}]'
    )
    assert isinstance(ev, UserTradeEvent)
    assert ev.trade.id == 1181163798924649598
    assert ev.trade.fee == D("-0.06297817")
    assert ev.trade.side is Side.SELL


def test_balance_and_unknown():
    assert decode_frame('[201, {"type":201,"userId":5,"payload":"x"}]') == BalanceUpdated(5, "x")
    unknown = decode_frame('[801, {"type":801,"id":1,"ok":true,"message":"hi"}]')
    assert isinstance(unknown, Unknown)
    assert unknown.type == 801
    assert decode_frame('{"type":991,"current":"1"}') == Hello("1", None)


@pytest.mark.parametrize("raw", ["[1,2,3]", "nope", '"x"', '[451, {"type":451}]'])
def test_bad_frames(raw):
    with pytest.raises(ProtocolError):
        decode_frame(raw)
