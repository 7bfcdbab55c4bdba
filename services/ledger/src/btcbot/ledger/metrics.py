"""The ledger's own instruments, and its figures in the kit's instruments (docs/metrics.md)."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from functools import cache

from opentelemetry import metrics

from btcbot.contracts.messages import OrderFilled, PortfolioSnapshot
from btcbot.runtime.metrics import FILL_TO_BOOKED, instruments, observe_stage


@dataclass(frozen=True)
class LedgerInstruments:
    """Counters an operator alerts on, and the size of the batches ingestion commits."""

    integrity_alerts: metrics.Counter
    reconcile_rounds: metrics.Counter
    reconcile_mismatches: metrics.Counter
    batch_size: metrics.Histogram


@cache
def ledger_instruments() -> LedgerInstruments:
    """The process-wide ledger instruments."""
    meter = metrics.get_meter("btcbot.ledger")
    return LedgerInstruments(
        integrity_alerts=meter.create_counter(
            "btcbot.ledger.integrity_alerts", description="integrity errors (oversell) that froze a position"
        ),
        reconcile_rounds=meter.create_counter(
            "btcbot.ledger.reconcile.rounds", description="reconciliation rounds with the exchange, by status"
        ),
        reconcile_mismatches=meter.create_counter(
            "btcbot.ledger.reconcile.mismatches",
            description="differences with the exchange that persisted across two rounds, by kind",
        ),
        batch_size=meter.create_histogram(
            "btcbot.ledger.batch_size", description="execution events committed per transaction"
        ),
    )


def fee_in_quote(fill: OrderFilled, quote_asset: str) -> Decimal | None:
    """The fill's fee valued in the quote asset (a base-asset fee at the fill price); None: another asset."""
    quote = fill.quote_asset or quote_asset
    base = fill.base_asset or (fill.symbol.removesuffix(quote) if fill.symbol.endswith(quote) else "")
    if fill.fee_asset == quote:
        return abs(fill.fee)
    if base and fill.fee_asset == base:
        return abs(fill.fee) * fill.price
    return None


def report_fill(fill: OrderFilled, quote_asset: str, now_ns: int) -> None:
    """A fill the ledger booked: btcbot_fills_total, btcbot_fees_quote_total and the fill-to-booked stage."""
    inst = instruments()
    inst.fills.add(1, {"symbol": fill.symbol, "side": fill.side})
    fee = fee_in_quote(fill, quote_asset)
    if fee is not None:
        inst.fees_quote.add(float(fee), {"symbol": fill.symbol})
    observe_stage(FILL_TO_BOOKED, fill.ts_ns, now_ns)


def report_portfolio(snapshot: PortfolioSnapshot) -> None:
    """The published snapshot's figures: equity, the bot's PnL, drawdown and day, exposure, halts, quarantine."""
    inst = instruments()
    inst.equity.set(float(snapshot.equity))
    inst.bot_pnl.set(float(snapshot.bot_pnl))
    inst.bot_drawdown.set(float(snapshot.bot_drawdown))
    inst.daily_pnl.set(float(snapshot.day_pnl))
    inst.halted_symbols.set(len(snapshot.halted))
    inst.quarantined_fills.set(snapshot.quarantined)
    for symbol, value in exposures(snapshot).items():
        inst.exposure.set(float(value), {"symbol": symbol})


def exposures(snapshot: PortfolioSnapshot) -> dict[str, Decimal]:
    """Exposure per symbol in the quote asset: the bot's own quantity (opening holdings excluded) at its mark."""
    out: dict[str, Decimal] = {}
    for position in snapshot.positions:
        price = position.mark if position.mark is not None else position.avg_cost
        out[position.symbol] = (position.quantity - position.opening_quantity) * price
    return out
