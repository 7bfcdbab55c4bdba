"""The strategy's position: the ledger snapshot at any watermark plus the fills after it equals all the fills."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from btcbot.contracts.messages import OrderFilled, PortfolioSnapshot, Position
from btcbot.strategy.positions import Coverage, Known, PositionBook, Unknown

D = Decimal


def snapshot(quantity: Decimal, avg_cost: Decimal, exec_seq: int, above: tuple[int, ...] = ()) -> PortfolioSnapshot:
    positions = (
        (Position(symbol="BTCTRY", quantity=quantity, avg_cost=avg_cost, realized_pnl=D(0), unrealized_pnl=D(0)),)
        if quantity
        else ()
    )
    return PortfolioSnapshot(
        id=f"p{exec_seq}", ts_ns=1, account="main", quote_asset="TRY", balances=(), positions=positions,
        exposure=D(0), realized_pnl=D(0), unrealized_pnl=D(0), fees=D(0), equity=D(0), peak_equity=D(0),
        drawdown=D(0), fills=0, exec_seq=exec_seq, exec_seqs_above=above,
    )  # fmt: skip


def filled(n: int, side: str, quantity: Decimal, price: Decimal) -> OrderFilled:
    return OrderFilled(
        id=f"f{n}", ts_ns=n, client_order_id=f"c{n}", exchange_order_id=str(n), strategy="profit_v1",
        symbol="BTCTRY", side=side, trade_id=str(n), price=price, quantity=quantity, fee=D(0), fee_asset="TRY",
    )  # fmt: skip


def fold(fills: list[OrderFilled]) -> tuple[Decimal, Decimal]:
    """Quantity and cost basis at weighted average cost (the ledger's method, written out for the test)."""
    quantity, cost = D(0), D(0)
    for f in fills:
        if f.side == "buy":
            quantity += f.quantity
            cost += f.quantity * f.price
        else:
            cost = D(0) if f.quantity == quantity else cost - cost * f.quantity / quantity
            quantity -= f.quantity
    return quantity, cost


@st.composite
def histories(draw: st.DrawFn) -> list[OrderFilled]:
    out: list[OrderFilled] = []
    held = D(0)
    for n in range(draw(st.integers(1, 25))):
        price = D(draw(st.integers(50, 150)))
        if held > 0 and draw(st.booleans()):
            quantity = min(held, D(draw(st.integers(1, 40))) / 10)
            out.append(filled(n + 1, "sell", quantity, price))
            held -= quantity
        else:
            quantity = D(draw(st.integers(1, 40))) / 10
            out.append(filled(n + 1, "buy", quantity, price))
            held += quantity
    return out


@settings(max_examples=200, deadline=None)
@given(fills=histories(), data=st.data())
def test_snapshot_at_any_watermark_plus_later_fills_is_the_whole_position(
    fills: list[OrderFilled], data: st.DataObject
) -> None:
    """Wherever the ledger's watermark stands, and whatever it applied out of order meanwhile, the strategy ends at
    the position of all the fills: nothing missed, nothing counted twice (so nothing sold twice)."""
    n = len(fills)
    watermark = data.draw(st.integers(0, n))
    quantity, cost = fold(fills[:watermark])
    book = PositionBook(["BTCTRY"])
    book.start_at(0)
    book.on_snapshot(snapshot(quantity, cost / quantity if quantity else D(0), watermark))
    for i, f in enumerate(fills, 1):
        assert book.on_sequence(i)
        book.on_fill(f, i)
        book.on_fill(f, i)  # a redelivery changes nothing
        if data.draw(st.booleans()):
            # A later snapshot of a ledger that applied some fills out of order: its own quantity is not a prefix
            # of the stream, so it is not taken (whatever it says).
            junk = D(data.draw(st.integers(0, 50)))
            assert not book.on_snapshot(snapshot(junk, D(1), max(0, i - 2), (i,)))
    expected_quantity, expected_cost = fold(fills)
    position = book.position("BTCTRY")
    assert isinstance(position, Known)
    assert position.quantity == expected_quantity
    if expected_quantity:
        assert abs(position.avg_cost - expected_cost / expected_quantity) < D("1e-12")
    # And a later in-order snapshot at any watermark gives the same answer.
    later = data.draw(st.integers(watermark, n))
    q2, c2 = fold(fills[:later])
    book.on_snapshot(snapshot(q2, c2 / q2 if q2 else D(0), later))
    again = book.position("BTCTRY")
    assert isinstance(again, Known)
    assert again.quantity == expected_quantity


def test_coverage_restarts_after_a_gap_and_ignores_redeliveries() -> None:
    c = Coverage()
    assert not c.covers_after(0)
    assert c.see(5)
    assert c.see(6)
    assert c.see(5)  # redelivered
    assert c.covers_after(4)
    assert not c.covers_after(3)
    assert not c.see(9)
    assert not c.covers_after(7)
    assert c.covers_after(8)


def test_history_read_bridges_a_new_owner_to_its_live_consumer() -> None:
    book = PositionBook(["BTCTRY"])
    book.start_at(20)  # live from 21 on
    book.on_snapshot(snapshot(D(0), D(0), 10))
    assert isinstance(book.position("BTCTRY"), Unknown)
    # The takeover read saw every BTCTRY fill from 5 to 20: one buy at 15.
    book.read_history("BTCTRY", 5, 20, [(filled(15, "buy", D(1), D(100)), 15)])
    assert book.position("BTCTRY") == Known(D(1), D(100))
    # A read that ends before the live consumer starts leaves a gap.
    other = PositionBook(["BTCTRY"])
    other.start_at(20)
    other.on_snapshot(snapshot(D(0), D(0), 10))
    other.read_history("BTCTRY", 5, 18, [])
    assert isinstance(other.position("BTCTRY"), Unknown)
