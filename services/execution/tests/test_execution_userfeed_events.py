"""Pure rules of the user feed (what 451/452 mean for a record, when 441 matches went unreported) and its settings."""

from __future__ import annotations

from decimal import Decimal

import pytest

from btcbot.btcturk.models import OrderMethod, Side
from btcbot.btcturk.wsmodels import OrderEvent, OrderEventKind
from btcbot.execution.orders import Order, Status
from btcbot.execution.settings import ExecutionSettings
from btcbot.execution.userevents import MatchWatch, OrderSeen, Plan, order_seen, plan
from btcbot.runtime.errors import SettingsError
from btcbot.runtime.settings import load_settings

D = Decimal


def order(status: Status) -> Order:
    return Order("c1", "i1", "mm", "BTCTRY", "buy", "limit", D("100"), D("1"), status=status)


def seen(gone: bool) -> OrderSeen:
    return OrderSeen("BTCTRY", "1000", "c1", gone)


@pytest.mark.parametrize(
    ("status", "gone", "expected"),
    [
        (Status.FILLED, True, Plan()),
        (Status.CANCELED, True, Plan()),
        (Status.REJECTED, False, Plan()),
        (Status.SUBMITTING, False, Plan(accept=True)),
        (Status.SUBMITTING, True, Plan(accept=True, sync=True)),
        (Status.PENDING, False, Plan(accept=True)),
        (Status.ACCEPTED, False, Plan()),
        (Status.ACCEPTED, True, Plan(sync=True)),
        (Status.PARTIALLY_FILLED, True, Plan(sync=True)),
        (Status.CANCEL_PENDING, True, Plan(sync=True)),
        (Status.CANCEL_PENDING, False, Plan()),
    ],
)
def test_what_an_order_event_asks_of_a_record(status: Status, gone: bool, expected: Plan) -> None:
    assert plan(order(status), seen(gone)) == expected


def test_order_events_become_inserts_and_deletes_and_updates_are_ignored() -> None:
    def event(kind: OrderEventKind) -> OrderEvent:
        return OrderEvent(kind=kind, order_id=7, pair="BTCTRY", side=Side.SELL, method=OrderMethod.LIMIT,
                          price=D("1"), amount=D("1"), client_order_id="c7")  # fmt: skip

    assert order_seen(event(OrderEventKind.INSERT)) == OrderSeen("BTCTRY", "7", "c7", gone=False)
    assert order_seen(event(OrderEventKind.DELETE)) == OrderSeen("BTCTRY", "7", "c7", gone=True)
    assert order_seen(event(OrderEventKind.UPDATE)) is None


def test_matches_covered_by_trades_are_forgotten_quietly() -> None:
    watch = MatchWatch(grace_ns=100)
    watch.filled("BTCTRY", "1", D("0.5"), now_ns=0)  # the 423 may come first
    watch.matched("BTCTRY", "1", D("0.5"), now_ns=1)
    assert watch.overdue(50) == set()
    assert len(watch) == 1
    assert watch.overdue(100) == set()
    assert len(watch) == 0


def test_matches_no_trade_covered_are_overdue_once() -> None:
    watch = MatchWatch(grace_ns=100)
    watch.matched("BTCTRY", "1", D("1"), now_ns=0)
    watch.filled("BTCTRY", "1", D("0.4"), now_ns=10)
    watch.matched("ETHTRY", "2", D("1"), now_ns=60)
    assert watch.overdue(99) == set()
    assert watch.overdue(100) == {"BTCTRY"}
    assert watch.overdue(200) == {"ETHTRY"}
    assert watch.overdue(300) == set()


BASE = {"BTCTURK_API_KEY": "key", "BTCTURK_API_SECRET": "c2VjcmV0"}


def settings(monkeypatch: pytest.MonkeyPatch, **env: str) -> ExecutionSettings:
    for name in ("EXECUTION_USER_FEED", "EXECUTION_FILL_POLL_INTERVAL_WS", "BTCTURK_WS_URL", "BTCTURK_WS_API_KEY",
                 "BTCTURK_WS_API_SECRET"):  # fmt: skip
        monkeypatch.delenv(name, raising=False)
    for name, value in {**BASE, **env}.items():
        monkeypatch.setenv(name, value)
    return load_settings(ExecutionSettings)


def test_the_feed_is_on_by_default_and_logs_in_with_the_rest_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    s = settings(monkeypatch)
    assert (s.user_feed, s.fill_poll_interval_ws) == ("ws", 10.0)
    assert s.ws_credentials() == ("key", "c2VjcmV0")


def test_a_separate_websocket_key_pair_is_used_when_given(monkeypatch: pytest.MonkeyPatch) -> None:
    s = settings(monkeypatch, BTCTURK_WS_API_KEY="wskey", BTCTURK_WS_API_SECRET="d3M=", EXECUTION_USER_FEED="off")
    assert s.user_feed == "off"
    assert s.ws_credentials() == ("wskey", "d3M=")
    assert "d3M=" not in repr(s)


def test_half_a_websocket_key_pair_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(SettingsError, match="BTCTURK_WS_API_SECRET"):
        settings(monkeypatch, BTCTURK_WS_API_KEY="wskey").ws_credentials()


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"EXECUTION_USER_FEED": "rest"}, "EXECUTION_USER_FEED"),
        ({"EXECUTION_FILL_POLL_INTERVAL_WS": "0"}, "EXECUTION_FILL_POLL_INTERVAL_WS"),
        ({"BTCTURK_WS_URL": "http://127.0.0.1:8800/ws"}, "BTCTURK_WS_URL"),
    ],
)
def test_bad_feed_settings_name_the_variable(monkeypatch: pytest.MonkeyPatch, env: dict[str, str], named: str) -> None:
    with pytest.raises(SettingsError, match=named):
        settings(monkeypatch, **env)
