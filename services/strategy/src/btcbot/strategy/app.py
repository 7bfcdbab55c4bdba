"""Wiring: one profit_v1 engine fed by books, execution events and portfolio snapshots."""

from __future__ import annotations

from btcbot.contracts.codec import Codec
from btcbot.contracts.messages import (
    BookSnapshot,
    OrderAccepted,
    OrderCanceled,
    OrderDenied,
    OrderFilled,
    OrderRejected,
    PortfolioSnapshot,
)
from btcbot.contracts.streams import STRATEGY_BOOKS, STRATEGY_DENIED, STRATEGY_EXECUTION, STRATEGY_PORTFOLIO
from btcbot.runtime.service import Service
from btcbot.strategy.handlers import ExecutionEvent, StrategyHandlers
from btcbot.strategy.settings import StrategySettings
from btcbot.strategy.signals import STRATEGY, ProfitV1


async def setup(svc: Service, settings: StrategySettings) -> None:
    """Build the engine and register its consumers."""
    engine = ProfitV1(settings.symbols, settings.params())
    handlers = StrategyHandlers(engine, svc.bus, svc.now_ns, settings.account, svc.log)
    svc.consume(STRATEGY_PORTFOLIO, Codec(PortfolioSnapshot), handlers.on_portfolio)
    execution: Codec[ExecutionEvent] = Codec(OrderAccepted | OrderRejected | OrderCanceled | OrderFilled)
    svc.consume(STRATEGY_EXECUTION, execution, handlers.on_execution)
    svc.consume(STRATEGY_DENIED, Codec(OrderDenied), handlers.on_denied)
    svc.consume(STRATEGY_BOOKS, Codec(BookSnapshot), handlers.on_book)
    svc.log.info("strategy.configured", strategy=STRATEGY, symbols=list(settings.symbols), params=repr(engine.params))
