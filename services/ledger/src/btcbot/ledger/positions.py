"""Fills to positions, balances and PnL at weighted average cost: pure accounting, no I/O.

The ledger's state must be a function of the SET of fills, whatever order or how many times they were
delivered. So the model deduplicates fills by (symbol, exchange trade id, exchange order id) and folds them
in one canonical order: exchange time, trade id, side (buy first), exchange order id. A trade id alone does
not identify a fill: when two of our orders match each other the exchange reports one trade id for both
sides, each under its own order id, and both moved money. A position keeps its total cost basis (not only
the average) so that a full close leaves exactly zero cost and no rounding residue.

Conventions:
- Fees and taxes are costs whatever their sign on the wire (BTCTurk reports them negative).
- The tax is charged in the fee asset (BTCTurk: a tax on the fee).
- A fee in the quote asset is part of the cost basis of a buy and reduces the proceeds of a sell, so
  realized PnL is net of every fee of the closed quantity.
- A fee in the base asset reduces the quantity received on a buy (or adds to what a sell delivers) and is
  valued at the fill price. A fee in any other asset is debited from that balance and valued at the mark
  of that asset in the quote at fill time (`Fill.fee_rate`, recorded with the fill so a replay uses the same
  rate); it then counts like a quote fee in cost and PnL. Without a mark it has no quote value (and the
  store flags it), rather than a guessed one.
- Daily PnL days run from midnight at a configurable UTC offset (`day_of`).
- A sell of more than the position holds is an integrity error (`Oversell`), never capped.
- Opening holdings (what the account held before the bot traded, `opening`) are part of the position and
  sellable. A sell draws on the bot's own quantity first, then on the opening holdings. Opening holdings
  carry no bot PnL: they have no cost basis, the part of a sell drawn from them is valued at that sell's own
  price (it realizes nothing), and only the sell's fees count against the bot. So the state is a function of
  the set of fills and the opening quantity per symbol.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Literal

from btcbot.contracts.messages import OrderFilled

Side = Literal["buy", "sell"]

ZERO = Decimal(0)
KNOWN_QUOTES: tuple[str, ...] = ("USDT", "USDC", "TRY", "EUR", "USD", "BTC", "ETH")

# (exchange time, trade id rank, trade id, side rank, exchange order id rank, exchange order id)
SortKey = tuple[int, int, str, int, int, str]
_SIDE_RANK = {"buy": 0, "sell": 1}


class Oversell(Exception):  # noqa: N818  (names the integrity error itself, as store.py reports it)
    """A sell (with any base-asset fee) larger than the position it sells from."""

    def __init__(self, symbol: str, trade_id: str, held: Decimal, delivered: Decimal) -> None:
        super().__init__(f"{symbol} trade {trade_id}: sells {delivered} but the position holds {held}")
        self.symbol = symbol
        self.trade_id = trade_id
        self.held = held
        self.delivered = delivered


def split_symbol(symbol: str, quotes: Iterable[str] = KNOWN_QUOTES) -> tuple[str, str]:
    """Base and quote asset of an exchange pair such as BTCTRY; raises ValueError if no quote matches."""
    for quote in sorted(quotes, key=len, reverse=True):
        if symbol.endswith(quote) and len(symbol) > len(quote):
            return symbol[: -len(quote)], quote
    raise ValueError(f"cannot split {symbol!r} into base and quote asset (known quotes: {tuple(quotes)})")


def _id_rank(value: str) -> tuple[int, str]:
    if value.isdigit():
        digits = value.lstrip("0") or "0"
        return (len(digits), digits)
    # Non-numeric ids sort after numeric ones, then lexically.
    return (1 << 30, value)


def trade_sort_key(ts_ns: int, trade_id: str, side: str = "buy", exchange_order_id: str = "") -> SortKey:
    """Canonical order of fills: exchange time, trade id, side, exchange order id (ids numerically if numbers).

    The buy side of a self-match comes before its sell side, so matching our own order never looks like
    selling what the position does not hold yet.
    """
    return (ts_ns, *_id_rank(trade_id), _SIDE_RANK.get(side, 2), *_id_rank(exchange_order_id))


@dataclass(frozen=True)
class Fill:
    """One exchange trade of ours, as the accounting sees it."""

    symbol: str
    trade_id: str
    side: Side
    price: Decimal
    quantity: Decimal
    fee: Decimal
    fee_asset: str
    tax: Decimal
    ts_ns: int
    base_asset: str
    quote_asset: str
    # Quote units per unit of a third fee asset, taken from the mark at fill time; None when unknown.
    fee_rate: Decimal | None = None
    exchange_order_id: str = ""

    @property
    def key(self) -> tuple[str, str, str]:
        """Identity of the fill: one order's side of an exchange trade (a self-match has two under one trade id)."""
        return (self.symbol, self.trade_id, self.exchange_order_id)

    @property
    def sort_key(self) -> SortKey:
        """Position of this fill in the canonical order."""
        return trade_sort_key(self.ts_ns, self.trade_id, self.side, self.exchange_order_id)

    @property
    def notional(self) -> Decimal:
        """Price times quantity, in the quote asset."""
        return self.price * self.quantity

    @property
    def charge(self) -> Decimal:
        """Fee plus tax as a positive amount of the fee asset."""
        return abs(self.fee) + abs(self.tax)

    @property
    def base_charge(self) -> Decimal:
        """The part of the charge paid in the base asset."""
        return self.charge if self.fee_asset == self.base_asset else ZERO

    @property
    def quote_charge(self) -> Decimal:
        """The part of the charge paid in the quote asset."""
        return self.charge if self.fee_asset == self.quote_asset else ZERO

    @property
    def third_charge(self) -> Decimal:
        """The part of the charge paid in an asset that is neither base nor quote."""
        return self.charge if self.fee_asset not in (self.base_asset, self.quote_asset) else ZERO

    @property
    def third_charge_value(self) -> Decimal:
        """The third-asset charge in the quote asset at the recorded rate (zero without a rate)."""
        if not self.third_charge or self.fee_rate is None:
            return ZERO
        return self.third_charge * self.fee_rate

    @property
    def cost_charge(self) -> Decimal:
        """Charges that add to a buy's cost or reduce a sell's proceeds, in the quote asset."""
        return self.quote_charge + self.third_charge_value

    @property
    def fee_value(self) -> Decimal:
        """The whole charge valued in the quote asset (a third asset without a rate counts zero)."""
        return self.cost_charge + self.base_charge * self.price

    @property
    def rate_used(self) -> Decimal | None:
        """Quote units per unit of the fee asset this fill's fee was valued at; None if it could not be."""
        if self.fee_asset == self.quote_asset:
            return Decimal(1)
        if self.fee_asset == self.base_asset:
            return self.price
        return self.fee_rate


def fill_from_event(
    event: OrderFilled, quotes: Iterable[str] = KNOWN_QUOTES, *, fee_rate: Decimal | None = None
) -> Fill:
    """The accounting view of an OrderFilled; the assets come from the symbol when the event omits them.

    The exchange time orders fills; an event without one falls back to its own creation time. `fee_rate`
    values a fee paid in a third asset (see `fee_rate_from_marks`).
    """
    base, quote = event.base_asset, event.quote_asset
    if not base or not quote:
        base, quote = split_symbol(event.symbol, quotes)
    return Fill(
        symbol=event.symbol,
        trade_id=event.trade_id,
        side=event.side,
        price=event.price,
        quantity=event.quantity,
        fee=event.fee,
        fee_asset=(event.fee_asset or quote).upper(),
        tax=event.tax,
        ts_ns=event.exchange_ts_ns or event.ts_ns,
        base_asset=base,
        quote_asset=quote,
        fee_rate=fee_rate,
        exchange_order_id=event.exchange_order_id,
    )


def needs_fee_rate(fill: Fill) -> bool:
    """True when the fee is paid in an asset that is neither the base nor the quote of the fill."""
    return fill.fee_asset not in (fill.base_asset, fill.quote_asset) and fill.charge > 0


def fee_rate_from_marks(fee_asset: str, quote_asset: str, mids: Mapping[str, Decimal]) -> tuple[Decimal, str] | None:
    """Quote units per unit of `fee_asset` from book mids, and the symbol used; None without a usable mark.

    The direct pair (fee asset priced in the quote) is preferred; the inverse pair is used when only it
    trades.
    """
    direct = mids.get(fee_asset + quote_asset)
    if direct is not None and direct > 0:
        return direct, fee_asset + quote_asset
    inverse = mids.get(quote_asset + fee_asset)
    if inverse is not None and inverse > 0:
        return Decimal(1) / inverse, quote_asset + fee_asset
    return None


def check_fill(fill: Fill) -> None:
    """Raise ValueError when a fill can never be booked (non-positive price or quantity, bad side)."""
    if fill.side not in ("buy", "sell"):
        raise ValueError(f"fill {fill.trade_id}: unknown side {fill.side!r}")
    if not (fill.price.is_finite() and fill.quantity.is_finite() and fill.charge.is_finite()):
        raise ValueError(f"fill {fill.trade_id}: price, quantity, fee and tax must be finite")
    if fill.price <= 0 or fill.quantity <= 0:
        raise ValueError(f"fill {fill.trade_id}: price and quantity must be positive")
    if not fill.trade_id:
        raise ValueError("fill without an exchange trade id")


def day_of(ts_ns: int, offset_minutes: int = 0) -> date:
    """Trading day of a nanosecond timestamp: days run from midnight at UTC+`offset_minutes`."""
    return datetime.fromtimestamp(ts_ns // 1_000_000_000 + offset_minutes * 60, tz=UTC).date()


def parse_utc_offset(text: str) -> int:
    """Minutes east of UTC from "+03:00", "-05:30", "+3" or "0"; raises ValueError outside -14:00..+14:00."""
    raw = text.strip()
    sign = -1 if raw.startswith("-") else 1
    body = raw.lstrip("+-")
    hours, _, minutes = body.partition(":")
    if not hours.isdigit() or (minutes and not minutes.isdigit()):
        raise ValueError(f"expected a UTC offset such as +03:00, got {text!r}")
    total = sign * (int(hours) * 60 + int(minutes or 0))
    if abs(total) > 14 * 60 or int(minutes or 0) >= 60:
        raise ValueError(f"UTC offset out of range: {text!r}")
    return total


@dataclass(frozen=True)
class PositionState:
    """A position in one symbol: quantity held at a total cost basis, and what it has realized so far."""

    symbol: str
    quantity: Decimal = ZERO
    cost: Decimal = ZERO
    realized_pnl: Decimal = ZERO
    fees: Decimal = ZERO
    fills: int = 0
    last_key: SortKey | None = None
    # The part of `quantity` that is opening holdings still held (no cost basis, no bot PnL).
    opening: Decimal = ZERO

    @property
    def own(self) -> Decimal:
        """The bot's own quantity: what it bought and has not sold yet (the part `cost` is the basis of)."""
        return self.quantity - self.opening

    @property
    def avg_cost(self) -> Decimal:
        """Weighted average cost per unit of the bot's own quantity (zero when it holds none)."""
        return self.cost / self.own if self.own else ZERO

    def follows(self, fill: Fill) -> bool:
        """True when `fill` comes after every fill folded so far, so it can be applied incrementally."""
        return self.last_key is None or fill.sort_key > self.last_key


@dataclass(frozen=True)
class FillOutcome:
    """The effect of one fill: the new position and what the fill realized and paid."""

    fill: Fill
    position: PositionState
    realized: Decimal
    fee_value: Decimal


def apply_fill(position: PositionState, fill: Fill) -> FillOutcome:
    """Fold one fill into a position; raises Oversell when a sell exceeds the quantity held."""
    if fill.symbol != position.symbol:
        raise ValueError(f"fill of {fill.symbol} applied to position {position.symbol}")
    check_fill(fill)
    fee_value = fill.fee_value
    fees = position.fees + fee_value
    count = position.fills + 1
    last_key = fill.sort_key if position.last_key is None else max(position.last_key, fill.sort_key)
    if fill.side == "buy":
        bought = replace(
            position,
            quantity=position.quantity + fill.quantity - fill.base_charge,
            cost=position.cost + fill.notional + fill.cost_charge,
            fees=fees,
            fills=count,
            last_key=last_key,
        )
        return FillOutcome(fill, bought, ZERO, fee_value)
    delivered = fill.quantity + fill.base_charge
    if delivered > position.quantity:
        raise Oversell(fill.symbol, fill.trade_id, position.quantity, delivered)
    own = position.own
    from_own = min(delivered, own)
    from_opening = delivered - from_own
    # A full close of the own quantity takes the whole cost basis, so it carries no rounding residue.
    released = position.cost if from_own == own else position.cost * from_own / own
    # The part drawn from opening holdings is worth exactly what it sold for: it realizes no bot PnL.
    realized = fill.notional - fill.cost_charge - released - from_opening * fill.price
    sold = replace(
        position,
        quantity=position.quantity - delivered,
        opening=position.opening - from_opening,
        cost=position.cost - released,
        realized_pnl=position.realized_pnl + realized,
        fees=fees,
        fills=count,
        last_key=last_key,
    )
    return FillOutcome(fill, sold, realized, fee_value)


def canonical(fills: Iterable[Fill]) -> list[Fill]:
    """The set of fills (first copy of each fill wins) in canonical order."""
    unique: dict[tuple[str, str, str], Fill] = {}
    for fill in fills:
        unique.setdefault(fill.key, fill)
    return sorted(unique.values(), key=lambda f: (f.symbol, f.sort_key))


@dataclass(frozen=True)
class Replay:
    """Positions rebuilt from a set of fills, with the outcome of every fill in canonical order."""

    positions: dict[str, PositionState]
    outcomes: tuple[FillOutcome, ...]

    def daily(self, offset_minutes: int = 0) -> dict[tuple[date, str], tuple[Decimal, Decimal]]:
        """Realized PnL and fees per (trading day, symbol)."""
        return daily_pnl(self.outcomes, offset_minutes)


def opening_position(symbol: str, opening: Decimal = ZERO) -> PositionState:
    """A position before any fill: the opening holdings only."""
    return PositionState(symbol, quantity=opening, opening=opening)


def replay(fills: Iterable[Fill], opening: Mapping[str, Decimal] | None = None) -> Replay:
    """Rebuild every position from a set of fills and the opening holdings per symbol (duplicates and order
    of fills do not matter); may raise Oversell."""
    held = opening or {}
    positions: dict[str, PositionState] = {s: opening_position(s, q) for s, q in held.items() if q}
    outcomes: list[FillOutcome] = []
    for fill in canonical(fills):
        outcome = apply_fill(positions.get(fill.symbol, opening_position(fill.symbol)), fill)
        positions[fill.symbol] = outcome.position
        outcomes.append(outcome)
    return Replay(positions, tuple(outcomes))


def opening_shortfall(fills: Iterable[Fill], symbol: str, opening: Decimal = ZERO) -> Decimal:
    """The least extra opening holding of `symbol` that lets its set of fills replay without an oversell.

    Used when an operator resumes a halted symbol and the exchange confirms the balances: the shortfall is what
    the account held that the ledger did not know about.
    """
    extra = ZERO
    position = opening_position(symbol, opening)
    for fill in canonical(f for f in fills if f.symbol == symbol):
        try:
            position = apply_fill(position, fill).position
        except Oversell as exc:
            missing = exc.delivered - exc.held
            extra += missing
            position = apply_fill(
                replace(position, quantity=position.quantity + missing, opening=position.opening + missing), fill
            ).position
    return extra


def daily_pnl(
    outcomes: Iterable[FillOutcome], offset_minutes: int = 0
) -> dict[tuple[date, str], tuple[Decimal, Decimal]]:
    """Sum realized PnL and fees per (trading day, symbol); days start at midnight UTC+`offset_minutes`."""
    totals: dict[tuple[date, str], tuple[Decimal, Decimal]] = {}
    for outcome in outcomes:
        key = (day_of(outcome.fill.ts_ns, offset_minutes), outcome.fill.symbol)
        realized, fees = totals.get(key, (ZERO, ZERO))
        totals[key] = (realized + outcome.realized, fees + outcome.fee_value)
    return totals


def balance_deltas(fill: Fill) -> dict[str, Decimal]:
    """How a fill moves balances: base and quote by quantity and notional, the fee asset by the charge."""
    sign = Decimal(1) if fill.side == "buy" else Decimal(-1)
    deltas = {fill.base_asset: sign * fill.quantity, fill.quote_asset: -sign * fill.notional}
    deltas[fill.fee_asset] = deltas.get(fill.fee_asset, ZERO) - fill.charge
    return deltas


def parse_amounts(text: str) -> dict[str, Decimal]:
    """Parse "TRY=1000000,BTC=1" into amounts per asset; raises ValueError on a malformed entry."""
    amounts: dict[str, Decimal] = {}
    for raw in text.split(","):
        entry = raw.strip()
        if not entry:
            continue
        asset, sep, amount = entry.partition("=")
        asset = asset.strip().upper()
        if not sep or not asset.isalnum():
            raise ValueError(f"expected ASSET=AMOUNT, got {entry!r}")
        try:
            value = Decimal(amount.strip())
        except ArithmeticError as exc:
            raise ValueError(f"not a decimal amount for {asset}: {amount!r}") from exc
        if not value.is_finite() or value < 0:
            raise ValueError(f"amount for {asset} must be a finite non-negative number, got {amount!r}")
        amounts[asset] = value
    return amounts


@dataclass(frozen=True)
class Valuation:
    """Balances and positions valued in the quote asset at the latest marks."""

    equity: Decimal
    unrealized: dict[str, Decimal]
    marks: dict[str, Decimal]
    exposure: Decimal
    complete: bool
    unpriced: tuple[str, ...] = field(default=())
    # Symbols holding a quantity without a mark (valued at their average cost, or not at all).
    missing_marks: tuple[str, ...] = field(default=())

    @property
    def unrealized_total(self) -> Decimal:
        """Unrealized PnL over all positions."""
        return sum(self.unrealized.values(), ZERO)


def value(
    positions: Mapping[str, PositionState],
    balances: Mapping[str, Decimal],
    marks: Mapping[str, Decimal],
    quote_asset: str,
) -> Valuation:
    """Value balances and positions in `quote_asset`; a symbol without a mark is valued at its average cost.

    An asset with a non-zero balance and neither a mark nor a position cannot be valued: it is left out of
    equity and the valuation is marked incomplete (so peak and drawdown are not updated from it).
    """
    prices: dict[str, Decimal] = {}
    for symbol, position in positions.items():
        mark = marks.get(symbol)
        if mark is None and position.own:
            mark = position.avg_cost
        if mark is not None:
            prices[symbol] = mark
    for symbol, mark in marks.items():
        prices.setdefault(symbol, mark)

    # Only the bot's own quantity has a cost basis and PnL; exposure is what the bot's trading put at risk.
    unrealized = {
        symbol: prices[symbol] * p.own - p.cost if symbol in prices else ZERO for symbol, p in positions.items()
    }
    exposure = sum((abs(p.own) * prices.get(s, ZERO) for s, p in positions.items()), ZERO)

    equity = ZERO
    unpriced: list[str] = []
    for asset, total in sorted(balances.items()):
        if asset == quote_asset:
            equity += total
            continue
        price = prices.get(asset + quote_asset)
        if price is None:
            if total:
                unpriced.append(asset)
            continue
        equity += total * price
    return Valuation(
        equity=equity,
        unrealized=unrealized,
        marks={s: prices[s] for s in sorted(prices)},
        exposure=exposure,
        complete=not unpriced,
        unpriced=tuple(unpriced),
        missing_marks=tuple(sorted(s for s, p in positions.items() if p.quantity and marks.get(s) is None)),
    )


@dataclass(frozen=True)
class BotPnl:
    """The bot's own trading result in the quote asset, its peak, the drawdown from it and today's figures."""

    pnl: Decimal
    peak: Decimal
    drawdown: Decimal
    day_pnl: Decimal
    day_fees: Decimal


def bot_pnl(
    valuation: Valuation,
    positions: Mapping[str, PositionState],
    *,
    previous_peak: Decimal | None,
    day_start_pnl: Decimal | None,
    day_fees: Decimal,
) -> BotPnl:
    """Realized plus unrealized PnL of the bot's own trading (opening holdings excluded), against the running
    peak (which starts at zero: the bot starts with no PnL) and the PnL when today began (zero if none)."""
    pnl = sum((p.realized_pnl for p in positions.values()), ZERO) + valuation.unrealized_total
    peak = max(previous_peak if previous_peak is not None else ZERO, pnl)
    start = day_start_pnl if day_start_pnl is not None else ZERO
    return BotPnl(pnl=pnl, peak=peak, drawdown=peak - pnl, day_pnl=pnl - start, day_fees=day_fees)


def day_start_ns(ts_ns: int, offset_minutes: int = 0) -> int:
    """The nanosecond timestamp at which the trading day of `ts_ns` began (midnight at UTC+offset)."""
    day = day_of(ts_ns, offset_minutes)
    midnight = datetime(day.year, day.month, day.day, tzinfo=UTC)
    return (int(midnight.timestamp()) - offset_minutes * 60) * 1_000_000_000


def watermark(floor: int, applied: Iterable[int]) -> tuple[int, tuple[int, ...]]:
    """The ledger's low watermark over a stream: every sequence up to it is reflected.

    `floor` is a sequence known to be done (the durable's ack floor: the ledger acks only after commit, so
    every message up to it is committed or deliberately dead-lettered); `applied` are stream sequences found
    committed (`applied_messages`). The watermark extends the floor through consecutive applied sequences;
    the applied ones above the first gap are returned too (already reflected, though beyond the watermark).
    """
    mark = floor
    above: list[int] = []
    for seq in sorted(set(applied)):
        if seq <= mark:
            continue
        if seq == mark + 1 and not above:
            mark = seq
        else:
            above.append(seq)
    return mark, tuple(above)


def drawdown(peak: Decimal, equity: Decimal) -> Decimal:
    """Fractional fall of equity from its peak, in [0, 1] (0 while at or above the peak)."""
    if peak <= 0 or equity >= peak:
        return ZERO
    return min(Decimal(1), (peak - equity) / peak)
