"""Price-time-priority matching engine with balances, fees and order history. Pure: time and ids come in."""

from __future__ import annotations

import copy
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import ROUND_DOWN, ROUND_UP, Decimal
from typing import Literal

from btcbot.sim.book import Method, Order, OrderBook, Side
from btcbot.sim.candles import CandleHistory
from btcbot.sim.config import Fees, SymbolRules
from btcbot.sim.stats import DayStats, RollingStats
from btcbot.sim.wallet import Wallet

FEE_QUANTUM = Decimal("0.00000001")
# Market orders never fill further than this from the best opposite price at submission.
MARKET_BAND = Decimal("0.05")
PUBLIC_TRADES_KEPT = 1000


@dataclass(frozen=True)
class OrderRequest:
    """A validated order to place; `quantity` is quote for a market buy, base otherwise."""

    account: str
    client_id: str
    pair: str
    side: Side
    method: Method
    quantity: Decimal
    price: Decimal | None = None


@dataclass(frozen=True)
class Rejected:
    """The engine refused a request; `code` is the BTCTurk message code."""

    code: str


@dataclass(frozen=True)
class FillParty:
    """One side of a fill; `order` is a snapshot of that order right after this fill."""

    order: Order
    fee: Decimal
    tax: Decimal

    @property
    def order_id(self) -> int:
        """Id of the order that traded."""
        return self.order.order_id

    @property
    def account(self) -> str:
        """Owner of the order."""
        return self.order.account

    @property
    def client_id(self) -> str:
        """The order's client id."""
        return self.order.client_id

    @property
    def side(self) -> Side:
        """The order's side."""
        return self.order.side


@dataclass(frozen=True)
class Fill:
    """One trade between a resting (maker) and an incoming (taker) order."""

    trade_id: int
    pair: str
    price: Decimal
    amount: Decimal
    ts_ms: int
    maker: FillParty
    taker: FillParty

    @property
    def taker_side(self) -> Side:
        """Aggressor side, which public trade feeds report."""
        return self.taker.side

    def user_trade(self, party: FillParty) -> UserTrade:
        """This fill as the owner of `party` sees it."""
        return UserTrade(
            trade_id=self.trade_id,
            order_id=party.order_id,
            client_id=party.client_id,
            pair=self.pair,
            side=party.side,
            price=self.price,
            amount=self.amount,
            fee=party.fee,
            tax=party.tax,
            ts_ms=self.ts_ms,
            is_maker=party is self.maker,
        )


@dataclass(frozen=True)
class UserTrade:
    """A fill from one account's point of view."""

    trade_id: int
    order_id: int
    client_id: str
    pair: str
    side: Side
    price: Decimal
    amount: Decimal
    fee: Decimal
    tax: Decimal
    ts_ms: int
    is_maker: bool


@dataclass(frozen=True)
class OrderEvent:
    """An order entered or left the book (WS 451 / 452); `order` is a snapshot."""

    kind: Literal["insert", "delete"]
    order: Order


Event = OrderEvent | Fill


class MatchingEngine:
    """Matches orders of all pairs and keeps every account's balances, orders and trades."""

    def __init__(
        self,
        symbols: Iterable[SymbolRules],
        fees: Fees,
        *,
        first_order_id: int,
        first_trade_id: int,
    ) -> None:
        self.symbols: dict[str, SymbolRules] = {s.name: s for s in symbols}
        self.books: dict[str, OrderBook] = {name: OrderBook(name) for name in self.symbols}
        self.default_fees = fees
        self._next_order_id = first_order_id
        self._next_trade_id = first_trade_id
        self._wallets: dict[str, Wallet] = {}
        self._fees: dict[str, Fees] = {}
        self._orders: dict[int, Order] = {}
        self._account_orders: dict[str, list[Order]] = {}
        self._account_trades: dict[str, list[UserTrade]] = {}
        self._public_trades: dict[str, deque[Fill]] = {name: deque(maxlen=PUBLIC_TRADES_KEPT) for name in self.symbols}
        self._stats: dict[str, RollingStats] = {name: RollingStats() for name in self.symbols}
        self._candles: dict[str, CandleHistory] = {name: CandleHistory() for name in self.symbols}
        self._events: list[Event] = []

    # -- accounts -----------------------------------------------------------------------------

    def open_account(
        self,
        account: str,
        balances: Mapping[str, Decimal],
        fees: Fees | None = None,
        *,
        keep_history: bool = True,
    ) -> None:
        """Create an account with starting balances, optionally its own fees.

        Without history (the simulated crowd) finished orders and fills are forgotten so memory stays flat.
        """
        if account in self._wallets:
            raise ValueError(f"account {account!r} exists")
        self._wallets[account] = Wallet(balances)
        if keep_history:
            self._account_orders[account] = []
            self._account_trades[account] = []
        if fees is not None:
            self._fees[account] = fees

    def has_account(self, account: str) -> bool:
        """Whether the account exists."""
        return account in self._wallets

    def wallet(self, account: str) -> Wallet:
        """Balances of an account."""
        return self._wallets[account]

    def fees_for(self, account: str) -> Fees:
        """The fee schedule that applies to an account."""
        return self._fees.get(account, self.default_fees)

    def orders_of(self, account: str) -> list[Order]:
        """Every order of an account, oldest first."""
        return list(self._account_orders.get(account, ()))

    def trades_of(self, account: str) -> list[UserTrade]:
        """Every fill of an account, oldest first."""
        return list(self._account_trades.get(account, ()))

    def order(self, order_id: int) -> Order | None:
        """An order by id, any account."""
        return self._orders.get(order_id)

    # -- market data --------------------------------------------------------------------------

    def public_trades(self, pair: str, limit: int) -> list[Fill]:
        """The latest trades of a pair, newest first."""
        trades = self._public_trades[pair]
        return [trades[-i] for i in range(1, min(limit, len(trades)) + 1)]

    def day_stats(self, pair: str, now_ms: int) -> DayStats | None:
        """24-hour statistics of a pair."""
        return self._stats[pair].day(now_ms)

    def record_past_trade(self, pair: str, price: Decimal, amount: Decimal, ts_ms: int) -> None:
        """Count a trade from before the start in the 24 h stats and candles (no book, no event, no account)."""
        self._stats[pair].add(price, amount, ts_ms)
        self._candles[pair].add(price, amount, ts_ms)

    def candles(self, pair: str) -> CandleHistory:
        """Minute and daily bars of a pair, from every trade it printed."""
        return self._candles[pair]

    def last_price(self, pair: str) -> Decimal | None:
        """Last trade price of a pair."""
        return self._stats[pair].last

    def reference_price(self, pair: str) -> Decimal | None:
        """Last trade price, else the mid of the book, else None."""
        last = self._stats[pair].last
        if last is not None:
            return last
        book = self.books[pair]
        bid, ask = book.best_bid(), book.best_ask()
        if bid is not None and ask is not None:
            return (bid + ask) / 2
        return bid if bid is not None else ask

    def drain_events(self) -> list[Event]:
        """Events since the last call, in the order they happened."""
        events, self._events = self._events, []
        return events

    # -- orders -------------------------------------------------------------------------------

    def _funds_needed(self, req: OrderRequest, rules: SymbolRules) -> tuple[str, Decimal]:
        if req.side == "sell":
            return rules.numerator, req.quantity
        headroom = 1 + self.fees_for(req.account).headroom
        notional = req.quantity if req.method == "market" else req.quantity * (req.price or Decimal(0))
        return rules.denominator, (notional * headroom).quantize(FEE_QUANTUM, ROUND_UP)

    def place(self, req: OrderRequest, now_ms: int) -> Order | Rejected:
        """Accept, match and (for limit orders) rest an order; reject on funds or liquidity."""
        rules = self.symbols[req.pair]
        book = self.books[req.pair]
        if req.method == "limit" and (req.price is None or req.price <= 0):
            raise ValueError("limit order needs a positive price")
        if req.method == "market" and book.opposite(req.side).best() is None:
            return Rejected("FAILED_MARKET_ORDER")
        wallet = self._wallets[req.account]
        asset, needed = self._funds_needed(req, rules)
        bal = wallet.balance(asset)
        if needed > bal.free:
            return Rejected("FAILED_ORDER_WITH_OPEN_ORDERS" if needed <= bal.total else "BALANCE_NOT_ENOUGH")
        order = Order(
            order_id=self._next_order_id,
            account=req.account,
            client_id=req.client_id,
            pair=req.pair,
            side=req.side,
            method=req.method,
            price=req.price if req.method == "limit" and req.price is not None else Decimal(0),
            quantity=req.quantity,
            left=req.quantity,
            created_ms=now_ms,
            updated_ms=now_ms,
            reserved=needed,
        )
        self._next_order_id += 1
        wallet.hold(asset, needed)
        self._orders[order.order_id] = order
        history = self._account_orders.get(req.account)
        if history is not None:
            history.append(order)
        self._events.append(OrderEvent("insert", copy.copy(order)))
        self._match(order, rules, book, now_ms)
        if order.method == "limit" and order.left > 0:
            book.side(order.side).add(order)
        else:
            self._finish(order, "Closed" if self._is_done(order, rules, book) else "Canceled", now_ms)
        return order

    def _is_done(self, order: Order, rules: SymbolRules, book: OrderBook) -> bool:
        if order.left == 0:
            return True
        # A market buy whose leftover quote cannot buy one base unit step at the band edge is complete.
        if order.method == "market" and order.side == "buy":
            step = Decimal(1).scaleb(-rules.numerator_scale)
            best = book.asks.best()
            return best is not None and order.left < step * best.price
        return False

    def _match(self, taker: Order, rules: SymbolRules, book: OrderBook, now_ms: int) -> None:
        opposite = book.opposite(taker.side)
        band: Decimal | None = None
        if taker.method == "market":
            first = opposite.best()
            assert first is not None
            factor = 1 + MARKET_BAND if taker.side == "buy" else 1 - MARKET_BAND
            band = first.price * factor
        base_step = Decimal(1).scaleb(-rules.numerator_scale)
        while taker.left > 0:
            level = opposite.best()
            if level is None:
                break
            price = level.price
            limit = band if band is not None else taker.price
            if (taker.side == "buy" and price > limit) or (taker.side == "sell" and price < limit):
                break
            maker = level.orders[0]
            if taker.method == "market" and taker.side == "buy":
                affordable = (taker.left / price).quantize(base_step, ROUND_DOWN)
                amount = min(maker.left, affordable)
                if amount <= 0:
                    break
            else:
                amount = min(maker.left, taker.left)
            self._execute(maker, taker, price, amount, rules, book, now_ms)

    def _fee(self, notional: Decimal, rate: Decimal, tax_ratio: Decimal) -> tuple[Decimal, Decimal]:
        fee = (notional * rate).quantize(FEE_QUANTUM, ROUND_DOWN)
        return fee, (fee * tax_ratio).quantize(FEE_QUANTUM, ROUND_DOWN)

    def _settle(self, order: Order, rules: SymbolRules, price: Decimal, amount: Decimal, fee: Decimal) -> None:
        wallet = self._wallets[order.account]
        notional = price * amount
        if order.side == "buy":
            cost = notional + fee
            wallet.spend_held(rules.denominator, cost)
            order.reserved -= cost
            wallet.credit(rules.numerator, amount)
        else:
            wallet.spend_held(rules.numerator, amount)
            order.reserved -= amount
            wallet.credit(rules.denominator, notional - fee)

    def _execute(
        self,
        maker: Order,
        taker: Order,
        price: Decimal,
        amount: Decimal,
        rules: SymbolRules,
        book: OrderBook,
        now_ms: int,
    ) -> None:
        notional = price * amount
        maker_fees, taker_fees = self.fees_for(maker.account), self.fees_for(taker.account)
        maker_fee, maker_tax = self._fee(notional, maker_fees.maker, maker_fees.tax_ratio)
        taker_fee, taker_tax = self._fee(notional, taker_fees.taker, taker_fees.tax_ratio)
        self._settle(maker, rules, price, amount, maker_fee + maker_tax)
        self._settle(taker, rules, price, amount, taker_fee + taker_tax)

        book.opposite(taker.side).reduce(maker, amount)
        maker.left -= amount
        taker.left -= notional if taker.method == "market" and taker.side == "buy" else amount
        for order in (maker, taker):
            order.filled_base += amount
            order.filled_quote += notional
            order.updated_ms = now_ms
            if order.first_fill_price is None:
                order.first_fill_price = price
            order.status = "Partial"

        fill = Fill(
            trade_id=self._next_trade_id,
            pair=rules.name,
            price=price,
            amount=amount,
            ts_ms=now_ms,
            maker=FillParty(copy.copy(maker), maker_fee, maker_tax),
            taker=FillParty(copy.copy(taker), taker_fee, taker_tax),
        )
        self._next_trade_id += 1
        self._events.append(fill)
        self._public_trades[rules.name].append(fill)
        self._stats[rules.name].add(price, amount, now_ms)
        self._candles[rules.name].add(price, amount, now_ms)
        for party in (fill.maker, fill.taker):
            trades = self._account_trades.get(party.account)
            if trades is not None:
                trades.append(fill.user_trade(party))
        if maker.left == 0:
            book.opposite(taker.side).remove(maker)
            self._finish(maker, "Closed", now_ms)

    def _finish(self, order: Order, status: Literal["Canceled", "Closed"], now_ms: int) -> None:
        """Close an order that left the book (or never entered it) and free what it still holds."""
        rules = self.symbols[order.pair]
        asset = rules.denominator if order.side == "buy" else rules.numerator
        if order.reserved:
            self._wallets[order.account].release(asset, order.reserved)
            order.reserved = Decimal(0)
        order.status = status
        order.updated_ms = now_ms
        if order.account not in self._account_orders:
            del self._orders[order.order_id]
        self._events.append(OrderEvent("delete", copy.copy(order)))

    def cancel(self, account: str, order_id: int, now_ms: int) -> Order | Rejected:
        """Cancel an open limit order of `account`."""
        order = self._orders.get(order_id)
        if order is None or order.account != account:
            return Rejected("NO_ORDER_MATCHES_YOUR_REQUEST")
        if not order.is_open or order.method != "limit":
            return Rejected("ORDER_COULD_NOT_BE_CANCELED")
        self.books[order.pair].side(order.side).remove(order)
        self._finish(order, "Canceled", now_ms)
        return order

    def open_orders(self, account: str, pair: str | None = None) -> list[Order]:
        """Resting orders of an account, oldest first."""
        return [o for o in self._account_orders.get(account, ()) if o.is_open and (pair is None or o.pair == pair)]
