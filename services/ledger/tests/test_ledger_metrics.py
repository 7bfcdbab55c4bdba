"""The ledger's figures: fees valued in the quote asset, exposure per symbol (pure functions)."""

from __future__ import annotations

from decimal import Decimal

from btcbot.contracts.messages import OrderFilled, PortfolioSnapshot, Position
from btcbot.ledger.metrics import exposures, fee_in_quote


def fill(fee_asset: str, fee: str = "0.5", price: str = "100", quote: str = "") -> OrderFilled:
    return OrderFilled(
        id="f", ts_ns=1, client_order_id="c", exchange_order_id="1", strategy="s", symbol="BTCTRY", side="buy",
        trade_id="t", price=Decimal(price), quantity=Decimal(1), fee=Decimal(fee), fee_asset=fee_asset,
        quote_asset=quote,
    )  # fmt: skip


def test_a_quote_fee_counts_as_it_is() -> None:
    assert fee_in_quote(fill("TRY"), "TRY") == Decimal("0.5")
    assert fee_in_quote(fill("TRY", quote="TRY"), "USDT") == Decimal("0.5")


def test_a_base_fee_is_valued_at_the_fill_price() -> None:
    assert fee_in_quote(fill("BTC", fee="0.001", price="2000"), "TRY") == Decimal("2.000")


def test_a_third_asset_fee_is_not_guessed() -> None:
    assert fee_in_quote(fill("BNB"), "TRY") is None


def test_exposure_is_the_bots_own_quantity_at_its_mark() -> None:
    snapshot = PortfolioSnapshot(
        id="p", ts_ns=1, account="main", quote_asset="TRY", balances=(), exposure=Decimal(0),
        realized_pnl=Decimal(0), unrealized_pnl=Decimal(0), fees=Decimal(0), equity=Decimal(0),
        peak_equity=Decimal(0), drawdown=Decimal(0), fills=0,
        positions=(
            Position(symbol="BTCTRY", quantity=Decimal(3), avg_cost=Decimal(90), realized_pnl=Decimal(0),
                     unrealized_pnl=Decimal(0), mark=Decimal(100), opening_quantity=Decimal(1)),
            Position(symbol="ETHTRY", quantity=Decimal(2), avg_cost=Decimal(10), realized_pnl=Decimal(0),
                     unrealized_pnl=Decimal(0)),
        ),
    )  # fmt: skip
    assert exposures(snapshot) == {"BTCTRY": Decimal(200), "ETHTRY": Decimal(20)}
