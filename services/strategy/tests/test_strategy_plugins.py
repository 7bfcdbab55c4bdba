"""The plug-in API: discovery and configuration from the environment, several strategies in one engine."""

from decimal import Decimal

import pytest
import structlog

from btcbot.btcturk.rulebook import SymbolRules
from btcbot.contracts import ids, subjects
from btcbot.contracts.messages import Balance, BookSnapshot, Level, OrderFilled, OrderIntent, PortfolioSnapshot
from btcbot.runtime.bus import Delivery
from btcbot.runtime.errors import SettingsError
from btcbot.runtime.memory import InMemoryBus
from btcbot.strategy.api import BookContext, Plugin, Proposal, Quiet
from btcbot.strategy.handlers import StrategyHandlers
from btcbot.strategy.registry import configure, discover
from btcbot.strategy.signals import Engine, Hold, ProfitParams, Slot
from btcbot.strategy.strategies.mean_reversion import MeanReversionParams
from btcbot.strategy.strategies.profit_v1 import ProfitV1, ProfitV1Params

D = Decimal
S = 1_000_000_000
T0 = 1_700_000_000 * S
RULES = {"BTCTRY": SymbolRules("BTCTRY", True, price_scale=0, quantity_scale=8, tick_size=D(1), min_notional=D(10))}


def book(bid="1000000", ask="1000100", *, at=T0, seq=1, symbol="BTCTRY"):
    return BookSnapshot(
        id=ids.book_id(symbol, at, seq), ts_ns=at, symbol=symbol, sequence=seq,
        bids=(Level(D(bid), D(1)),), asks=(Level(D(ask), D(1)),), exchange_ts_ns=at, received_ts_ns=at,
    )  # fmt: skip


def snapshot(try_free="1000", qty="0", cost="0", exec_seq=0):
    from btcbot.contracts.messages import Position

    positions = () if D(qty) == 0 else (Position(symbol="BTCTRY", quantity=D(qty), avg_cost=D(cost),
                                                 realized_pnl=D(0), unrealized_pnl=D(0)),)  # fmt: skip
    z = D(0)
    return PortfolioSnapshot(
        id=f"p{exec_seq}", ts_ns=T0, account="main", quote_asset="TRY",
        balances=(Balance(asset="TRY", total=D(try_free)),), positions=positions, exposure=z, realized_pnl=z,
        unrealized_pnl=z, fees=z, equity=z, peak_equity=z, drawdown=z, fills=0, exec_seq=exec_seq,
    )  # fmt: skip


def filled(intent: OrderIntent, trade: str, quantity=None) -> OrderFilled:
    return OrderFilled(
        id=ids.fill_id(intent.symbol, trade, "1"), ts_ns=T0, client_order_id=ids.client_order_id(intent.id),
        exchange_order_id=trade, strategy=intent.strategy, symbol=intent.symbol, side=intent.side, trade_id=trade,
        price=intent.price, quantity=quantity or intent.quantity, fee=D(0), fee_asset="TRY",
    )  # fmt: skip


# -- discovery and settings ----------------------------------------------------------------------------------


def test_the_builtin_strategies_are_found_through_entry_points():
    assert {"profit_v1", "mean_reversion", "momentum", "rebalance"} <= set(discover())


def test_parameters_and_allocation_come_from_the_environment():
    env = {
        "STRATEGY_ORDER_NOTIONAL": "250",
        "STRATEGY_MEAN_REVERSION__THRESHOLD_BPS": "80",
        "STRATEGY_MEAN_REVERSION__WINDOW": "120",
        "STRATEGY_MEAN_REVERSION__WEIGHT": "3",
        "STRATEGY_MEAN_REVERSION__CAPITAL": "5000",
        "STRATEGY_PROFIT_V1__ENABLED": "true",
    }
    profit, reversion = configure(["profit_v1", "mean_reversion"], env, ("BTCTRY",))
    assert isinstance(profit.params, ProfitV1Params)
    assert profit.params.order_notional == D(250)
    assert isinstance(reversion.params, MeanReversionParams)
    assert (reversion.params.threshold_bps, reversion.params.window) == (D(80), 120.0)
    assert (reversion.allocation.weight, reversion.allocation.capital) == (D(3), D(5000))


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("STRATEGY_MEAN_REVERSION__THRESHOLD_BPS", "abc"),
        ("STRATEGY_MEAN_REVERSION__WINDOW", "-1"),
        ("STRATEGY_MEAN_REVERSION__WEIGHT", "0"),
        ("STRATEGY_MEAN_REVERSION__THRESHOLD", "50"),  # a typo: no such parameter
        ("STRATEGY_REBALANCE__WEIGHTS", "BTCTRY:0.7"),  # does not sum to 1
    ],
)
def test_a_bad_parameter_stops_start_up_naming_the_parameter_and_its_variable(variable, value):
    name = variable.removeprefix("STRATEGY_").split("__")[0].lower()
    with pytest.raises(SettingsError, match=variable) as caught:
        configure([name], {variable: value}, ("BTCTRY",))
    assert "\n" not in str(caught.value)


def test_rebalance_weights_must_name_traded_symbols():
    env = {"STRATEGY_REBALANCE__WEIGHTS": "XRPTRY:0.5,CASH:0.5"}
    with pytest.raises(SettingsError, match="XRPTRY, not among BTCBOT_SYMBOLS"):
        configure(["rebalance"], env, ("BTCTRY",))


def test_unknown_or_all_disabled_strategies_are_refused():
    with pytest.raises(SettingsError, match="STRATEGY_STRATEGIES: unknown strategy 'nope'"):
        configure(["nope"], {}, ("BTCTRY",))
    with pytest.raises(SettingsError, match="disabled"):
        configure(["profit_v1"], {"STRATEGY_PROFIT_V1__ENABLED": "false"}, ("BTCTRY",))


# -- several strategies in one engine ------------------------------------------------------------------------


class AlwaysSell(Quiet):
    """Sells whatever it is told it holds: the engine must only ever tell it its own."""

    def on_book(self, ctx: BookContext):
        return (Proposal(ctx.book.symbol, "sell", ctx.bid, D(1), "sell it all"),) if ctx.holding.quantity else ()


def two_strategies(rules=RULES.get, **slot_kw):
    profit = Slot("profit_v1", ProfitV1(ProfitV1Params()), **slot_kw)
    seller = Slot("seller", AlwaysSell())
    e = Engine(("BTCTRY",), ProfitParams(cooldown_ns=0), track_fills=True, slots=(profit, seller), rules=rules)
    e.start_at(0)
    e.on_portfolio(snapshot())
    return e


def test_intent_ids_carry_each_strategy_s_name_and_a_strategy_never_sells_what_another_bought():
    e = two_strategies()
    decisions = e.decide(book(), T0)
    buy = next(d for d in decisions if isinstance(d, OrderIntent))
    assert (buy.strategy, buy.side) == ("profit_v1", "buy")
    assert buy.id == ids.intent_id("profit_v1", "BTCTRY", book().id)
    e.on_execution_seen(1)
    e.saw_fill(filled(buy, "t1"), 1)
    e.on_filled(filled(buy, "t1"), T0)
    # The account now holds profit_v1's buy: the seller holds nothing of it and proposes nothing.
    later = e.decide(book("1000000", "1000100", seq=2, at=T0 + S), T0 + S)
    assert not any(isinstance(d, OrderIntent) and d.strategy == "seller" for d in later)
    assert e.state("BTCTRY", "profit_v1").quantity == buy.quantity
    assert e.state("BTCTRY", "seller").quantity == 0


def test_a_symbol_without_exchange_rules_gets_no_intent_from_any_strategy():
    e = two_strategies(rules=lambda symbol: None)
    decisions = e.decide(book(), T0)
    assert all(isinstance(d, Hold) and "no exchange rules" in d.reason for d in decisions)


def test_weights_split_the_free_quote_and_capital_caps_a_strategy():
    e = two_strategies(weight=D(1))
    e.on_portfolio(snapshot(try_free="50", exec_seq=1))
    # profit_v1 has half of 50 TRY: 25, under its 100 TRY entry.
    [buy] = [d for d in e.decide(book(), T0) if isinstance(d, OrderIntent)]
    assert buy.quantity * buy.price <= D(25)
    capped = Engine(("BTCTRY",), ProfitParams(), slots=(Slot("profit_v1", ProfitV1(ProfitV1Params()), capital=D(20)),),
                    rules=RULES.get)  # fmt: skip
    capped.on_portfolio(snapshot(try_free="100000"))
    intent = capped.on_book(book(), T0)
    assert isinstance(intent, OrderIntent)
    assert intent.quantity * intent.price <= D(20)


async def test_handlers_publish_one_intent_per_strategy_on_the_in_memory_bus():
    class Buyer(Quiet):
        def on_book(self, ctx):
            return (Proposal(ctx.book.symbol, "buy", ctx.ask, D("0.0001"), "buy"),)

    engine = Engine(("BTCTRY",), ProfitParams(cooldown_ns=0), slots=(Slot("a", Buyer()), Slot("b", Buyer())),
                    rules=RULES.get)  # fmt: skip
    bus = InMemoryBus()
    h = StrategyHandlers(engine, bus, lambda: T0, "main", structlog.get_logger("test"))
    await h.on_portfolio(snapshot(), Delivery(subject="portfolio.main"))
    await h.on_book(book(), Delivery(subject="md.book.BTCTRY"))
    intents = [m for _, m in bus.published if isinstance(m, OrderIntent)]
    assert sorted(i.strategy for i in intents) == ["a", "b"]
    assert {s for s, _ in bus.published} == {subjects.intent("BTCTRY")}
    assert len({i.id for i in intents}) == 2


def test_a_plugin_given_directly_is_configured_like_a_discovered_one():
    plugin = Plugin("x", ProfitV1Params, lambda p, s: ProfitV1(p))  # type: ignore[arg-type]
    [configured] = configure(["x"], {}, ("BTCTRY",), plugins={"x": plugin})
    assert configured.plugin is plugin


def test_proposals_from_a_fill_or_a_snapshot_wait_for_their_symbol_s_next_book():
    class Reactive:
        def on_book(self, ctx):
            return ()

        def on_fill(self, fill, now_ns):
            return ()

        def on_portfolio(self, snapshot, now_ns):
            return (Proposal("BTCTRY", "buy", D(1000100), D("0.0002"), "after a snapshot"),)

    e = Engine(("BTCTRY",), ProfitParams(cooldown_ns=0), slots=(Slot("r", Reactive()),), rules=RULES.get)
    e.on_portfolio(snapshot())
    intent = e.on_book(book(), T0)
    assert isinstance(intent, OrderIntent)
    assert (intent.strategy, intent.reason, intent.quantity) == ("r", "after a snapshot", D("0.0002"))
    e.forget(intent)  # not published: the symbol is free again, and the queue was drained by the first book
    assert isinstance(e.on_book(book(seq=2), T0), Hold)
