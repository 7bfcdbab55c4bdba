"""Trace completeness and subject counting of the run summary."""

from __future__ import annotations

import json

from btcbot.cli.summary import PIPELINE, check_traces


def span(trace: str, service: str, message_type: str | None = None) -> str:
    attrs = {"btcbot.message_type": message_type} if message_type else {}
    return json.dumps({"trace_id": trace, "span_id": "1", "service": service, "attributes": attrs})


def test_a_trace_with_every_service_and_a_booked_fill_is_complete() -> None:
    lines = [span("a", s) for s in PIPELINE[:-1]] + [span("a", "ledger", "OrderFilled"), "", "not json"]
    result = check_traces(lines)
    assert result.complete
    assert result.trace_id == "a"


def test_a_fill_trace_missing_a_service_is_not_complete() -> None:
    lines = [span("b", s) for s in ("strategy", "risk", "execution")] + [span("b", "ledger", "OrderFilled")]
    lines += [span("c", s) for s in PIPELINE]  # all services, but the ledger booked no fill in it
    result = check_traces(lines)
    assert not result.complete
    assert result.services_seen == ("strategy", "risk", "execution", "ledger")
    assert result.traces_with_fills == 1


def test_funds_follow_the_traded_assets() -> None:
    from btcbot.cli.up import assets_of, funds_for

    assert assets_of(("BTCTRY", "ETHTRY")) == {"BTC", "ETH", "TRY"}
    assert assets_of(("BTCUSDT", "USDTTRY")) == {"BTC", "USDT", "TRY"}
    assert funds_for(("BTCTRY",), "TRY=1000,BTC=1,ETH=20,USDT=5") == "TRY=1000,BTC=1"


def test_funds_split_every_pair_the_simulator_offers() -> None:
    from btcbot.cli.up import assets_of, funds_for
    from btcbot.sim.config import KNOWN_SYMBOLS

    for name, rules in KNOWN_SYMBOLS.items():
        assert assets_of((name,)) == {rules.numerator, rules.denominator}, name
    assert funds_for(("XRPUSDT", "AVAXTRY"), "TRY=1000,BTC=1,ETH=20,USDT=5") == "TRY=1000,USDT=5"
