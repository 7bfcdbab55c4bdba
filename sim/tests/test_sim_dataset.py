"""Recorded-dataset playback: the format, the timeline, the market following it, fills, and the CLI flag."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from btcbot.sim.__main__ import build_parser, config_from_args
from btcbot.sim.config import KNOWN_SYMBOLS, SimConfig
from btcbot.sim.dataset import (
    BUILTIN,
    DatasetError,
    RecordedQuote,
    RecordedTrade,
    load_dataset,
    parse_dataset,
)
from btcbot.sim.engine import Fill, OrderRequest
from btcbot.sim.playback import Playback, Timeline
from btcbot.sim.state import SimState

D = Decimal
T0 = 1_764_000_000_000
SYMBOLS = (KNOWN_SYMBOLS["BTCTRY"], KNOWN_SYMBOLS["ETHTRY"])


def trade(ts: int, price: str, amount: str, side: str, pair: str = "BTCTRY") -> str:
    return json.dumps({"ts_ms": ts, "pair": pair, "price": price, "amount": amount, "side": side})


def quote(ts: int, mid: str, spread: str | None = None, pair: str = "BTCTRY") -> str:
    record: dict[str, Any] = {"ts_ms": ts, "pair": pair, "mid": mid}
    if spread is not None:
        record["spread"] = spread
    return json.dumps(record)


class Clock:
    def __init__(self, now: int) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


def playing(lines: list[str], start: int = 1_800_000_000_000, speed: float = 1.0) -> tuple[SimState, Clock]:
    clock = Clock(start)
    config = SimConfig(
        symbols=SYMBOLS,
        dataset=parse_dataset(lines, "test.jsonl"),
        playback_speed=speed,
        run_market=False,
        first_order_id=1,
        first_trade_id=1,
    )
    state = SimState(config, clock)
    state.engine.open_account("bot", {"TRY": D(10_000_000), "BTC": D(1), "ETH": D(10)})
    return state, clock


# -- format ---------------------------------------------------------------------------------------


def test_parses_trades_and_quotes_sorted_by_time() -> None:
    lines = [
        '{"ts_ms": 1764000000500, "pair": "BTC_TRY", "price": 3600100, "amount": 0.0125, "side": "buy"}',
        "",
        quote(T0, "3600000", "200"),
        quote(T0 + 200, "131000", pair="ethtry"),
        "   ",
        trade(T0 + 500, "3599900", "0.002", "sell"),
    ]
    ds = parse_dataset(lines, "x.jsonl")
    assert ds.source == "x.jsonl"
    assert [r.ts_ms for r in ds.records] == [T0, T0 + 200, T0 + 500, T0 + 500]
    first, second, third, fourth = ds.records
    assert first == RecordedQuote(T0, "BTCTRY", D(3_600_000), D(200), 3)
    assert second == RecordedQuote(T0 + 200, "ETHTRY", D(131_000), None, 4)
    # a JSON number keeps its exact decimal digits; equal timestamps keep file order
    assert third == RecordedTrade(T0 + 500, "BTCTRY", D(3_600_100), D("0.0125"), "buy", 1)
    assert fourth == RecordedTrade(T0 + 500, "BTCTRY", D(3_599_900), D("0.002"), "sell", 6)
    assert ds.pairs == ("BTCTRY", "ETHTRY")
    assert (ds.start_ms, ds.span_ms) == (T0, 500)
    assert ds.only(["ETHTRY"]).records == (second,)


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("{not json", "not JSON"),
        ("[1, 2]", "must be a JSON object"),
        ('{"ts_ms": 1, "pair": "BTCTRY"}', "needs `price`"),
        ('{"ts_ms": 1, "pair": "BTCTRY", "mid": "1", "price": "1", "amount": "1", "side": "buy"}', "unknown keys"),
        ('{"ts_ms": 1, "pair": "BTCTRY", "mid": "1", "sprad": "2"}', r"unknown keys \['sprad'\]"),
        ('{"ts_ms": "1", "pair": "BTCTRY", "mid": "1"}', "ts_ms must be"),
        ('{"ts_ms": -5, "pair": "BTCTRY", "mid": "1"}', "ts_ms must be"),
        ('{"ts_ms": true, "pair": "BTCTRY", "mid": "1"}', "ts_ms must be"),
        ('{"ts_ms": 1, "pair": "BTC/TRY", "mid": "1"}', "pair must be"),
        ('{"ts_ms": 1, "pair": "BTCTRY", "mid": "abc"}', "not a number"),
        ('{"ts_ms": 1, "pair": "BTCTRY", "mid": "0"}', "mid must be positive"),
        ('{"ts_ms": 1, "pair": "BTCTRY", "mid": "NaN"}', "mid must be positive"),
        ('{"ts_ms": 1, "pair": "BTCTRY", "mid": "5", "spread": "-1"}', "spread must be non-negative"),
        ('{"ts_ms": 1, "pair": "BTCTRY", "price": "5", "side": "buy"}', r"lacks \['amount'\]"),
        ('{"ts_ms": 1, "pair": "BTCTRY", "price": "5", "amount": "1", "side": "BUY"}', "side must be buy or sell"),
        ('{"ts_ms": 1, "pair": "BTCTRY", "price": "5", "amount": "0", "side": "buy"}', "amount must be positive"),
        ('{"ts_ms": 1, "pair": "BTCTRY", "price": null, "amount": "1", "side": "buy"}', "price must be a decimal"),
    ],
)
def test_malformed_record_names_file_and_line(line: str, reason: str) -> None:
    lines = [quote(T0, "3600000"), "", line, quote(T0 + 1, "3600001")]
    with pytest.raises(DatasetError, match=rf"^data\.jsonl:3: .*{reason}") as info:
        parse_dataset(lines, "data.jsonl")
    assert (info.value.source, info.value.line) == ("data.jsonl", 3)


def test_load_dataset_files(tmp_path: Path) -> None:
    path = tmp_path / "rec.jsonl"
    path.write_text(quote(T0, "100") + "\n" + trade(T0 + 5, "101", "1", "buy") + "\n")
    assert len(load_dataset(path).records) == 2
    (tmp_path / "empty.jsonl").write_text("\n\n")
    with pytest.raises(DatasetError, match=r"empty\.jsonl: the dataset has no records"):
        load_dataset(tmp_path / "empty.jsonl")
    with pytest.raises(DatasetError, match=r"missing\.jsonl: cannot read"):
        load_dataset(tmp_path / "missing.jsonl")
    (tmp_path / "bin.jsonl").write_bytes(b"\xff\xfe\x00")
    with pytest.raises(DatasetError, match="not UTF-8"):
        load_dataset(tmp_path / "bin.jsonl")


def test_builtin_dataset_ships_with_the_package() -> None:
    ds = load_dataset(BUILTIN)
    assert ds.source == "builtin"
    assert ds.pairs == ("BTCTRY", "ETHTRY")
    for pair in ds.pairs:
        trades = [r for r in ds.records if isinstance(r, RecordedTrade) and r.pair == pair]
        quotes = [r for r in ds.records if isinstance(r, RecordedQuote) and r.pair == pair]
        assert 200 <= len(trades) <= 1000
        assert len(quotes) > 50
        assert {t.side for t in trades} == {"buy", "sell"}
        # looks like a market: many prices, all within a few percent of each other
        prices = [t.price for t in trades]
        assert len(set(prices)) > 100
        assert max(prices) / min(prices) < D("1.05")
    size = sum(len(line) for line in _builtin_text().splitlines())
    assert size < 200_000


def _builtin_text() -> str:
    from importlib import resources

    return resources.files("btcbot.sim").joinpath("datasets", "builtin.jsonl").read_text("utf-8")


# -- timeline -------------------------------------------------------------------------------------


def test_timeline_paces_by_recorded_time_scaled_and_loops() -> None:
    ds = parse_dataset([quote(T0, "1"), quote(T0 + 1000, "2"), quote(T0 + 3000, "3")], "t")
    line = Timeline(ds.records, start_ms=50_000, speed=2.0)
    # span 3000 + one average gap of 1500
    assert line.period_ms == 4500

    def mids(now: int) -> list[Decimal]:
        return [r.mid for r in line.due(now) if isinstance(r, RecordedQuote)]

    assert mids(50_000) == [D(1)]
    assert mids(50_499) == []
    assert mids(50_500) == [D(2)]  # 1000 recorded ms at 2x
    assert mids(51_499) == []
    assert mids(51_500) == [D(3)]
    assert mids(52_249) == []
    assert mids(52_250) == [D(1)]  # 4500 recorded ms: the next loop starts
    assert mids(53_750) == [D(2), D(3)]
    # after a long stall only the latest loop's records are replayed, not every loop missed
    assert mids(53_750 + 2_250 * 100) == [D(1), D(2), D(3)]
    with pytest.raises(ValueError, match="speed"):
        Timeline(ds.records, start_ms=0, speed=0)


def test_playback_refuses_records_outside_the_pair_rules() -> None:
    lines = [quote(T0, "3600000"), trade(T0 + 1, "3600000", "0.000000001", "buy")]
    with pytest.raises(DatasetError, match=r"t:2: amount 1E-9 is below BTCTRY's step"):
        Playback(parse_dataset(lines, "t"), SYMBOLS, 0, 1.0)
    with pytest.raises(DatasetError, match=r"t:1: price 200000000 is outside"):
        Playback(parse_dataset([quote(T0, "200000000")], "t"), SYMBOLS, 0, 1.0)
    with pytest.raises(DatasetError, match=r"no records for the active symbols"):
        Playback(parse_dataset([quote(T0, "1", pair="XRPTRY")], "t"), SYMBOLS, 0, 1.0)


# -- the market follows the recording -------------------------------------------------------------


def test_book_follows_the_recorded_mid() -> None:
    ds = load_dataset(BUILTIN)
    start = 1_800_000_000_000
    clock = Clock(start)
    config = SimConfig(symbols=SYMBOLS, dataset=ds, run_market=False, first_order_id=1, first_trade_id=1)
    state = SimState(config, clock)
    assert state.playback is not None
    quotes = {p: [r for r in ds.records if isinstance(r, RecordedQuote) and r.pair == p] for p in ds.pairs}
    worst = dict.fromkeys(ds.pairs, D(0))
    for tick in range(1, 700):
        clock.now = start + tick * 500
        state.tick()
        recorded_now = ds.start_ms + (tick * 500) % state.playback.period_ms
        for pair in ds.pairs:
            recorded = [q.mid for q in quotes[pair] if q.ts_ms <= recorded_now][-1]
            book = state.engine.books[pair]
            bid, ask = book.best_bid(), book.best_ask()
            assert bid is not None
            assert ask is not None
            assert bid < ask
            worst[pair] = max(worst[pair], abs((bid + ask) / 2 / recorded - 1))
            assert len(book.bids) >= 10
            assert len(book.asks) >= 10
    # the recorded prices wander by ~0.5% over the dataset; the book stays within 0.2% of them
    assert all(dev < D("0.002") for dev in worst.values()), worst


def test_recorded_trades_print_as_public_trades() -> None:
    lines = [
        quote(T0, "3600000", "200"),
        quote(T0, "131000", "40", pair="ETHTRY"),
        trade(T0 + 1000, "3600100", "0.0123", "buy"),
        trade(T0 + 1500, "3599900", "0.0321", "sell"),
        trade(T0 + 1500, "131020", "0.5", "buy", pair="ETHTRY"),
        # far through the crowd's quotes: they are pulled, the print is still at the recorded price
        trade(T0 + 2000, "3609000", "0.0042", "buy"),
        quote(T0 + 60_000, "3600000", "200"),
    ]
    state, clock = playing(lines)
    start = clock.now
    fills: list[Fill] = []
    state.subscribe(lambda events: fills.extend(e for e in events if isinstance(e, Fill)))
    clock.now = start + 999
    state.tick()
    assert fills == []
    clock.now = start + 1000
    state.tick()
    # the crowd pulls its quotes through the recorded price, so the print is at exactly that price
    assert [(f.price, f.amount, f.taker_side) for f in fills] == [(D(3_600_100), D("0.0123"), "buy")]
    fills.clear()
    clock.now = start + 1600
    state.tick()
    btc = [f for f in fills if f.pair == "BTCTRY"]
    eth = [f for f in fills if f.pair == "ETHTRY"]
    assert [(f.price, f.amount, f.taker_side) for f in btc] == [(D(3_599_900), D("0.0321"), "sell")]
    assert [(f.price, f.amount, f.taker_side) for f in eth] == [(D(131_020), D("0.5"), "buy")]
    # the public feed shows them, newest first, exactly as the engine printed them
    public = state.engine.public_trades("BTCTRY", 50)
    assert [(f.price, f.amount, f.taker_side) for f in public] == [
        (D(3_599_900), D("0.0321"), "sell"),
        (D(3_600_100), D("0.0123"), "buy"),
    ]
    assert state.engine.last_price("BTCTRY") == D(3_599_900)
    asks_below = [p for p, _ in state.engine.books["BTCTRY"].depth(100)[1] if p < 3_609_000]
    assert asks_below, "the test needs crowd asks between the mid and the next recorded price"
    fills.clear()
    clock.now = start + 2000
    state.tick()
    assert [(f.price, f.amount, f.taker_side) for f in fills] == [(D(3_609_000), D("0.0042"), "buy")]


def test_our_resting_order_is_filled_by_a_recorded_trade_that_crosses_it() -> None:
    lines = [
        quote(T0, "3600000", "200"),
        trade(T0 + 1000, "3600500", "0.01", "buy"),
        trade(T0 + 2000, "3599000", "0.02", "sell"),
        quote(T0 + 60_000, "3600000", "200"),
    ]
    state, clock = playing(lines)
    start = clock.now
    engine = state.engine
    filled = engine.place(OrderRequest("bot", "ask-in", "BTCTRY", "sell", "limit", D("0.004"), D(3_600_300)), start)
    beyond = engine.place(OrderRequest("bot", "ask-out", "BTCTRY", "sell", "limit", D("0.004"), D(3_600_600)), start)
    bid = engine.place(OrderRequest("bot", "bid-in", "BTCTRY", "buy", "limit", D("0.03"), D(3_599_200)), start)
    engine.drain_events()
    clock.now = start + 1000
    state.tick()
    assert getattr(filled, "status", None) == "Closed"
    assert getattr(beyond, "status", None) == "Untouched"
    (ours,) = engine.trades_of("bot")
    assert (ours.client_id, ours.price, ours.amount, ours.is_maker) == ("ask-in", D(3_600_300), D("0.004"), True)
    # the rest of the recorded 0.01 came from the crowd at the recorded price
    printed = [(f.price, f.amount) for f in reversed(engine.public_trades("BTCTRY", 50))]
    assert printed == [(D(3_600_300), D("0.004")), (D(3_600_500), D("0.006"))]
    clock.now = start + 2000
    state.tick()
    # the recorded sell of 0.02 fills our better bid first, entirely, at our price
    bid_fills = [t for t in engine.trades_of("bot") if t.client_id == "bid-in"]
    assert sum(t.amount for t in bid_fills) == D("0.02")
    assert {t.price for t in bid_fills} == {D(3_599_200)}
    assert getattr(bid, "status", None) == "Partial"
    assert engine.wallet("bot").balance("BTC").total == D(1) - D("0.004") + D("0.02")


async def test_sim_app_plays_the_dataset_over_http(sim_factory: Any) -> None:
    ds = parse_dataset([quote(T0, "3600000", "200"), trade(T0 + 200, "3600100", "0.0555", "buy")], "t")
    async with sim_factory(dataset=ds, symbols=SYMBOLS) as sim:
        sim.clock.now += 200
        async with sim.session.post(sim.url("/sim/market"), json={"ticks": 1}) as resp:
            assert resp.status == 200
        status, body = await sim.public("/api/v2/trades", pairSymbol="BTCTRY", last=50)
    assert status == 200
    assert sum(D(t["amount"]) for t in body["data"]) == D("0.0555")
    assert {t["side"] for t in body["data"]} == {"buy"}


# -- command line ---------------------------------------------------------------------------------


def test_cli_dataset_options(tmp_path: Path) -> None:
    config = config_from_args(build_parser().parse_args(["--dataset", "builtin", "--speed", "4"]))
    assert config.dataset is not None
    assert config.dataset.pairs == ("BTCTRY", "ETHTRY")
    assert config.playback_speed == 4.0
    assert config_from_args(build_parser().parse_args([])).dataset is None
    bad = tmp_path / "bad.jsonl"
    bad.write_text(quote(T0, "1") + "\n" + '{"ts_ms": 2, "pair": "BTCTRY", "price": "1"}\n')
    with pytest.raises(DatasetError, match=r"bad\.jsonl:2: trade record lacks"):
        config_from_args(build_parser().parse_args(["--dataset", str(bad)]))
    for argv in (["--speed", "0"], ["--speed", "nan"], ["--dataset", "builtin", "--symbols", "USDTTRY"]):
        with pytest.raises(ValueError, match=r"--speed|no records"):
            config_from_args(build_parser().parse_args(argv))


def test_cli_process_plays_a_dataset_file(tmp_path: Path) -> None:
    data = tmp_path / "rec.jsonl"
    # One trade early, then nothing for ten minutes: the trade prints exactly once during the test.
    rows = [
        quote(T0, "3600000", "200"),
        trade(T0 + 50, "3600100", "0.0123", "buy"),
        trade(T0 + 80, "3599900", "0.0077", "sell"),
        quote(T0 + 600_000, "3600000", "200"),
    ]
    data.write_text("\n".join(rows) + "\n")
    port_file = tmp_path / "port"
    argv = ["--port", "0", "--port-file", str(port_file), "--symbols", "BTCTRY", "--tick-interval", "0.05"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "btcbot.sim", *argv, "--dataset", str(data), "--speed", "1"],
        env={k: v for k, v in os.environ.items() if not k.startswith("SIM_")},
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 15
        while not port_file.exists():
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            assert time.monotonic() < deadline, "port file never appeared"
            time.sleep(0.05)
        url = f"http://127.0.0.1:{int(port_file.read_text())}/api/v2/trades?pairSymbol=BTCTRY&last=50"
        while True:
            with urllib.request.urlopen(url, timeout=5) as resp:
                trades = json.load(resp)["data"]
            if sum(D(t["amount"]) for t in trades) >= D("0.02"):
                break
            assert time.monotonic() < deadline, f"recorded trades never printed: {trades}"
            time.sleep(0.05)
        buys = [t for t in trades if t["side"] == "buy"]
        sells = [t for t in trades if t["side"] == "sell"]
        assert sum(D(t["amount"]) for t in buys) == D("0.0123")
        assert sum(D(t["amount"]) for t in sells) == D("0.0077")
        assert all(D(t["price"]) <= 3_600_100 for t in buys)
        assert all(D(t["price"]) >= 3_599_900 for t in sells)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
        assert proc.stderr is not None
        assert "playing " in proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stderr is not None:
            proc.stderr.close()


def test_cli_refuses_a_malformed_dataset(tmp_path: Path) -> None:
    bad = tmp_path / "broken.jsonl"
    bad.write_text(quote(T0, "3600000") + "\n{oops\n")
    result = subprocess.run(
        [sys.executable, "-m", "btcbot.sim", "--port", "0", "--dataset", str(bad)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 2
    assert f"{bad}:2: not JSON" in result.stderr
