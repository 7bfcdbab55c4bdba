"""`btcbot verify`'s comparison (pure) and how it finds its inputs."""

from __future__ import annotations

import decimal
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from msgspec.structs import replace

from btcbot.cli.verify import Evidence, LedgerFill, VerifyError, compare, sources_from
from btcbot.contracts.messages import (
    Message,
    OrderAccepted,
    OrderDenied,
    OrderFilled,
    OrderIntent,
    OrderRejected,
    SubmitOrder,
)

D = Decimal


def intent(n: int) -> OrderIntent:
    return OrderIntent(id=f"i{n}", ts_ns=1, strategy="s", symbol="BTCTRY", side="buy", order_type="limit",
                       price=D(100), quantity=D(1), reason="r", book_id="b")  # fmt: skip


def submit(n: int) -> SubmitOrder:
    return SubmitOrder(id=f"submit:c{n}", ts_ns=1, client_order_id=f"c{n}", intent_id=f"i{n}", strategy="s",
                       symbol="BTCTRY", side="buy", order_type="limit", price=D(100), quantity=D(1))  # fmt: skip


def accepted(n: int) -> OrderAccepted:
    return OrderAccepted(id=f"accepted:c{n}", ts_ns=1, client_order_id=f"c{n}", exchange_order_id=str(n),
                         intent_id=f"i{n}", strategy="s", symbol="BTCTRY", side="buy", order_type="limit",
                         price=D(100), quantity=D(1))  # fmt: skip


def filled(n: int, trade: str, qty: str = "1", side: str = "buy") -> OrderFilled:
    return OrderFilled(id=f"fill:BTCTRY:{trade}:{n}", ts_ns=1, client_order_id=f"c{n}", exchange_order_id=str(n),
                       strategy="s", symbol="BTCTRY", side=side, trade_id=trade, price=D(100), quantity=D(qty),
                       fee=D(0), fee_asset="TRY", tax=D(0), exchange_ts_ns=1, base_asset="BTC",
                       quote_asset="TRY")  # fmt: skip


def sim_order(n: int, status: str = "Closed") -> dict[str, Any]:
    return {"id": n, "clientId": f"c{n}", "pair": "BTCTRY", "status": status}


def sim_trade(n: int, trade: str, qty: str = "1", side: str = "buy") -> dict[str, Any]:
    return {"tradeId": int(trade), "orderId": n, "clientId": f"c{n}", "pair": "BTCTRY", "side": side,
            "price": "100", "amount": qty}  # fmt: skip


def ledger_fill(n: int, trade: str, qty: str = "1", side: str = "buy") -> LedgerFill:
    return LedgerFill("BTCTRY", trade, f"c{n}", side, D(100), D(qty), str(n))


def healthy() -> Evidence:
    messages: list[Message] = [intent(1), submit(1), accepted(1), filled(1, "10"), intent(2),
                               OrderDenied(id="denied:i2", ts_ns=1, intent_id="i2", strategy="s", symbol="BTCTRY",
                                           reason="MODE")]  # fmt: skip
    return Evidence(
        sim={"orders": [sim_order(1)], "trades": [sim_trade(1, "10")],
             "balances": {"TRY": {"total": "900"}, "BTC": {"total": "1"}}},
        messages=messages,
        ledger_fills=[ledger_fill(1, "10")],
        ledger_balances={"TRY": D("900.00"), "BTC": D(1)},
        claims={"c1": {"state": "sent", "status": "filled"}},
    )  # fmt: skip


def test_a_consistent_record_is_ok() -> None:
    verdict = compare(healthy())
    assert verdict["ok"], verdict
    assert (verdict["exchange_orders"], verdict["ledger_fills"], verdict["denied"]) == (1, 1, 1)


def test_each_problem_is_counted_with_examples() -> None:
    evidence = healthy()
    evidence.sim["orders"].append(sim_order(1))  # placed twice
    evidence.sim["trades"].append(sim_trade(1, "11"))  # the ledger and execution never saw it
    evidence.ledger_fills.append(ledger_fill(1, "99"))  # the exchange has no such trade
    evidence.ledger_balances["BTC"] = D(2)
    evidence.messages += [intent(3), submit(4)]  # intent 3 lost; order 4 never resolved
    verdict = compare(evidence)
    assert verdict["duplicate_orders"] == 1
    assert verdict["missing_fills"] == 1
    assert verdict["missing_fill_events"] == 1
    assert verdict["extra_fills"] == 1
    assert verdict["balance_mismatches"] == 1
    assert verdict["lost_intents"] == 1
    assert verdict["unresolved_orders"] == 1
    assert verdict["examples"]["missing_fills"] == ["BTCTRY:11:1"]
    assert not verdict["ok"]


def test_on_a_live_run_young_unanswered_intents_and_orders_are_pending_not_lost() -> None:
    evidence = healthy()
    evidence.messages += [intent(3), submit(4), replace(intent(5), ts_ns=100), replace(submit(6), ts_ns=100)]
    evidence.young_after_ns = 50  # stamped after 50: still in flight
    verdict = compare(evidence)
    assert (verdict["lost_intents"], verdict["pending_intents"]) == (1, 1)
    assert (verdict["unresolved_orders"], verdict["pending_orders"]) == (1, 1)
    assert verdict["examples"]["lost_intents"] == ["i3"]
    evidence.young_after_ns = 0  # a stopped run: nothing is on its way any more
    verdict = compare(evidence)
    assert (verdict["lost_intents"], verdict["pending_intents"]) == (2, 0)


def test_orders_in_flight_from_claims_and_from_events() -> None:
    evidence = healthy()
    evidence.messages.remove(next(m for m in evidence.messages if isinstance(m, OrderFilled)))
    evidence.ledger_fills.clear()
    evidence.sim["trades"].clear()
    # Execution's events say open; the exchange says closed.
    assert compare(evidence)["examples"]["orders_in_flight"] == ["c1"]
    evidence.sim["orders"][0]["status"] = "Untouched"
    evidence.claims = {"c1": {"state": "sent", "status": "accepted"}, "c5": {"state": "sending", "status": "x"},
                       "c6": {"owner": "r"}}  # fmt: skip
    verdict = compare(evidence)
    # c1 rests at the exchange (fine); c5 is stuck sending; c6 is a bare claim (nothing was sent).
    assert verdict["examples"]["orders_in_flight"] == ["c5"]
    rejected = OrderRejected(id="rejected:c7", ts_ns=1, client_order_id="c7", intent_id="i7", strategy="s",
                             symbol="BTCTRY", reason="X")  # fmt: skip
    evidence.messages += [submit(7), rejected]
    assert compare(evidence)["unresolved_orders"] == 0


def test_fill_mismatch_is_reported() -> None:
    evidence = healthy()
    evidence.ledger_fills = [ledger_fill(1, "10", qty="0.5")]
    assert compare(evidence)["fill_mismatches"] == 1


def test_sources_come_from_flags_then_run_file_then_env(tmp_path: Path) -> None:
    run = tmp_path / "run.json"
    run.write_text(json.dumps({"sim_url": "http://sim", "api_key": "k", "nats_url": "nats://n",
                               "database_url": "postgresql://db", "redis_url": "redis://r",
                               "key_prefix": "p"}))  # fmt: skip
    sources = sources_from({"run_file": str(run), "api_key": "flag"}, {"BTCBOT_ACCOUNT": "acct"})
    assert (sources.sim_url, sources.api_key, sources.key_prefix, sources.account) == ("http://sim", "flag", "p",
                                                                                        "acct")  # fmt: skip
    with pytest.raises(VerifyError, match="--sim-url"):
        sources_from({}, {})
    with pytest.raises(VerifyError, match="not found"):
        sources_from({"run_file": str(tmp_path / "missing.json")}, {})


def test_sources_follow_sentinel_when_the_services_do() -> None:
    flags = {"sim_url": "http://sim", "api_key": "k", "nats_url": "nats://n", "database_url": "postgresql://db"}
    env = {"REDIS_SENTINELS": "s0:26379,s1:26380", "REDIS_SENTINEL_MASTER": "btcbot"}
    sources = sources_from(flags, env)
    assert sources.redis_sentinels == (("s0", 26379), ("s1", 26380))
    assert sources.redis_sentinel_master == "btcbot"
    with pytest.raises(VerifyError, match="REDIS_SENTINELS: not host:port"):
        sources_from(flags, {**env, "REDIS_SENTINELS": "s0"})
    with pytest.raises(VerifyError, match="set together"):
        sources_from(flags, {"REDIS_SENTINELS": "s0:26379"})


def test_each_side_of_a_self_match_is_checked_on_its_own() -> None:
    # Our sell (order 2) rested; our buy (order 1) crossed it: one trade id, two orders, two fills.
    evidence = healthy()
    evidence.sim["orders"].append(sim_order(2))
    evidence.sim["trades"] += [sim_trade(1, "12"), sim_trade(2, "12", side="sell")]
    evidence.messages += [intent(2), submit(2), accepted(2), filled(1, "12"), filled(2, "12", side="sell")]
    evidence.messages = [m for m in evidence.messages if not isinstance(m, OrderDenied)]
    evidence.ledger_fills += [ledger_fill(1, "12"), ledger_fill(2, "12", side="sell")]
    evidence.claims = None
    verdict = compare(evidence)
    assert verdict["ok"], verdict
    assert (verdict["self_matched_trades"], verdict["ledger_fills"]) == (1, 3)
    # The sell side dropped as a "duplicate" of the buy: caught.
    evidence.ledger_fills.pop()
    verdict = compare(evidence)
    assert verdict["missing_fills"] == 1
    assert verdict["examples"]["missing_fills"] == ["BTCTRY:12:2"]
    # Booked twice: caught too.
    evidence.ledger_fills += [ledger_fill(2, "12", side="sell"), ledger_fill(2, "12", side="sell")]
    verdict = compare(evidence)
    assert (verdict["missing_fills"], verdict["extra_fills"]) == (0, 1)
    assert verdict["examples"]["extra_fills"] == ["ledger twice BTCTRY:12:2"]


def test_halts_and_quarantined_fills_are_not_clean_but_bad_messages_only_reported() -> None:
    evidence = healthy()
    evidence.bad_messages = ["EXECUTION:7 INVALID_MONEY: OrderFilled.quantity=NaN"]
    verdict = compare(evidence)
    assert verdict["ok"], verdict
    assert verdict["bad_messages"] == 1
    assert verdict["examples"]["bad_messages"] == ["EXECUTION:7 INVALID_MONEY: OrderFilled.quantity=NaN"]
    evidence.halted = {"ETHTRY": "oversell: ..."}
    evidence.quarantined = ["3:nobody:77"]
    verdict = compare(evidence)
    assert (verdict["halted_symbols"], verdict["quarantined_fills"]) == (1, 1)
    assert verdict["examples"]["quarantined_fills"] == ["3:nobody:77"]
    assert not verdict["ok"]


@pytest.mark.integration
async def test_a_nan_fill_in_the_execution_stream_is_counted_not_a_traceback(nats_url: str) -> None:
    import msgspec

    from btcbot.cli.verify import _stream_messages
    from btcbot.contracts import subjects
    from btcbot.contracts.streams import ALL_STREAMS
    from btcbot.runtime.jetstream import NatsPublisher, connect, provision

    nc = await connect(nats_url, "verify-test", 5, reconnect_forever=False)
    try:
        js = nc.jetstream()
        await provision(js, ALL_STREAMS)
        for stream in ("INTENTS", "ORDERS", "EXECUTION"):
            await js.purge_stream(stream)
        publisher = NatsPublisher(js)
        await publisher.publish(subjects.execution("accepted", "BTCTRY"), accepted(1))
        nan = msgspec.structs.replace(filled(1, "10"), quantity=D("NaN"))
        await publisher.publish(subjects.execution("filled", "BTCTRY"), nan)
        huge = msgspec.structs.replace(filled(1, "11", qty="1E+400"), id="fill:huge")
        await publisher.publish(subjects.execution("filled", "BTCTRY"), huge)
        await js.publish(subjects.execution("filled", "BTCTRY"), b"\x00 not msgpack")
    finally:
        await nc.close()
    messages, bad = await _stream_messages(nats_url, 0)
    assert [m.id for m in messages] == ["accepted:c1"]
    # "STREAM:sequence why" (sequences go on across purges, so only the order is fixed here)
    where = [b.split(" ", 1)[0] for b in bad]
    why = [b.split(" ", 1)[1] for b in bad]
    assert why[:2] == ["INVALID_MONEY: OrderFilled.quantity=NaN", "INVALID_MONEY: OrderFilled.quantity=1E+400"]
    assert why[2].startswith("undecodable")
    assert len(bad) == 3
    assert all(w.startswith("EXECUTION:") for w in where)
    # Left out, the verdict is simply computed; let in, the NaN makes the comparison's arithmetic raise.
    verdict = compare(Evidence(sim={"orders": [sim_order(1)], "trades": []}, messages=messages, bad_messages=bad))
    assert verdict["bad_messages"] == 3
    with pytest.raises(decimal.InvalidOperation):
        compare(Evidence(sim={"orders": [sim_order(1)], "trades": []}, messages=[accepted(1), nan]))


def test_reservations_still_counting_are_reported_and_leaked_ones_are_not_clean() -> None:
    evidence = healthy()
    evidence.sim = {**evidence.sim, "orders": [sim_order(1), sim_order(2, status="Untouched")]}
    evidence.messages.append(accepted(2))
    evidence.snapshot_exec_seq = 40
    evidence.reservations = {
        "reserved": {"BTCTRY": {"buy_notional": "300", "sell_quantity": "0"}},
        "orders": [
            # finished and covered by the ledger's snapshot: no longer counts
            {"client_order_id": "c1", "symbol": "BTCTRY", "side": "buy", "state": "done", "done_seq": "40"},
            # resting at the exchange: counts, by design
            {"client_order_id": "c2", "symbol": "BTCTRY", "side": "buy", "state": "accepted", "done_seq": "0"},
        ],
    }
    verdict = compare(evidence)
    assert verdict["ok"], verdict
    assert verdict["reserved_orders"] == 1
    assert verdict["reserved_exposure"] == {"BTCTRY": {"buy_notional": "300", "sell_quantity": "0"}}

    # The same finished order before the ledger's snapshot covers it (it still counts, by design), and a
    # reservation risk thinks open for an order the exchange never had (leaked).
    evidence.snapshot_exec_seq = 39
    evidence.reservations["orders"].append(
        {"client_order_id": "c9", "symbol": "BTCTRY", "side": "sell", "state": "pending", "done_seq": "0"}
    )
    verdict = compare(evidence)
    assert not verdict["ok"]
    assert verdict["leaked_reservations"] == 1  # c9; c1 only waits for the ledger
    assert verdict["examples"]["leaked_reservations"] == ["c9 BTCTRY pending (exchange: none)"]
    assert verdict["reserved_orders"] == 3
