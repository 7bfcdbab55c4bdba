"""`btcbot replay`: the pure diff and engine run, and a recorded run on a private nats-server replayed back."""

from __future__ import annotations

import json
import secrets
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from btcbot.cli.replay import (
    REPLAY_OF,
    Decision,
    Recording,
    ReplayError,
    ReplayOptions,
    Selection,
    Stored,
    count_statuses,
    diff_decisions,
    override_params,
    parse_time,
    permissive_rules,
    publish_replay,
    replay_decisions,
    replay_stream,
    risk_limits,
    rules_from_file,
    run_replay,
    strategy_setup,
)
from btcbot.contracts import ids, subjects
from btcbot.contracts.messages import (
    Balance,
    BookSnapshot,
    Level,
    OrderAccepted,
    OrderDenied,
    OrderFilled,
    OrderIntent,
    PortfolioSnapshot,
    Position,
    SubmitOrder,
)
from btcbot.risk.control import RiskState
from btcbot.risk.limits import Approved, RiskLimits, check
from btcbot.strategy.signals import ProfitParams, ProfitV1

S = 1_000_000_000
D = Decimal


def _decision(intent_id: str, price: str = "100", quantity: str = "1", verdict: str = "approved") -> Decision:
    return Decision(intent_id, "BTCTRY", "buy", D(price), D(quantity), verdict)


def _book(symbol: str, received_ns: int, bid: str, ask: str, seq: int) -> BookSnapshot:
    exchange_ns = received_ns - 1_000_000
    return BookSnapshot(
        id=ids.book_id(symbol, exchange_ns, seq),
        ts_ns=received_ns,
        symbol=symbol,
        sequence=seq,
        bids=(Level(D(bid), D(1)),),
        asks=(Level(D(ask), D(1)),),
        exchange_ts_ns=exchange_ns,
        received_ts_ns=received_ns,
    )


def _portfolio(account: str, ts_ns: int, positions: tuple[Position, ...] = ()) -> PortfolioSnapshot:
    zero = D(0)
    return PortfolioSnapshot(
        id=f"portfolio:{account}:{ts_ns}",
        ts_ns=ts_ns,
        account=account,
        quote_asset="TRY",
        # The strategy spends only free quote (profit_v1 enters with min(free TRY, order notional)).
        balances=(Balance(asset="TRY", total=D(1_000_000)),),
        positions=positions,
        exposure=zero,
        realized_pnl=zero,
        unrealized_pnl=zero,
        fees=zero,
        equity=zero,
        peak_equity=zero,
        drawdown=zero,
        fills=0,
    )


# -- pure -------------------------------------------------------------------------------------------------


def test_diff_sorts_every_intent_into_one_status_with_the_fields_that_differ() -> None:
    recorded = {
        "a": _decision("a"),
        "b": _decision("b", verdict="denied:PRICE_TICK"),
        "c": _decision("c", quantity="1.5"),
        "d": _decision("d"),
    }
    replayed = {
        "a": _decision("a", price="100.00"),  # trailing zeros are the same price
        "b": _decision("b", verdict="approved"),
        "c": _decision("c", price="101", quantity="2"),
        "e": _decision("e"),
    }
    rows = {r.intent_id: r for r in diff_decisions(recorded, replayed)}
    assert [(k, rows[k].status, rows[k].fields) for k in sorted(rows)] == [
        ("a", "same", ()),
        ("b", "different", ("verdict",)),
        ("c", "different", ("price", "quantity")),
        ("d", "only_recorded", ()),
        ("e", "only_replayed", ()),
    ]
    assert count_statuses(rows.values()) == {"same": 1, "different": 2, "only_recorded": 1, "only_replayed": 1}


def test_params_overrides_parse_by_field_type_and_refuse_unknown_names() -> None:
    params = override_params(ProfitParams(), ["take_profit_bps=7.5, cooldown_ns=0", "stop_loss_bps=20"])
    assert (params.take_profit_bps, params.cooldown_ns, params.stop_loss_bps) == (D("7.5"), 0, D(20))
    cleared = override_params(params, ["stop_loss_bps=none,require_portfolio=false"])
    assert cleared.stop_loss_bps is None
    assert cleared.require_portfolio is False
    with pytest.raises(ReplayError, match="take_profit"):
        override_params(params, ["take_profit=5"])
    with pytest.raises(ReplayError, match="not a valid int"):
        override_params(params, ["cooldown_ns=2.5"])
    with pytest.raises(ReplayError, match="not a valid Decimal"):
        override_params(params, ["order_notional=NaN"])


def test_times_and_prefixes_are_checked() -> None:
    assert parse_time("2025-01-01T00:00:01Z") == parse_time("2025-01-01T03:00:01+03:00") == 1_735_689_601 * S
    assert parse_time("2025-01-01T00:00:01.5") == 1_735_689_601 * S + S // 2
    with pytest.raises(ReplayError):
        parse_time("yesterday")
    assert replay_stream("inc42").subjects == ("inc42.>",)
    for bad in ("md", "intent", "dlq", "a.b", "x>"):
        with pytest.raises(ReplayError):
            replay_stream(bad)


def _recording(books: list[BookSnapshot], portfolio: PortfolioSnapshot | None) -> Recording:
    rec = Recording(books=[Stored("MARKET", i + 1, b) for i, b in enumerate(books)])
    if portfolio is not None:
        rec.portfolios.append(portfolio)
    return rec


def test_the_replayed_risk_denies_and_the_strategy_hears_of_it() -> None:
    t0 = 1_000 * S
    books = [_book("BTCTRY", t0 + i * 3 * S, "1000000", "1000001", i + 1) for i in range(3)]
    rec = _recording(books, _portfolio("acct", t0 - S))
    small = RiskLimits(max_order_notional=D(10), max_book_age_ns=10 * S)
    outcome = replay_decisions(rec, ProfitParams(), ("BTCTRY",), "acct", small, permissive_rules(["BTCTRY"]))
    # Each denial frees the symbol, so every book past the cooldown tries again and is denied again.
    assert [d.verdict for d in outcome.decisions.values()] == ["denied:MAX_ORDER_NOTIONAL"] * 3
    assert outcome.warnings == ["no control event before the range: assumed mode NORMAL, kill switch released"]


def test_an_unsigned_control_event_is_applied_with_a_warning() -> None:
    from btcbot.contracts.messages import KillSwitch

    t0 = 1_000 * S
    books = [_book("BTCTRY", t0 + i * 3 * S, "1000000", "1000001", i + 1) for i in range(2)]
    rec = _recording(books, _portfolio("acct", t0 - S))
    rec.controls.append(KillSwitch(id="kill-unsigned", ts_ns=t0 - S, engaged=True, reason="r", operator="o"))
    outcome = replay_decisions(rec, ProfitParams(), ("BTCTRY",), "acct", RiskLimits(), permissive_rules(["BTCTRY"]))
    assert [w for w in outcome.warnings if "unsigned" in w] == [
        "1 unsigned control event(s) applied here that live risk refused (CONTROL_UNREADABLE): kill-unsigned"
    ]


def test_without_a_portfolio_before_the_range_the_replay_warns_or_starts_flat() -> None:
    books = [_book("BTCTRY", 1_000 * S, "1000000", "1000001", 1)]
    limits = RiskLimits()
    rules = permissive_rules(["BTCTRY"])
    held = replay_decisions(_recording(books, None), ProfitParams(), ("BTCTRY",), "acct", limits, rules)
    assert held.decisions == {}
    assert any("--assume-flat" in w for w in held.warnings)
    flat = replay_decisions(
        _recording(books, None), ProfitParams(), ("BTCTRY",), "acct", limits, rules, assume_flat=True
    )
    assert [d.verdict for d in flat.decisions.values()] == ["approved"]


class _FakeJs:
    def __init__(self) -> None:
        self.sent: list[tuple[str, dict[str, Any]]] = []

    async def publish(self, subject: str, payload: bytes = b"", **kwargs: Any) -> None:
        self.sent.append((subject, kwargs["headers"]))


async def test_publishing_is_paced_by_recorded_receive_times_and_links_to_the_originals() -> None:
    t0 = 1_000 * S
    books = [_book("BTCTRY", t0 + i * 3 * S, "1000000", "1000001", i + 1) for i in range(2)]
    rec = _recording(books, _portfolio("acct", t0 - S))
    outcome = replay_decisions(rec, ProfitParams(), ("BTCTRY",), "acct", RiskLimits(), permissive_rules(["BTCTRY"]))
    js, sleeps = _FakeJs(), []

    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)

    count = await publish_replay(js, "inc1", rec, outcome, speed=2.0, run_id="r1", sleep=sleep)
    assert count == 3  # two books and the intent of the first
    assert sleeps == [1.5]
    assert [(s, h[REPLAY_OF]) for s, h in js.sent] == [
        ("inc1.md.book.BTCTRY", "MARKET:1"),
        ("inc1.intent.BTCTRY", "MARKET:1"),  # no recorded intent: linked to its book
        ("inc1.md.book.BTCTRY", "MARKET:2"),
    ]
    assert js.sent[0][1]["Nats-Msg-Id"] == f"replay:r1:{books[0].id}"


# -- recorded on NATS, replayed back ----------------------------------------------------------------------

_EXCHANGE_INFO = {
    "data": {
        "symbols": [
            {
                "id": 1,
                "name": "BTCTRY",
                "nameNormalized": "BTC_TRY",
                "status": "TRADING",
                "numerator": "BTC",
                "denominator": "TRY",
                "numeratorScale": 8,
                "denominatorScale": 2,
                "filters": [
                    {
                        "filterType": "PRICE_FILTER",
                        "minPrice": "1",
                        "maxPrice": "100000000",
                        "tickSize": "1",
                        "minExchangeValue": "10",
                    }
                ],
            }
        ]
    }
}


@pytest.fixture
def replay_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> tuple[str, Path]:
    for name in ("STRATEGY_TAKE_PROFIT_BPS", "STRATEGY_ORDER_NOTIONAL", "RISK_MAX_ORDER_NOTIONAL"):
        monkeypatch.delenv(name, raising=False)
    # The recorded quotes rise 26 bps: take profit below that (profit_v1's default is the original's 30 bps).
    monkeypatch.setenv("STRATEGY_TAKE_PROFIT_BPS", "25")
    account = f"rpl{secrets.token_hex(4)}"
    monkeypatch.setenv("BTCBOT_ACCOUNT", account)
    monkeypatch.setenv("BTCBOT_SYMBOLS", "BTCTRY")
    rules = tmp_path / "exchangeinfo.json"
    rules.write_text(json.dumps(_EXCHANGE_INFO))
    return account, rules


async def _record_run(nats_url: str, account: str, rules_path: Path) -> tuple[int, list[BookSnapshot]]:
    """Publish what the live pipeline would have: books, intents by the real engine, verdicts, fills, portfolio."""
    from btcbot.contracts.streams import ALL_STREAMS
    from btcbot.runtime.inspect import last_sequence
    from btcbot.runtime.jetstream import NatsPublisher, connect, provision

    params, symbols, _ = strategy_setup(None, [])
    engine = ProfitV1(symbols, params)
    risk = RiskState(account)
    limits = risk_limits()
    t0 = time.time_ns() - 60 * S
    risk.set_rules(rules_from_file(rules_path), t0)
    nc = await connect(nats_url, "replay-recorder", 5, reconnect_forever=False)
    try:
        js = nc.jetstream()
        await provision(js, ALL_STREAMS)
        bus = NatsPublisher(js)
        first_seq = await last_sequence(js, "MARKET") + 1

        async def portfolio(ts: int, positions: tuple[Position, ...]) -> None:
            snapshot = _portfolio(account, ts, positions)
            engine.on_portfolio(snapshot)
            risk.on_portfolio(snapshot)
            await bus.publish(subjects.portfolio(account), snapshot)

        await portfolio(t0 - S, ())  # overwritten below: PORTFOLIO keeps the latest only
        quotes = [("1000000", "1000000.5"), ("1000000", "1000001"), ("1000100", "1000101"), ("1002600", "1002601")]
        books = [_book("BTCTRY", t0 + i * 3 * S, bid, ask, 900 + i) for i, (bid, ask) in enumerate(quotes)]
        for book in books:
            now = book.received_ts_ns
            await bus.publish(subjects.book(book.symbol), book)
            risk.on_book(book)
            decision = engine.on_book(book, now)
            if not isinstance(decision, OrderIntent):
                continue
            await bus.publish(subjects.intent(book.symbol), decision)
            verdict = check(decision, risk.view(), limits, now)
            coid = ids.client_order_id(decision.id)
            if not isinstance(verdict, Approved):
                denial = OrderDenied(
                    id=ids.denied_id(decision.id),
                    ts_ns=now,
                    intent_id=decision.id,
                    strategy=decision.strategy,
                    symbol=decision.symbol,
                    reason=verdict.reason,
                    detail=verdict.detail,
                )
                await bus.publish(subjects.denied(book.symbol), denial)
                engine.on_denied(denial, now)
                continue
            common = {"strategy": decision.strategy, "symbol": decision.symbol, "side": decision.side}
            order = {**common, "order_type": "limit", "price": decision.price, "quantity": decision.quantity}
            await bus.publish(
                subjects.submit(book.symbol),
                SubmitOrder(id=ids.submit_id(coid), ts_ns=now, client_order_id=coid, intent_id=decision.id, **order),
            )
            accepted = OrderAccepted(
                id=ids.accepted_id(coid),
                ts_ns=now + 1_000_000,
                client_order_id=coid,
                exchange_order_id=f"x{book.exchange_ts_ns}",
                intent_id=decision.id,
                **order,
            )
            await bus.publish(subjects.execution("accepted", book.symbol), accepted)
            engine.on_accepted(accepted)
            assert decision.price is not None
            filled = OrderFilled(
                id=ids.fill_id(book.symbol, f"t{book.exchange_ts_ns}", f"x{book.exchange_ts_ns}"),
                ts_ns=now + 2_000_000,
                client_order_id=coid,
                exchange_order_id=f"x{book.exchange_ts_ns}",
                trade_id=f"t{book.exchange_ts_ns}",
                price=decision.price,
                quantity=decision.quantity,
                fee=D(0),
                fee_asset="TRY",
                **common,
            )
            await bus.publish(subjects.execution("filled", book.symbol), filled)
            engine.on_filled(filled, filled.ts_ns)
            if decision.side == "buy":
                held = Position(
                    symbol="BTCTRY",
                    quantity=decision.quantity,
                    avg_cost=decision.price,
                    realized_pnl=D(0),
                    unrealized_pnl=D(0),
                )
                await portfolio(now + 3_000_000, (held,))
        return first_seq, books
    finally:
        await nc.close()


async def _replay(capsys: pytest.CaptureFixture[str], nats_url: str, **kwargs: Any) -> tuple[int, list[dict[str, Any]]]:
    code = await run_replay(ReplayOptions(json_lines=True, **kwargs), nats_url)
    # The kit logs nats.disconnected on close to stdout in tests (the CLI sends logs to stderr).
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    return code, lines


async def test_a_recorded_run_replays_the_same_and_a_changed_param_shows_where_it_differs(
    nats_url: str, replay_env: tuple[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    account, rules = replay_env
    first_seq, books = await _record_run(nats_url, account, rules)
    selection = Selection(from_seq=first_seq, symbols=("BTCTRY",))

    code, lines = await _replay(capsys, nats_url, selection=selection, rules_file=rules, assume_flat=True)
    *rows, summary = lines
    assert code == 0
    assert [(r["status"], r["recorded"]["side"], r["recorded"]["verdict"]) for r in rows] == [
        ("same", "buy", "denied:PRICE_TICK"),
        ("same", "buy", "approved"),
        ("same", "sell", "approved"),
    ]
    assert summary["books"] == 4
    assert (summary["recorded"], summary["replayed"], summary["same"]) == (3, 3, 3)
    assert summary["rules"] == f"file:{rules}"

    # A tighter take profit sells one book earlier: that intent is new, the recorded one never happens.
    code, lines = await _replay(
        capsys, nats_url, selection=selection, rules_file=rules, assume_flat=True, params=("take_profit_bps=0.5",)
    )
    *rows, summary = lines
    assert code == 1
    by_book = {r["intent_id"].rsplit(":", 4)[-1]: r["status"] for r in rows}
    assert by_book == {"900": "same", "901": "same", "902": "only_replayed", "903": "only_recorded"}

    # A bigger order changes both buys' quantity; the order is then never completely filled, so no sale.
    code, lines = await _replay(
        capsys, nats_url, selection=selection, rules_file=rules, assume_flat=True, params=("order_notional=2000",)
    )
    *rows, summary = lines
    assert [(r["status"], r["fields"]) for r in rows] == [
        ("different", ["quantity"]),
        ("different", ["quantity"]),
        ("only_recorded", []),
    ]

    # Without rules the tick check is skipped, and the summary says so.
    code, lines = await _replay(capsys, nats_url, selection=selection, assume_flat=True)
    *rows, summary = lines
    assert rows[0]["fields"] == ["verdict"]
    assert rows[0]["replayed"]["verdict"] == "approved"
    assert summary["rules"] == "skipped"
    assert any("rule checks skipped" in w for w in summary["warnings"])

    # A time range selects the same books as the sequence range.
    code, lines = await _replay(
        capsys,
        nats_url,
        selection=Selection(from_seq=first_seq, since_ns=books[1].received_ts_ns, until_ns=books[2].received_ts_ns),
        rules_file=rules,
        assume_flat=True,
    )
    assert lines[-1]["books"] == 2


async def test_publish_prefix_copies_books_and_intents_into_an_isolated_stream(
    nats_url: str, replay_env: tuple[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    from btcbot.contracts.codec import decode
    from btcbot.runtime.inspect import read_stream
    from btcbot.runtime.jetstream import connect

    account, rules = replay_env
    first_seq, books = await _record_run(nats_url, account, rules)
    prefix = f"inc{secrets.token_hex(3)}"
    selection = Selection(from_seq=first_seq, symbols=("BTCTRY",))
    code, lines = await _replay(
        capsys, nats_url, selection=selection, rules_file=rules, assume_flat=True, publish_prefix=prefix
    )
    assert code == 0, json.dumps(lines[-1])
    assert lines[-1]["published"] == 7
    nc = await connect(nats_url, "replay-check", 5, reconnect_forever=False)
    try:
        copied = [s async for s in read_stream(nc.jetstream(), f"REPLAY_{prefix}", 1, ">")]
        await nc.jetstream().delete_stream(f"REPLAY_{prefix}")
    finally:
        await nc.close()
    assert [s.subject for s in copied][:2] == [f"{prefix}.md.book.BTCTRY", f"{prefix}.intent.BTCTRY"]
    assert decode(copied[0].data) == books[0]
    assert copied[0].headers[REPLAY_OF] == f"MARKET:{first_seq}"
    assert copied[1].headers[REPLAY_OF].startswith("INTENTS:")
