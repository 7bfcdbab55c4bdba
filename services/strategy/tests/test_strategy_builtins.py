"""The original bot's strategies: their rules as pure functions and on books, with Hypothesis for the invariants."""

from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from btcbot.btcturk.rulebook import SymbolRules
from btcbot.contracts import ids
from btcbot.contracts.messages import BookSnapshot, Level, OrderFilled
from btcbot.strategy.api import BookContext, Holding
from btcbot.strategy.strategies.mean_reversion import MeanReversion, MeanReversionParams, RollingMean, buy_limit
from btcbot.strategy.strategies.momentum import Momentum, MomentumParams, allocate
from btcbot.strategy.strategies.profit_v1 import ProfitV1, ProfitV1Params, entry_quantity, exit_quantity
from btcbot.strategy.strategies.rebalance import CASH, Rebalance, RebalanceParams, parse_weights, plan

D = Decimal
S = 1_000_000_000
T0 = 1_700_000_000 * S
BTC = SymbolRules("BTCTRY", True, price_scale=0, quantity_scale=8, tick_size=D(1), min_notional=D(10))
USDT = SymbolRules("USDTTRY", True, price_scale=2, quantity_scale=2, tick_size=D("0.01"), min_notional=D(10))

prices = st.decimals(min_value=D("0.01"), max_value=D(5_000_000), places=2, allow_nan=False, allow_infinity=False)
money = st.decimals(min_value=D(0), max_value=D(1_000_000), places=2, allow_nan=False, allow_infinity=False)
rule_sets = st.sampled_from([BTC, USDT])


def book(bid, ask, *, symbol="BTCTRY", at=T0, seq=1):
    return BookSnapshot(
        id=ids.book_id(symbol, at, seq), ts_ns=at, symbol=symbol, sequence=seq,
        bids=(Level(D(bid), D(1)),), asks=(Level(D(ask), D(1)),), exchange_ts_ns=at, received_ts_ns=at,
    )  # fmt: skip


def ctx(bid, ask, *, holding=None, cash=None, rules=BTC, at=T0, seq=1, holdings=None, marks=None):
    holding = holding or Holding()
    cash = D(1_000_000) if cash is None else cash
    b = book(bid, ask, symbol=rules.symbol, at=at, seq=seq)
    return BookContext(b, at, rules, holding, cash, holdings or {rules.symbol: holding}, marks or {})


# -- profit_v1 -----------------------------------------------------------------------------------------------


@given(cash=money, notional=money, ask=prices, rules=rule_sets)
def test_profit_v1_entry_never_exceeds_free_quote_or_the_order_notional(cash, notional, ask, rules):
    quantity = entry_quantity(cash, notional, ask, rules)
    assert quantity * ask <= min(cash, notional)
    assert quantity == rules.round_quantity(quantity)
    assert quantity == 0 or quantity * ask >= rules.min_notional


@given(
    quantity=st.decimals(min_value=D("0.0001"), max_value=D(1000), places=8),
    bid=prices,
    rules=rule_sets,
)
def test_profit_v1_sells_exactly_a_quarter_rounded_down_to_the_symbol_s_scale(quantity, bid, rules):
    held = Holding(quantity, D(1))
    sold = exit_quantity(held, D("0.25"), bid, D("1E+12"), rules)
    quarter = rules.round_quantity(quantity * D("0.25"))
    if quarter * bid >= rules.min_notional:
        assert sold == quarter
    else:  # a quarter could never trade: the whole position, or nothing when even that is too small
        assert sold in (rules.round_quantity(quantity), D(0))
    assert sold <= quantity


def test_profit_v1_takes_profit_at_30_bps_with_a_quarter_and_enters_with_at_most_100_try():
    s = ProfitV1(ProfitV1Params())
    [entry] = s.on_book(ctx("1000000", "1000100", cash=D(60)))
    assert (entry.side, entry.price) == ("buy", D("1000100"))
    assert entry.quantity == D("0.00005999")  # min(free 60, 100) / ask, 8 decimals
    [entry] = s.on_book(ctx("1000000", "1000100"))
    assert entry.quantity == D("0.00009999")
    assert s.on_book(ctx("1000000", "1011000")) == ()  # spread 110 bps > 1 %
    held = Holding(D("0.001"), D(1_000_000))
    assert s.on_book(ctx("1002999", "1003100", holding=held)) == ()  # 29.99 bps
    [sell] = s.on_book(ctx("1003000", "1003100", holding=held))
    assert (sell.side, sell.price, sell.quantity) == ("sell", D("1003000"), D("0.00025"))


def test_usdttry_entry_uses_the_pair_s_two_decimals():
    s = ProfitV1(ProfitV1Params())
    [entry] = s.on_book(ctx("34.50", "34.51", rules=USDT))
    assert entry.quantity == D("2.89")  # 100 / 34.51 = 2.8977..., at the pair's 2 decimals


# -- mean reversion ------------------------------------------------------------------------------------------


def test_the_anchor_is_a_rolling_mean_over_the_window():
    mean = RollingMean(10 * S)
    for i, v in enumerate((100, 110, 120)):
        mean.add(T0 + i * S, D(v))
    assert mean.mean == D(110)
    mean.add(T0 + 12 * S, D(130))  # the first two are older than 10 s now
    assert mean.mean == D(125)


@settings(max_examples=60, deadline=None)
@given(mids=st.lists(st.integers(min_value=9_000, max_value=11_000), min_size=1, max_size=60))
def test_mean_reversion_never_buys_above_the_anchor_minus_its_threshold(mids):
    p = MeanReversionParams(min_samples=5, window=30.0, bootstrap=False)
    s = MeanReversion(p)
    for i, mid in enumerate(mids):
        at = T0 + i * S
        c = ctx(str(mid - 1), str(mid + 1), at=at, seq=i + 1)
        proposals = s.on_book(c)
        anchor = s.anchor("BTCTRY")
        for proposal in proposals:
            assert proposal.side == "buy"  # it holds nothing, so it never sells
            assert anchor is not None
            assert proposal.price <= buy_limit(anchor, p.threshold_bps)


def test_mean_reversion_bootstraps_when_flat_then_buys_low_and_sells_high():
    s = MeanReversion(MeanReversionParams(min_samples=3, window=60.0))
    [boot] = s.on_book(ctx("9999", "10001"))
    assert boot.side == "buy"
    assert boot.reason.startswith("bootstrap")
    # Denied or expired, the bootstrap is proposed again while flat; once a buy of ours filled, never again.
    [again] = s.on_book(ctx("9999", "10001", at=T0 + S // 2))
    assert again.reason.startswith("bootstrap")
    s.on_fill(
        OrderFilled(
            id="f",
            ts_ns=T0,
            client_order_id="c",
            exchange_order_id="1",
            strategy="mean_reversion",
            symbol="BTCTRY",
            side="buy",
            trade_id="t",
            price=D(10001),
            quantity=D("0.01"),
            fee=D(0),
            fee_asset="TRY",
        ),
        T0,
    )
    for i in range(1, 3):
        s.on_book(ctx("9999", "10001", at=T0 + i * S, seq=i + 1, holding=Holding(D("0.01"), D(10001))))
    # The anchor is ~10000 (the book's own mid counts in it); an ask ~70 bps under it buys, a bid over it sells.
    assert s.on_book(ctx("9949", "9950", at=T0 + 3 * S, seq=4, holding=Holding())) == ()  # ~40 bps: not enough
    [buy] = s.on_book(ctx("9919", "9920", at=T0 + 3 * S, seq=5, holding=Holding()))
    assert buy.side == "buy"
    held = Holding(D("0.01"), D(9940))
    [sell] = s.on_book(ctx("10080", "10081", at=T0 + 4 * S, seq=5, holding=held))
    assert (sell.side, sell.quantity) == ("sell", D("0.00992063"))  # 100 TRY worth at most, rounded down


# -- momentum ------------------------------------------------------------------------------------------------


def test_allocation_is_in_proportion_to_score_and_drops_symbols_under_the_minimum():
    scores = {"A": D("0.03"), "B": D("0.01"), "C": D("0.001"), "D": D("-0.02")}
    minimums = {"A": D(30), "B": D(30), "C": D(30)}
    assert allocate(scores, D(1000), minimums, top_n=3) == {"A": D(750), "B": D(250)}  # C got ~24: dropped
    assert allocate(scores, D(1000), minimums, top_n=1) == {"A": D(1000)}
    assert allocate(scores, D(20), minimums, top_n=3) == {}
    assert allocate({"D": D("-0.1")}, D(1000), {}, top_n=3) == {}


@given(
    scores=st.dictionaries(
        st.sampled_from(["A", "B", "C", "D", "E"]), st.decimals(min_value=D("-0.5"), max_value=D("0.5"), places=4)
    ),
    budget=money,
    minimum=st.decimals(min_value=D(0), max_value=D(500), places=2),
    top_n=st.integers(min_value=1, max_value=5),
)
def test_allocation_spends_the_budget_exactly_and_every_share_clears_its_minimum(scores, budget, minimum, top_n):
    shares = allocate(scores, budget, dict.fromkeys(scores, minimum), top_n)
    assert len(shares) <= top_n
    assert all(scores[s] > 0 and share >= minimum for s, share in shares.items())
    if shares:
        assert abs(sum(shares.values()) - budget) < D("1E-12")


def test_momentum_buys_the_rising_symbol_once_it_has_enough_history():
    s = Momentum(MomentumParams(min_history=60.0, sample=10.0, max_order_notional=D(10_000)))
    assert s.on_book(ctx("999", "1001")) == ()  # no history yet
    [buy] = s.on_book(ctx("1049", "1051", at=T0 + 61 * S, cash=D(500)))
    assert buy.side == "buy"
    assert buy.price == D(1051)
    assert buy.quantity * buy.price <= D(500)


# -- rebalance -----------------------------------------------------------------------------------------------


def test_weights_parse_from_json_or_csv_and_must_sum_to_one():
    assert parse_weights('{"BTCTRY": 0.6, "CASH": 0.4}') == {"BTCTRY": D("0.6"), CASH: D("0.4")}
    assert parse_weights("btctry:0.5, ethtry:0.3, cash:0.2") == {"BTCTRY": D("0.5"), "ETHTRY": D("0.3"), CASH: D("0.2")}
    for bad in ("BTCTRY:0.5", "BTCTRY=1", '{"BTCTRY": -1, "CASH": 2}', "[1]"):
        try:
            parse_weights(bad)
        except ValueError:
            continue
        raise AssertionError(f"accepted {bad}")


weights_st = st.lists(st.integers(min_value=0, max_value=10), min_size=4, max_size=4).filter(lambda w: sum(w) > 0)


@given(
    raw=weights_st,
    values=st.lists(money, min_size=3, max_size=3),
    cash=money,
    cap=st.decimals(min_value=D("0.01"), max_value=D(1), places=2),
    minimum=st.decimals(min_value=D(0), max_value=D(100), places=2),
)
def test_a_rebalance_round_never_exceeds_its_turnover_cap_or_its_cash(raw, values, cash, cap, minimum):
    names = ["A", "B", "C", CASH]
    total_weight = sum(raw)
    weights = {n: D(w) / total_weight for n, w in zip(names, raw, strict=True)}
    held = dict(zip(names[:3], values, strict=True))
    trades = plan(held, cash, weights, cap, D("0.01"), dict.fromkeys(names, minimum))
    value = cash + sum(held.values())
    assert sum(t.notional for t in trades) <= cap * value
    spendable = cash
    for t in trades:
        assert t.notional >= minimum
        if t.side == "sell":
            assert t.notional <= held[t.symbol]
            spendable += t.notional
        else:
            assert t.notional <= spendable
            spendable -= t.notional


def test_rebalance_sends_each_planned_trade_on_its_symbol_s_book():
    p = RebalanceParams(weights={"BTCTRY": D("0.5"), CASH: D("0.5")}, turnover_cap=D("0.2"))
    s = Rebalance(p, ("BTCTRY",))
    marks = {"BTCTRY": D(1000)}
    [buy] = s.on_book(ctx("999", "1001", cash=D(10_000), marks=marks))
    # Half of 10000 is the target, the round may trade 20 %: 2000 worth at the ask.
    assert buy.side == "buy"
    assert buy.quantity == D("1.99800199")
    assert s.on_book(ctx("999", "1001", cash=D(8_000), marks=marks, at=T0 + S, seq=2)) == ()  # one round an hour


# -- the engine's fitting of any proposal --------------------------------------------------------------------


@given(
    side=st.sampled_from(["buy", "sell"]),
    price=prices,
    quantity=st.decimals(min_value=D("0.000001"), max_value=D(1000), places=6),
    held=st.decimals(min_value=D(0), max_value=D(10), places=8),
    cash=money,
    rules=rule_sets,
)
def test_a_fitted_proposal_is_on_the_pair_s_steps_and_within_holding_and_cash(side, price, quantity, held, cash, rules):
    from btcbot.strategy.api import Proposal
    from btcbot.strategy.sizing import fit

    c = ctx("1", "2", holding=Holding(held, D(1)), cash=cash, rules=rules)
    sized = fit(c, Proposal(rules.symbol, side, price, quantity, "any"))
    if isinstance(sized, str):
        return
    assert sized.quantity == rules.round_quantity(sized.quantity)
    assert sized.quantity > 0
    assert sized.price == rules.round_price(sized.price, up=False)
    assert sized.quantity * sized.price >= rules.min_notional
    if side == "sell":
        assert sized.quantity <= held
        assert sized.price >= price
    else:
        assert sized.quantity * sized.price <= cash
        assert sized.price <= price
