"""Arming: live trading only when every safeguard is deliberately set; the BTCTurk adapter's conversions."""

from __future__ import annotations

from decimal import Decimal
from typing import Any, cast

import pytest

from btcbot.btcturk.errors import NotFound
from btcbot.btcturk.models import Order as BtcTurkOrder
from btcbot.btcturk.models import OrderMethod, OrderStatus, Side, UserTrade
from btcbot.btcturk.rest import BtcTurkClient
from btcbot.execution import orders
from btcbot.execution.exchange import BtcTurkExchange, to_exchange_order, to_fill
from btcbot.execution.reconcile import ExchangeStatus
from btcbot.execution.settings import LIVE_ACK_PHRASE, ExecutionSettings, arming, is_real_exchange
from btcbot.runtime.errors import SettingsError

D = Decimal
BASE = {"BTCTURK_API_KEY": "key", "BTCTURK_API_SECRET": "c2VjcmV0"}


def make(monkeypatch: pytest.MonkeyPatch, **env: str) -> ExecutionSettings:
    for name in ("EXECUTION_LIVE", "EXECUTION_LIVE_ACK", "BTCTURK_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    for name, value in {**BASE, **env}.items():
        monkeypatch.setenv(name, value)
    return ExecutionSettings()


def test_defaults_are_dry_run_against_the_simulator(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = make(monkeypatch)
    assert arming(settings) == "dry-run"
    assert settings.fill_poll_interval == 0.5
    assert not is_real_exchange(settings.btcturk_base_url)


def test_fully_armed_is_live(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = make(monkeypatch, EXECUTION_LIVE="true", EXECUTION_LIVE_ACK=LIVE_ACK_PHRASE,
                    BTCTURK_BASE_URL="https://api.btcturk.com")  # fmt: skip
    assert arming(settings) == "live"


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"EXECUTION_LIVE": "true", "BTCTURK_BASE_URL": "https://api.btcturk.com"}, "EXECUTION_LIVE_ACK"),
        ({"EXECUTION_LIVE": "true", "EXECUTION_LIVE_ACK": "yes", "BTCTURK_BASE_URL": "https://api.btcturk.com"},
         "EXECUTION_LIVE_ACK"),
        ({"EXECUTION_LIVE": "true", "EXECUTION_LIVE_ACK": LIVE_ACK_PHRASE}, "BTCTURK_BASE_URL"),
        ({"EXECUTION_LIVE": "true", "EXECUTION_LIVE_ACK": LIVE_ACK_PHRASE,
          "BTCTURK_BASE_URL": "http://api.btcturk.com"}, "BTCTURK_BASE_URL"),
        ({"EXECUTION_LIVE": "true", "EXECUTION_LIVE_ACK": LIVE_ACK_PHRASE,
          "BTCTURK_BASE_URL": "https://api.btcturk.com", "BTCTURK_API_SECRET": ""}, "BTCTURK_API_SECRET"),
        ({"BTCTURK_BASE_URL": "https://api.btcturk.com"}, "EXECUTION_LIVE"),
    ],
)  # fmt: skip
def test_half_armed_stops_with_the_setting_named(monkeypatch: pytest.MonkeyPatch, env: dict[str, str],
                                                 named: str) -> None:  # fmt: skip
    settings = make(monkeypatch, **env)
    with pytest.raises(SettingsError, match=named):
        arming(settings)


def test_user_trade_becomes_a_fill_with_positive_fee_and_tax() -> None:
    trade = UserTrade(id=11, order_id=22, timestamp_ms=1_700_000_000_123, price=D("100"), amount=D("-0.5"),
                      fee=D("-0.0763"), tax=D("-0.0137"), side=Side.SELL, numerator="BTC", denominator="TRY",
                      client_order_id="bbx")  # fmt: skip
    fill = to_fill(trade)
    assert fill.trade_id == "11"
    assert fill.exchange_order_id == "22"
    assert fill.quantity == D("0.5")
    assert fill.fee == D("0.0763")
    assert fill.tax == D("0.0137")
    assert fill.quote_asset == "TRY"
    assert fill.exchange_ts_ns == 1_700_000_000_123_000_000
    assert fill.client_order_id == "bbx"


def btcturk_order(status: OrderStatus, left: str) -> BtcTurkOrder:
    return BtcTurkOrder(id=5, pair="BTCTRY", side=Side.BUY, method=OrderMethod.LIMIT, status=status,
                        price=D("100"), amount=D("2"), quantity=D("2"), left_amount=D(left),
                        client_order_id="bbx")  # fmt: skip


@pytest.mark.parametrize(
    ("status", "expected"),
    [(OrderStatus.UNTOUCHED, ExchangeStatus.OPEN), (OrderStatus.PARTIAL, ExchangeStatus.OPEN),
     (OrderStatus.CANCELED, ExchangeStatus.CANCELED), (OrderStatus.CLOSED, ExchangeStatus.CLOSED)],
)  # fmt: skip
def test_exchange_order_status_and_filled(status: OrderStatus, expected: ExchangeStatus) -> None:
    seen = to_exchange_order(btcturk_order(status, "0.5"))
    assert seen.status == expected
    assert seen.filled_quantity == D("1.5")
    assert seen.exchange_order_id == "5"


class StubClient:
    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    async def submit_order(self, pair: str, side: str, method: str, quantity: Decimal, price: Decimal | None = None,
                           client_order_id: str | None = None) -> Any:  # fmt: skip
        self.calls.append(("submit", (pair, side, method, quantity, price, client_order_id)))
        return type("Ack", (), {"id": 77})()

    async def get_order(self, order_id: int) -> BtcTurkOrder:
        raise NotFound("Order not found", message_code="1152")


async def test_adapter_submits_with_client_order_id_and_no_price_for_market() -> None:
    stub = StubClient()
    exchange = BtcTurkExchange(cast(BtcTurkClient, stub))
    cmd = orders.Order("bbx", "i", "s", "BTCTRY", "buy", "market", None, D("250"))
    assert await exchange.submit(cmd) == "77"
    assert stub.calls == [("submit", ("BTCTRY", "buy", "market", D("250"), None, "bbx"))]
    assert await exchange.get("5") is None


# Hosts httpx folds into api.btcturk.com, or that are not plain ASCII: never a dry run, never live.
@pytest.mark.parametrize(
    "base_url",
    [
        "https://api\u3002btcturk\u3002com",  # ideographic full stops: httpx sends to api.btcturk.com
        "https://api\uff0ebtcturk\uff0ecom",  # fullwidth full stops
        "https://\u0430pi.btcturk.com",  # Cyrillic a (a homoglyph: some other host, still refused)
    ],
)
@pytest.mark.parametrize("live", ["false", "true"])
def test_non_ascii_exchange_hosts_are_refused_outright(
    monkeypatch: pytest.MonkeyPatch, base_url: str, live: str
) -> None:
    settings = make(monkeypatch, BTCTURK_BASE_URL=base_url, EXECUTION_LIVE=live, EXECUTION_LIVE_ACK=LIVE_ACK_PHRASE)
    with pytest.raises(SettingsError, match="ASCII"):
        arming(settings)


def test_the_judged_host_is_the_one_httpx_connects_to(monkeypatch: pytest.MonkeyPatch) -> None:
    import httpx

    from btcbot.execution.settings import connect_host

    folded = "https://api\u3002btcturk\u3002com"
    assert httpx.URL(folded).raw_host == b"api.btcturk.com"  # why the text as written cannot be judged
    for url in ("https://API.BTCTURK.COM./api/v2", "https://user@api.btcturk.com:443"):
        assert connect_host(url) == "api.btcturk.com"
        # Upper case, a trailing dot, userinfo or a port still reach the real exchange: no dry run there.
        with pytest.raises(SettingsError, match="EXECUTION_LIVE"):
            arming(make(monkeypatch, BTCTURK_BASE_URL=url))
    with pytest.raises(SettingsError, match="ASCII"):
        arming(make(monkeypatch, BTCTURK_WS_URL="wss://ws-feed-pro\u3002btcturk\u3002com"))
