"""Round trip for every message type, tag stability and id derivation."""

from __future__ import annotations

from decimal import Decimal

import msgspec
import pytest

from btcbot.contracts import ids, subjects
from btcbot.contracts.codec import Codec, decode, encode
from btcbot.contracts.messages import (
    ALL_MESSAGE_TYPES,
    Alarm,
    Balance,
    BookSnapshot,
    CancelOrder,
    DeadLetter,
    KillSwitch,
    Level,
    Message,
    ModeChanged,
    OrderAccepted,
    OrderCanceled,
    OrderDenied,
    OrderFilled,
    OrderIntent,
    OrderRejected,
    PortfolioSnapshot,
    Position,
    ResumeSymbol,
    SubmitOrder,
    SymbolHold,
    TradeTick,
    UniverseMember,
    UniverseRejection,
    UniverseSelected,
)

TS = 1_764_000_000_000_000_000
D = Decimal

SAMPLES: list[Message] = [
    BookSnapshot(
        id="book:BTCTRY:1:7",
        ts_ns=TS,
        symbol="BTCTRY",
        sequence=7,
        bids=(Level(D("3500000"), D("0.12345678")),),
        asks=(Level(D("3500100"), D("1.5")),),
        exchange_ts_ns=TS - 5,
        received_ts_ns=TS - 1,
        source="ws",
    ),
    TradeTick(
        id="t",
        ts_ns=TS,
        symbol="BTCTRY",
        trade_id="100163785789620825",
        price=D("586950.0000000000"),
        quantity=D("0.00087777"),
        taker_side="sell",
        exchange_ts_ns=TS,
    ),
    OrderIntent(
        id="i",
        ts_ns=TS,
        strategy="profit_v1",
        symbol="BTCTRY",
        side="buy",
        order_type="limit",
        price=D("3500000"),
        quantity=D("0.001"),
        reason="entry: spread 3 bps",
        book_id="b",
    ),
    SubmitOrder(
        id="s",
        ts_ns=TS,
        client_order_id="bbabc",
        intent_id="i",
        strategy="profit_v1",
        symbol="BTCTRY",
        side="buy",
        order_type="market",
        price=None,
        quantity=D("100.5"),
        checks=("tick", "notional"),
    ),
    OrderDenied(
        id="d",
        ts_ns=TS,
        intent_id="i",
        strategy="profit_v1",
        symbol="BTCTRY",
        reason="MIN_NOTIONAL",
        detail="99 < 99.91",
    ),
    CancelOrder(id="c", ts_ns=TS, client_order_id="bbabc", symbol="BTCTRY", reason="stale", requested_by="operator"),
    OrderAccepted(
        id="a",
        ts_ns=TS,
        client_order_id="bbabc",
        exchange_order_id="9932534",
        intent_id="i",
        strategy="profit_v1",
        symbol="BTCTRY",
        side="buy",
        order_type="limit",
        price=D("20000.00"),
        quantity=D("0.001"),
    ),
    OrderRejected(
        id="r",
        ts_ns=TS,
        client_order_id="bbabc",
        intent_id="i",
        strategy="profit_v1",
        symbol="BTCTRY",
        reason="BALANCE_NOT_ENOUGH",
    ),
    OrderCanceled(
        id="x",
        ts_ns=TS,
        client_order_id="bbabc",
        exchange_order_id="1",
        symbol="BTCTRY",
        filled_quantity=D("0"),
    ),
    OrderFilled(
        id="f",
        ts_ns=TS,
        client_order_id="bbabc",
        exchange_order_id="1",
        strategy="profit_v1",
        symbol="BTCTRY",
        side="buy",
        trade_id="42",
        price=D("3500000"),
        quantity=D("0.0005"),
        fee=D("1.575"),
        fee_asset="TRY",
        tax=D("0.2835"),
    ),
    PortfolioSnapshot(
        id="p",
        ts_ns=TS,
        account="main",
        quote_asset="TRY",
        balances=(Balance(asset="TRY", total=D("1000")),),
        positions=(
            Position(
                symbol="BTCTRY",
                quantity=D("0.1"),
                avg_cost=D("3"),
                realized_pnl=D(0),
                unrealized_pnl=D("-1.5"),
            ),
        ),
        exposure=D("0.3"),
        realized_pnl=D(0),
        unrealized_pnl=D("-1.5"),
        fees=D("0.1"),
        equity=D("998.5"),
        peak_equity=D("1000"),
        drawdown=D("0.0015"),
        fills=3,
    ),
    ModeChanged(id="m", ts_ns=TS, mode="REDUCE_ONLY", reason="drawdown", operator="alice"),
    KillSwitch(id="k", ts_ns=TS, engaged=True, reason="exchange incident", operator="bob"),
    ModeChanged(
        id="a",
        ts_ns=TS,
        mode="OBSERVE_ONLY",
        reason="drawdown 3100 >= 3000",
        operator="risk",
        source="auto",
        reasons=("DRAWDOWN",),
    ),
    Alarm(id="al", ts_ns=TS, source="ledger", kind="reconcile_mismatch", active=True, detail="BTC 1 != 2"),
    ResumeSymbol(id="r", ts_ns=TS, symbol="ETHTRY", reason="reconciled by hand", operator="alice"),
    DeadLetter(
        id="dl",
        ts_ns=TS,
        original_subject="intent.BTCTRY",
        original_stream="INTENTS",
        original_sequence=9,
        headers={"Nats-Msg-Id": "x"},
        payload=b"\x00garbage",
        error="DecodeError: ...",
        service="risk",
        deliveries=1,
    ),
    UniverseSelected(
        id=ids.universe_id(3),
        ts_ns=TS,
        version=3,
        selected=(UniverseMember(symbol="BTCTRY", score=4.25, momentum=3.1, spread_bps=2.5, depth_try=D("812345.5")),),
        rejected=(UniverseRejection(symbol="XRPTRY", reasons=("SPREAD", "DEPTH"), detail="spread 75 bps", score=0.5),),
        added=("BTCTRY",),
        removed=("ETHTRY",),
        last_change_ts_ns=TS,
        cooldowns=(SymbolHold(symbol="ETHTRY", until_ns=TS + 1),),
        probations=(SymbolHold(symbol="XRPTRY", until_ns=TS + 2),),
        selector="marketdata-1",
    ),
]


def test_every_message_type_has_a_sample() -> None:
    assert {type(s) for s in SAMPLES} == set(ALL_MESSAGE_TYPES)


@pytest.mark.parametrize("message", SAMPLES, ids=lambda m: type(m).__name__)
def test_round_trip(message: Message) -> None:
    wire = encode(message)
    assert decode(wire) == message
    assert Codec(type(message)).decode(wire) == message


def test_decimals_travel_as_strings_and_keep_scale() -> None:
    fill = SAMPLES[9]
    raw = msgspec.msgpack.decode(encode(fill))
    assert raw["price"] == "3500000"
    assert raw["fee"] == "1.575"
    back = decode(encode(fill))
    assert isinstance(back, OrderFilled)
    assert str(back.tax) == "0.2835"


def test_a_union_codec_refuses_other_types() -> None:
    codec: Codec[BookSnapshot | TradeTick] = Codec(BookSnapshot | TradeTick)
    with pytest.raises(msgspec.ValidationError):
        codec.decode(encode(SAMPLES[2]))


def test_garbage_raises_decode_error() -> None:
    with pytest.raises(msgspec.DecodeError):
        decode(b"\xc1not msgpack")


def test_messages_are_frozen() -> None:
    with pytest.raises(AttributeError):
        SAMPLES[0].id = "other"  # type: ignore[misc]


def test_unknown_fields_are_tolerated_on_the_wire() -> None:
    raw = msgspec.msgpack.decode(encode(SAMPLES[5]))
    raw["added_later"] = 1
    assert decode(msgspec.msgpack.encode(raw)) == SAMPLES[5]


def test_client_order_id_is_deterministic_and_short() -> None:
    intent = ids.intent_id("profit_v1", "BTCTRY", ids.book_id("BTCTRY", TS, 12345))
    a, b = ids.client_order_id(intent), ids.client_order_id(intent)
    assert a == b
    assert len(a) <= ids.CLIENT_ORDER_ID_MAX
    assert a != ids.client_order_id(intent + "x")


def test_fill_id_tells_apart_the_two_sides_of_a_self_match() -> None:
    # Our buy crossing our own resting sell: one exchange trade id, two orders, two fills.
    buy, sell = ids.fill_id("BTCTRY", "777", "1001"), ids.fill_id("BTCTRY", "777", "1000")
    assert buy != sell
    assert buy == ids.fill_id("BTCTRY", "777", "1001")  # deterministic: a republish carries the same id
    assert ids.fill_id("ETHTRY", "777", "1001") != buy
    assert ids.fill_id("BTCTRY", "778", "1001") != buy


def test_subjects_put_symbol_last_and_refuse_bad_tokens() -> None:
    assert subjects.book("BTCTRY") == "md.book.BTCTRY"
    assert subjects.execution("filled", "ETHTRY") == "exec.filled.ETHTRY"
    with pytest.raises(ValueError, match="symbol"):
        subjects.submit("btc.try")
    with pytest.raises(ValueError, match="kind"):
        subjects.execution("exploded", "BTCTRY")
