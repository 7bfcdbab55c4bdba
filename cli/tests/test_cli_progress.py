"""The live progress of `btcbot up`: trade lines as they happen, the status line, and where it is written."""

from __future__ import annotations

import asyncio
import json
import secrets
from decimal import Decimal
from pathlib import Path

import pytest

from btcbot.cli.progress import Tracker, price_text, quantity_text, write_progress
from btcbot.contracts import ids
from btcbot.contracts.messages import OrderFilled, OrderIntent

D = Decimal


def intent(n: int, side: str, reason: str) -> OrderIntent:
    return OrderIntent(
        id=f"intent-{n}",
        ts_ns=n,
        strategy="profit_v1",
        symbol="BTCTRY",
        side=side,  # type: ignore[arg-type]
        order_type="limit",
        price=D(2_150_000),
        quantity=D("0.0012"),
        reason=reason,
        book_id="b",
    )


def fill(n: int, side: str, price: str, qty: str) -> OrderFilled:
    return OrderFilled(
        id=f"fill-{n}",
        ts_ns=n,
        client_order_id=ids.client_order_id(f"intent-{n}"),
        exchange_order_id=str(n),
        strategy="profit_v1",
        symbol="BTCTRY",
        side=side,  # type: ignore[arg-type]
        trade_id=str(n),
        price=D(price),
        quantity=D(qty),
        fee=D(1),
        fee_asset="TRY",
        exchange_ts_ns=n,
        base_asset="BTC",
        quote_asset="TRY",
    )


def test_entries_and_exits_read_as_a_trader_would() -> None:
    t = Tracker()
    t.on_intent(intent(1, "buy", "entry: flat, spread 3.00bps <= 30bps, buy 500 at ask"))
    t.on_intent(intent(2, "sell", "take profit: bid 2156665 >= avg cost 2150000 + 15bps"))
    assert t.on_fill(fill(1, "buy", "2150000", "0.00120000")) == "BUY 0.0012 BTCTRY @ 2,150,000 (entry)"
    # +0.31 % over the average price this run bought at.
    assert t.on_fill(fill(2, "sell", "2156665", "0.0012")) == "SELL 0.0012 BTCTRY @ 2,156,665 (take profit, +0.31 %)"
    assert (t.intents, t.fills, t.buys, t.sells) == (2, 2, 1, 1)
    assert t.intents_by_strategy == {"profit_v1": 2}


def test_a_fill_without_a_known_intent_still_says_its_side() -> None:
    t = Tracker()
    assert t.on_fill(fill(7, "sell", "42.51", "10")) == "SELL 10 BTCTRY @ 42.51 (exit)"


def test_status_line_counts_orders_and_mode(tmp_path: Path) -> None:
    t = Tracker()
    for subject in ("order.submit.BTCTRY", "order.denied.BTCTRY", "order.cancel.BTCTRY", "order.submit.ETHTRY"):
        t.on_order_subject(subject)
    t.on_control("REDUCE_ONLY", "OBSERVE_ONLY", killed=False)
    status = t.status(4.25, 3)
    line = t.status_line(status)
    assert "books 4.2/s" in line
    assert "orders 2 (1 denied)" in line
    assert "PnL n/a" in line
    assert "mode OBSERVE_ONLY" in line
    assert "lag 3" in line
    t.on_control(None, None, killed=True)
    assert t.mode == "KILLED"
    write_progress(tmp_path / "progress.json", status)
    assert json.loads((tmp_path / "progress.json").read_text())["orders"] == 2


def test_numbers_have_no_exponent() -> None:
    assert price_text(D("2.15E+6")) == "2,150,000"
    assert price_text(D("42.50")) == "42.50"
    assert quantity_text(D("1E-8")) == "0.00000001"


@pytest.mark.integration
@pytest.mark.parametrize("quiet", [False, True])
async def test_progress_prints_trades_and_status_unless_quiet(nats_url: str, tmp_path: Path, quiet: bool) -> None:
    import msgspec

    from btcbot.cli.progress import Progress
    from btcbot.contracts import subjects
    from btcbot.contracts.streams import ALL_STREAMS
    from btcbot.runtime.inspect import last_sequence
    from btcbot.runtime.jetstream import NatsPublisher, connect, provision

    nc = await connect(nats_url, "progress-test", 5, reconnect_forever=False)
    try:
        js = nc.jetstream()
        await provision(js, ALL_STREAMS)
        start = {spec.name: await last_sequence(js, spec.name) for spec in ALL_STREAMS}
        lines: list[str] = []
        progress = Progress(js, start, tmp_path, quiet=quiet, interval=0.5, say=lines.append).start()
        n = secrets.randbelow(10**9)
        publisher = NatsPublisher(js)
        entry = msgspec.structs.replace(intent(1, "buy", "entry: flat"), id=f"intent-{n}")
        await publisher.publish(subjects.intent("BTCTRY"), entry)
        bought = msgspec.structs.replace(
            fill(1, "buy", "2150000", "0.0012"), id=f"fill-{n}", client_order_id=ids.client_order_id(f"intent-{n}")
        )
        await publisher.publish(subjects.execution("filled", "BTCTRY"), bought)
        for _ in range(50):
            if (tmp_path / "progress.json").exists() and json.loads((tmp_path / "progress.json").read_text())["fills"]:
                break
            await asyncio.sleep(0.2)
        await progress.stop()
    finally:
        await nc.close()
    status = json.loads((tmp_path / "progress.json").read_text())
    assert (status["intents"], status["fills"], status["buys"]) == (1, 1, 1)
    if quiet:
        assert lines == []
    else:
        assert "   BUY 0.0012 BTCTRY @ 2,150,000 (entry)" in lines
        assert any(line.startswith("   books ") and "fills 1 (1 buy, 0 sell)" in line for line in lines)
