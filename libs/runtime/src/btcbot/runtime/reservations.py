"""Exposure reserved atomically across risk replicas: one Lua script decides and records every approval.

An approval reserves its order in Redis: the script checks every limit that depends on what is in flight
(open orders, cooldowns, cash, exposure, no oversell) and records the reservation in the same atomic step, so
two replicas approving at once can never exceed a limit together. Order events release it: a rejection at
once, a cancel or a complete fill once the ledger's snapshot includes the order's fills (`snap_seq`, the
EXECUTION sequence up to which the snapshot is complete) -- until then the filled part still counts.

Amounts are integers (money in 1/100 of the quote asset, quantities in 1e-8), rounded against us by the
caller, because Lua numbers are doubles: every value stays below 2**53 so Lua and Python agree exactly.
`ReservationModel` is the same decision in plain Python (the script's specification and its in-memory twin);
tests run both on the same operations. Redis errors become DependencyUnavailable: nothing is approved.
With `ack` (REDIS_MIN_REPLICAS_ACK) an approval counts only once that many replicas hold it, so a promoted
replica never forgets exposure that an order was sent under (btcbot.runtime.redisconn).

Keys (under `<prefix>`, one Redis, no cluster): `:ids` set of held client order ids, `:o:<coid>` a hash per
order, `:f:<coid>` its fills by trade id, `:deny:<coid>` a remembered denial, `:last` last approval per
symbol and side, `:cool` minimum-total cooldowns per symbol, `:mt:<symbol>` minimum-total rejects, `:hwm` the
newest snapshot sequence a decision used.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from typing import Literal, Protocol

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from btcbot.runtime.errors import DependencyUnavailable
from btcbot.runtime.redisconn import NO_ACK, ReplicaAck, acked_write

QUOTE_SCALE = 2
QTY_SCALE = 8
MAX_UNITS = 2**53 - 1
# A denial is repeated to a redelivered intent for as long as a verdict is kept.
DENIAL_TTL_MS = 7 * 24 * 3600 * 1000

Outcome = Literal["approved", "denied", "stale"]
State = Literal["unknown", "open", "done"]

# Stable reason codes of the in-flight checks, in the order the script runs them.
MIN_TOTAL_COOLDOWN = "MIN_TOTAL_COOLDOWN"
OUTCOME_UNKNOWN = "OUTCOME_UNKNOWN"
OPEN_ORDERS_SYMBOL = "OPEN_ORDERS_SYMBOL"
OPEN_ORDERS_TOTAL = "OPEN_ORDERS_TOTAL"
COOLDOWN = "COOLDOWN"
OVERSELL = "OVERSELL"
CASH_RESERVE = "CASH_RESERVE"
SYMBOL_EXPOSURE = "SYMBOL_EXPOSURE"
EXPOSURE_BUDGET = "EXPOSURE_BUDGET"
CHECKS = (
    MIN_TOTAL_COOLDOWN,
    OUTCOME_UNKNOWN,
    OPEN_ORDERS_SYMBOL,
    OPEN_ORDERS_TOTAL,
    COOLDOWN,
    OVERSELL,
    CASH_RESERVE,
    SYMBOL_EXPOSURE,
    EXPOSURE_BUDGET,
)


def to_units(value: Decimal, scale: int, *, up: bool) -> int:
    """`value` in 10**-scale units, rounded up (what we spend) or down (what we have)."""
    return int(value.scaleb(scale).to_integral_value(rounding=ROUND_CEILING if up else ROUND_FLOOR))


def from_units(units: int, scale: int) -> Decimal:
    """Units back to a Decimal."""
    return Decimal(units).scaleb(-scale)


@dataclass(frozen=True)
class ReserveLimits:
    """The in-flight limits, in units and milliseconds."""

    max_open_per_symbol: int = 1
    max_open_total: int = 5
    cooldown_ms: int = 60_000
    cash_reserve: int = 300 * 10**QUOTE_SCALE
    symbol_cap: int = 5_000 * 10**QUOTE_SCALE
    budget: int = 10_000 * 10**QUOTE_SCALE
    deny_unknown_outcome: bool = True
    # Not read by the reserve script: minimum-total rejects that start a symbol's cooldown, and its length.
    min_total_rejects: int = 3
    min_total_window_ms: int = 3_600_000
    min_total_cooldown_ms: int = 14_400_000


@dataclass(frozen=True)
class ReserveRequest:
    """One approval to reserve, with what the caller's latest snapshot says (all amounts in units).

    `position`: what the account holds of the symbol (rounded down); `symbol_value`: the value of the bot's own
    position in it, `exposure`: of all of them (rounded up); `cash`: the quote balance (rounded down);
    `snap_seq`: the snapshot's EXECUTION watermark.
    """

    coid: str
    symbol: str
    side: Literal["buy", "sell"]
    quantity: int
    notional: int
    now_ms: int
    snap_seq: int
    position: int
    symbol_value: int
    exposure: int
    cash: int


@dataclass(frozen=True)
class ReserveAnswer:
    """`approved` (reserved), `denied` (reason, and the two numbers compared: have, need), or `stale`."""

    outcome: Outcome
    reason: str = ""
    have: int = 0
    need: int = 0


@dataclass
class Held:
    """One reservation: an approved order until the snapshot includes what it did."""

    symbol: str
    side: str
    quantity: int
    notional: int
    state: State = "unknown"
    fqty: int = 0
    fnotional: int = 0
    cfilled: int = 0
    done_seq: int = 0

    def in_flight(self) -> tuple[int, int]:
        """(sell quantity, buy notional) this order still holds beyond the snapshot."""
        if self.state != "done":
            return (self.quantity, 0) if self.side == "sell" else (0, self.notional)
        if self.side == "sell":
            return max(self.fqty, self.cfilled), 0
        # A cancel reported more filled than the fills seen so far: count the whole order until they arrive.
        return 0, (self.notional if self.cfilled > self.fqty else self.fnotional)

    def prunable(self, snap_seq: int) -> bool:
        """Finished, every fill seen, and the snapshot includes the event that finished it."""
        return self.state == "done" and self.done_seq <= snap_seq and self.fqty >= self.cfilled


@dataclass(frozen=True)
class InFlight:
    """Sums over the held orders that a decision reads."""

    open_symbol: int = 0
    open_total: int = 0
    unknown_symbol: int = 0
    sells_symbol: int = 0
    buys_symbol: int = 0
    buys_total: int = 0


def tally(held: dict[str, Held], symbol: str) -> InFlight:
    """What is in flight, overall and for `symbol`."""
    open_symbol = open_total = unknown_symbol = sells_symbol = buys_symbol = buys_total = 0
    for order in held.values():
        mine = order.symbol == symbol
        if order.state != "done":
            open_total += 1
            if mine:
                open_symbol += 1
                unknown_symbol += order.state == "unknown"
        sells, buys = order.in_flight()
        buys_total += buys
        if mine:
            sells_symbol += sells
            buys_symbol += buys
    return InFlight(open_symbol, open_total, unknown_symbol, sells_symbol, buys_symbol, buys_total)


def decide(
    req: ReserveRequest, flight: InFlight, limits: ReserveLimits, last_ms: int | None, cool_until: int
) -> ReserveAnswer:
    """The in-flight checks in order; the first failure decides (pure: the script does exactly this)."""
    denied = (
        min_total_cooldown(req.now_ms, cool_until)
        or outcome_unknown(flight.unknown_symbol, limits.deny_unknown_outcome)
        or open_orders(OPEN_ORDERS_SYMBOL, flight.open_symbol, limits.max_open_per_symbol)
        or open_orders(OPEN_ORDERS_TOTAL, flight.open_total, limits.max_open_total)
        or cooldown(req.now_ms, last_ms, limits.cooldown_ms)
    )
    if denied is None and req.side == "sell":
        denied = oversell(req.quantity, req.position, flight.sells_symbol)
    elif denied is None:
        denied = (
            cash_reserve(req.notional, req.cash, limits.cash_reserve, flight.buys_total)
            or cap(SYMBOL_EXPOSURE, req.notional, req.symbol_value + flight.buys_symbol, limits.symbol_cap)
            or cap(EXPOSURE_BUDGET, req.notional, req.exposure + flight.buys_total, limits.budget)
        )
    return denied or ReserveAnswer("approved")


def min_total_cooldown(now_ms: int, cool_until: int) -> ReserveAnswer | None:
    """Three minimum-total rejects put the symbol in a cooldown: deny until it ends (have: now, need: end)."""
    return ReserveAnswer("denied", MIN_TOTAL_COOLDOWN, now_ms, cool_until) if now_ms < cool_until else None


def outcome_unknown(unknown: int, enabled: bool) -> ReserveAnswer | None:
    """Deny while an approved order of the symbol has no known outcome (no OrderAccepted or terminal event)."""
    return ReserveAnswer("denied", OUTCOME_UNKNOWN, unknown, 0) if enabled and unknown > 0 else None


def open_orders(reason: str, count: int, limit: int) -> ReserveAnswer | None:
    """Deny when `count` open orders already reach `limit`."""
    return ReserveAnswer("denied", reason, count, limit) if count >= limit else None


def cooldown(now_ms: int, last_ms: int | None, cooldown_ms: int) -> ReserveAnswer | None:
    """Deny a symbol and side approved less than `cooldown_ms` ago."""
    # No cooldown at all when it is 0 (a replica's clock a little behind the last approval must not deny).
    if cooldown_ms <= 0 or last_ms is None or now_ms >= last_ms + cooldown_ms:
        return None
    return ReserveAnswer("denied", COOLDOWN, now_ms - last_ms, cooldown_ms)


def oversell(quantity: int, position: int, sells_in_flight: int) -> ReserveAnswer | None:
    """No oversell ever: a sell may not exceed the position minus the sells in flight."""
    available = position - sells_in_flight
    return ReserveAnswer("denied", OVERSELL, available, quantity) if quantity > available else None


def cash_reserve(notional: int, cash: int, reserve: int, buys_in_flight: int) -> ReserveAnswer | None:
    """A buy never spends the reserve, nor what approved buys already hold."""
    available = cash - reserve - buys_in_flight
    return ReserveAnswer("denied", CASH_RESERVE, available, notional) if notional > available else None


def cap(reason: str, notional: int, used: int, limit: int) -> ReserveAnswer | None:
    """Deny when `used` plus this order would pass `limit` (have: room left, need: the order)."""
    return ReserveAnswer("denied", reason, limit - used, notional) if used + notional > limit else None


def clamp(units: int) -> int:
    """Keep a holding inside [0, MAX_UNITS]: a smaller holding only makes a check stricter."""
    return min(max(units, 0), MAX_UNITS)


def request(
    coid: str,
    symbol: str,
    side: Literal["buy", "sell"],
    quantity: Decimal,
    price: Decimal,
    now_ns: int,
    *,
    snap_seq: int,
    position: Decimal,
    symbol_value: Decimal,
    exposure: Decimal,
    cash: Decimal,
) -> ReserveRequest | None:
    """A reservation request from Decimal amounts, every rounding against us; None if the order is too large."""
    qty = to_units(quantity, QTY_SCALE, up=True)
    notional = to_units(price * quantity, QUOTE_SCALE, up=True)
    if not (0 < qty <= MAX_UNITS and 0 <= notional <= MAX_UNITS):
        return None
    return ReserveRequest(
        coid=coid,
        symbol=symbol,
        side=side,
        quantity=qty,
        notional=notional,
        now_ms=now_ns // 1_000_000,
        snap_seq=clamp(snap_seq),
        position=clamp(to_units(position, QTY_SCALE, up=False)),
        # Values we add up against a cap: rounded up, and at most MAX_UNITS (which passes any sane cap anyway).
        symbol_value=clamp(to_units(symbol_value, QUOTE_SCALE, up=True)),
        exposure=clamp(to_units(exposure, QUOTE_SCALE, up=True)),
        cash=clamp(to_units(cash, QUOTE_SCALE, up=False)),
    )


class ReservationsProtocol(Protocol):
    """What risk needs of a reservation store (Redis, or the in-memory model)."""

    async def reserve(self, req: ReserveRequest, limits: ReserveLimits) -> ReserveAnswer:
        """Decide and, when approved, record the reservation; the same coid always gets the same answer."""
        ...

    async def release_denied(self, coid: str) -> bool:
        """Drop the reservation of an order whose intent's verdict is a denial (it was never submitted)."""
        ...

    async def accepted(self, coid: str) -> None:
        """The exchange has the order: its outcome is known."""
        ...

    async def rejected(self, coid: str) -> None:
        """Refused for good: nothing of it is in flight."""
        ...

    async def canceled(self, coid: str, filled: int, seq: int) -> None:
        """Left the book with `filled` quantity; finished at EXECUTION sequence `seq`."""
        ...

    async def filled(self, coid: str, symbol: str, side: str, trade_id: str, qty: int, notional: int, seq: int) -> None:
        """One fill (idempotent per trade id); the one completing the quantity finishes the order."""
        ...

    async def min_total_reject(
        self, symbol: str, event_id: str, ts_ms: int, window_ms: int, count: int, cooldown_ms: int
    ) -> int:
        """Record a minimum-total reject; `count` within `window_ms` start a cooldown. Returns its end (0: none)."""
        ...

    async def open_orders(self) -> list[tuple[str, str]]:
        """(client order id, symbol) of every approved order not finished yet."""
        ...

    async def summary(self) -> dict[str, object]:
        """Read-only: what is reserved per symbol and side, the orders holding it, and cooldowns."""
        ...


def _check_units(req: ReserveRequest) -> None:
    for name in ("quantity", "notional", "now_ms", "snap_seq", "position", "symbol_value", "exposure", "cash"):
        value = getattr(req, name)
        if not 0 <= value <= MAX_UNITS:
            raise ValueError(f"{name}={value} outside [0, 2**53): the caller must clamp or deny")


def summarize(held: dict[str, Held], hwm: int, cool: dict[str, int]) -> dict[str, object]:
    """The summary both stores return."""
    units: dict[str, list[int]] = {}
    orders: list[dict[str, str]] = []
    for coid in sorted(held):
        order = held[coid]
        sells, buys = order.in_flight()
        per = units.setdefault(order.symbol, [0, 0])
        per[0] += buys
        per[1] += sells
        orders.append({"client_order_id": coid, "symbol": order.symbol, "side": order.side, "state": order.state,
                       "done_seq": str(order.done_seq)})  # fmt: skip
    reserved = {
        symbol: {
            "buy_notional": f"{from_units(buys, QUOTE_SCALE):f}",
            "sell_quantity": f"{from_units(sells, QTY_SCALE):f}",
        }
        for symbol, (buys, sells) in sorted(units.items())
    }
    live = sum(1 for o in held.values() if o.state != "done")
    # Finished orders stay until a decision sees a snapshot at or past their done_seq (pruning is lazy): a reader
    # judging "still reserved" should compare done_seq with the newest snapshot's exec_seq.
    return {
        "reserved": reserved,
        "orders": orders,
        "open_orders": live,
        "snapshot_seq": hwm,
        "min_total_cooldowns": dict(cool),
    }


@dataclass
class ReservationModel:
    """The script's decision and bookkeeping in plain Python: its specification and in-memory twin."""

    held: dict[str, Held] = field(default_factory=dict)
    fills: dict[str, dict[str, int]] = field(default_factory=dict)
    denials: dict[str, ReserveAnswer] = field(default_factory=dict)
    last: dict[str, int] = field(default_factory=dict)
    cool: dict[str, int] = field(default_factory=dict)
    rejects: dict[str, dict[str, int]] = field(default_factory=dict)
    hwm: int = 0

    async def reserve(self, req: ReserveRequest, limits: ReserveLimits) -> ReserveAnswer:
        """See ReservationsProtocol."""
        _check_units(req)
        if req.coid in self.held:
            return ReserveAnswer("approved")
        if req.coid in self.denials:
            return self.denials[req.coid]
        if req.snap_seq < self.hwm:
            return ReserveAnswer("stale", "", req.snap_seq, self.hwm)
        self.hwm = req.snap_seq
        for coid in [c for c, o in self.held.items() if o.prunable(req.snap_seq)]:
            self._drop(coid)
        key = f"{req.symbol}:{req.side}"
        answer = decide(req, tally(self.held, req.symbol), limits, self.last.get(key), self.cool.get(req.symbol, 0))
        if answer.outcome == "approved":
            self.held[req.coid] = Held(req.symbol, req.side, req.quantity, req.notional)
            self.last[key] = req.now_ms
        else:
            self.denials[req.coid] = answer
        return answer

    def _drop(self, coid: str) -> None:
        self.held.pop(coid, None)
        self.fills.pop(coid, None)

    async def release_denied(self, coid: str) -> bool:
        """See ReservationsProtocol."""
        found = coid in self.held
        self._drop(coid)
        return found

    async def accepted(self, coid: str) -> None:
        """See ReservationsProtocol."""
        order = self.held.get(coid)
        if order is not None and order.state == "unknown":
            order.state = "open"

    async def rejected(self, coid: str) -> None:
        """See ReservationsProtocol."""
        self._drop(coid)

    async def canceled(self, coid: str, filled: int, seq: int) -> None:
        """See ReservationsProtocol."""
        order = self.held.get(coid)
        if order is None:
            return
        order.cfilled = max(order.cfilled, filled)
        if order.cfilled == 0 and order.fqty == 0:
            self._drop(coid)
            return
        order.state = "done"
        order.done_seq = max(order.done_seq, seq)

    async def filled(self, coid: str, symbol: str, side: str, trade_id: str, qty: int, notional: int, seq: int) -> None:
        """See ReservationsProtocol."""
        order = self.held.get(coid)
        if order is None:
            # Not held (another source, or already pruned): still in flight until the snapshot includes it.
            order = self.held[coid] = Held(symbol, side, 0, 0, state="done")
        trades = self.fills.setdefault(coid, {})
        if trade_id not in trades:
            trades[trade_id] = qty
            order.fqty += qty
            order.fnotional += notional
        if order.state == "done":
            order.done_seq = max(order.done_seq, seq)
        elif order.fqty >= order.quantity:
            order.state = "done"
            order.done_seq = max(order.done_seq, seq)
        else:
            order.state = "open"

    async def min_total_reject(
        self, symbol: str, event_id: str, ts_ms: int, window_ms: int, count: int, cooldown_ms: int
    ) -> int:
        """See ReservationsProtocol."""
        seen = self.rejects.setdefault(symbol, {})
        seen.setdefault(event_id, ts_ms)
        recent = sum(1 for t in seen.values() if ts_ms - window_ms < t <= ts_ms)
        if recent >= count:
            self.cool[symbol] = max(self.cool.get(symbol, 0), ts_ms + cooldown_ms)
        return self.cool.get(symbol, 0)

    async def open_orders(self) -> list[tuple[str, str]]:
        """See ReservationsProtocol."""
        return sorted((c, o.symbol) for c, o in self.held.items() if o.state != "done")

    async def summary(self) -> dict[str, object]:
        """See ReservationsProtocol."""
        return summarize(self.held, self.hwm, self.cool)


# How long a reservation key outlives its last write (refreshed on every write, so an active run never loses one;
# an order resting untouched for longer is canceled as stale long before). Without it, every run's prefix would
# leave its keys in Redis forever.
KEY_RETENTION_MS = 7 * 24 * 3600 * 1000

_COMMON = (
    f"""
local RETAIN_MS = {KEY_RETENTION_MS}
local function keep(...) for _, k in ipairs({{...}}) do redis.call('PEXPIRE', k, RETAIN_MS) end end
"""
    + """
local p = KEYS[1]
local function s(n) return string.format('%d', n) end
local FIELDS = {'symbol', 'side', 'qty', 'notional', 'state', 'fqty', 'fnotional', 'cfilled', 'done_seq'}
local function load(coid)
  local r = redis.call('HMGET', p .. ':o:' .. coid, unpack(FIELDS))
  if not r[1] then return nil end
  return {symbol = r[1], side = r[2], qty = tonumber(r[3]), notional = tonumber(r[4]), state = r[5],
          fqty = tonumber(r[6]), fnotional = tonumber(r[7]), cfilled = tonumber(r[8]), done_seq = tonumber(r[9])}
end
local function drop(coid)
  redis.call('DEL', p .. ':o:' .. coid, p .. ':f:' .. coid)
  redis.call('SREM', p .. ':ids', coid)
end
"""
)

# ARGV: coid symbol side qty notional now_ms snap_seq position symbol_value exposure cash
#       max_open_symbol max_open_total cooldown_ms cash_reserve symbol_cap budget deny_unknown denial_ttl_ms
# Returns {outcome, reason, have, need} (numbers as strings).
_RESERVE = (
    _COMMON
    + """
local coid, symbol, side = ARGV[1], ARGV[2], ARGV[3]
local qty, notional, now = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local snap, position, symbol_value = tonumber(ARGV[7]), tonumber(ARGV[8]), tonumber(ARGV[9])
local exposure, cash = tonumber(ARGV[10]), tonumber(ARGV[11])
local max_sym, max_total, cool_ms = tonumber(ARGV[12]), tonumber(ARGV[13]), tonumber(ARGV[14])
local reserve, symbol_cap, budget = tonumber(ARGV[15]), tonumber(ARGV[16]), tonumber(ARGV[17])
local deny_unknown = ARGV[18] == '1'
if redis.call('EXISTS', p .. ':o:' .. coid) == 1 then return {'approved', '', '0', '0'} end
local remembered = redis.call('HMGET', p .. ':deny:' .. coid, 'reason', 'have', 'need')
if remembered[1] then return {'denied', remembered[1], remembered[2], remembered[3]} end
local hwm = tonumber(redis.call('GET', p .. ':hwm') or '0')
if snap < hwm then return {'stale', '', s(snap), s(hwm)} end
redis.call('SET', p .. ':hwm', ARGV[7])
keep(p .. ':hwm', p .. ':ids', p .. ':last', p .. ':cool')
local open_sym, open_total, unknown_sym, sells_sym, buys_sym, buys_total = 0, 0, 0, 0, 0, 0
for _, id in ipairs(redis.call('SMEMBERS', p .. ':ids')) do
  local o = load(id)
  if not o then
    redis.call('SREM', p .. ':ids', id)
  elseif o.state == 'done' and o.done_seq <= snap and o.fqty >= o.cfilled then
    drop(id)
  else
    local mine = o.symbol == symbol
    local sells, buys = 0, 0
    if o.state ~= 'done' then
      open_total = open_total + 1
      if mine then
        open_sym = open_sym + 1
        if o.state == 'unknown' then unknown_sym = unknown_sym + 1 end
      end
      if o.side == 'sell' then sells = o.qty else buys = o.notional end
    elseif o.side == 'sell' then
      sells = math.max(o.fqty, o.cfilled)
    elseif o.cfilled > o.fqty then
      buys = o.notional
    else
      buys = o.fnotional
    end
    buys_total = buys_total + buys
    if mine then
      sells_sym = sells_sym + sells
      buys_sym = buys_sym + buys
    end
  end
end
local function deny(reason, have, need)
  local key = p .. ':deny:' .. coid
  redis.call('HSET', key, 'reason', reason, 'have', s(have), 'need', s(need))
  redis.call('PEXPIRE', key, ARGV[19])
  return {'denied', reason, s(have), s(need)}
end
local cool_until = tonumber(redis.call('HGET', p .. ':cool', symbol) or '0')
if now < cool_until then return deny('MIN_TOTAL_COOLDOWN', now, cool_until) end
if deny_unknown and unknown_sym > 0 then return deny('OUTCOME_UNKNOWN', unknown_sym, 0) end
if open_sym >= max_sym then return deny('OPEN_ORDERS_SYMBOL', open_sym, max_sym) end
if open_total >= max_total then return deny('OPEN_ORDERS_TOTAL', open_total, max_total) end
local key = symbol .. ':' .. side
local last = redis.call('HGET', p .. ':last', key)
if cool_ms > 0 and last and now < tonumber(last) + cool_ms then
  return deny('COOLDOWN', now - tonumber(last), cool_ms)
end
if side == 'sell' then
  if qty > position - sells_sym then return deny('OVERSELL', position - sells_sym, qty) end
else
  if notional > cash - reserve - buys_total then return deny('CASH_RESERVE', cash - reserve - buys_total, notional) end
  if symbol_value + buys_sym + notional > symbol_cap then
    return deny('SYMBOL_EXPOSURE', symbol_cap - symbol_value - buys_sym, notional)
  end
  if exposure + buys_total + notional > budget then
    return deny('EXPOSURE_BUDGET', budget - exposure - buys_total, notional)
  end
end
redis.call('HSET', p .. ':o:' .. coid, 'symbol', symbol, 'side', side, 'qty', ARGV[4], 'notional', ARGV[5],
  'state', 'unknown', 'fqty', '0', 'fnotional', '0', 'cfilled', '0', 'done_seq', '0', 'approved_ms', ARGV[6])
redis.call('SADD', p .. ':ids', coid)
redis.call('HSET', p .. ':last', key, ARGV[6])
keep(p .. ':o:' .. coid, p .. ':ids', p .. ':last')
return {'approved', '', '0', '0'}
"""
)

# ARGV: kind coid, then per kind -- canceled: filled seq; filled: symbol side trade qty notional seq.
# Returns 1 when a held order was found or made.
_EVENT = (
    _COMMON
    + """
local kind, coid = ARGV[1], ARGV[2]
local key = p .. ':o:' .. coid
local o = load(coid)
keep(key, p .. ':f:' .. coid, p .. ':ids')
if kind == 'release' or kind == 'rejected' then
  if not o then return 0 end
  drop(coid)
  return 1
end
if kind == 'accepted' then
  if o and o.state == 'unknown' then redis.call('HSET', key, 'state', 'open') end
  return o and 1 or 0
end
if kind == 'canceled' then
  if not o then return 0 end
  local cfilled = math.max(o.cfilled, tonumber(ARGV[3]))
  if cfilled == 0 and o.fqty == 0 then
    drop(coid)
    return 1
  end
  local done_seq = math.max(o.done_seq, tonumber(ARGV[4]))
  redis.call('HSET', key, 'cfilled', s(cfilled), 'state', 'done', 'done_seq', s(done_seq))
  return 1
end
-- filled
local seq = tonumber(ARGV[8])
if not o then
  redis.call('HSET', key, 'symbol', ARGV[3], 'side', ARGV[4], 'qty', '0', 'notional', '0', 'state', 'done',
    'fqty', '0', 'fnotional', '0', 'cfilled', '0', 'done_seq', '0')
  redis.call('SADD', p .. ':ids', coid)
  keep(key, p .. ':ids')
  o = load(coid)
end
if redis.call('HSETNX', p .. ':f:' .. coid, ARGV[5], ARGV[6]) == 1 then
  keep(p .. ':f:' .. coid)
  o.fqty = tonumber(redis.call('HINCRBY', key, 'fqty', ARGV[6]))
  redis.call('HINCRBY', key, 'fnotional', ARGV[7])
end
if o.state == 'done' then
  redis.call('HSET', key, 'done_seq', s(math.max(o.done_seq, seq)))
elseif o.fqty >= o.qty then
  redis.call('HSET', key, 'state', 'done', 'done_seq', s(math.max(o.done_seq, seq)))
else
  redis.call('HSET', key, 'state', 'open')
end
return 1
"""
)

# KEYS[1] prefix. ARGV: symbol event_id ts_ms window_ms count cooldown_ms. Returns the cooldown's end (0: none).
_MIN_TOTAL = (
    f"""
local RETAIN_MS = {KEY_RETENTION_MS}
"""
    + """
local p = KEYS[1]
local symbol, id = ARGV[1], ARGV[2]
local ts, window, count, cool = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local zkey = p .. ':mt:' .. symbol
redis.call('ZADD', zkey, 'NX', ARGV[3], id)
redis.call('PEXPIRE', zkey, window * 2 + 60000)
local recent = redis.call('ZCOUNT', zkey, '(' .. string.format('%d', ts - window), ARGV[3])
local current = tonumber(redis.call('HGET', p .. ':cool', symbol) or '0')
if recent >= count and ts + cool > current then
  current = ts + cool
  redis.call('HSET', p .. ':cool', symbol, string.format('%d', current))
  redis.call('PEXPIRE', p .. ':cool', RETAIN_MS)
end
return string.format('%d', current)
"""
)


class RedisReservations:
    """Reservations in Redis under `<key_prefix>:<account>:res`, shared by every risk replica."""

    def __init__(self, client: aioredis.Redis, prefix: str, ack: ReplicaAck = NO_ACK) -> None:
        self._redis = client
        self._ack = ack
        self.prefix = f"{prefix}:res"
        self._reserve = client.register_script(_RESERVE)
        self._event = client.register_script(_EVENT)
        self._min_total = client.register_script(_MIN_TOTAL)

    async def reserve(self, req: ReserveRequest, limits: ReserveLimits) -> ReserveAnswer:
        """See ReservationsProtocol."""
        _check_units(req)
        args = [req.coid, req.symbol, req.side, req.quantity, req.notional, req.now_ms, req.snap_seq, req.position,
                req.symbol_value, req.exposure, req.cash, limits.max_open_per_symbol, limits.max_open_total,
                limits.cooldown_ms, limits.cash_reserve, limits.symbol_cap, limits.budget,
                1 if limits.deny_unknown_outcome else 0, DENIAL_TTL_MS]  # fmt: skip
        try:
            (raw,) = await acked_write(
                self._redis,
                self._ack,
                lambda pipe: self._reserve(keys=[self.prefix], args=[str(a) for a in args], client=pipe),
            )
        except DependencyUnavailable as exc:
            raise DependencyUnavailable(f"reserve {req.coid}: {exc}") from exc
        outcome, reason, have, need = (_text(x) for x in raw)
        if outcome not in ("approved", "denied", "stale"):
            raise DependencyUnavailable(f"redis: reserve {req.coid}: unexpected answer {raw!r}")
        return ReserveAnswer(outcome, reason, int(have), int(need))  # type: ignore[arg-type]

    async def _run_event(self, *args: object) -> bool:
        try:
            return bool(await self._event(keys=[self.prefix], args=[str(a) for a in args]))
        except RedisError as exc:
            raise DependencyUnavailable(f"redis: reservation {args[0]} {args[1]}: {exc!r}") from exc

    async def release_denied(self, coid: str) -> bool:
        """See ReservationsProtocol."""
        return await self._run_event("release", coid)

    async def accepted(self, coid: str) -> None:
        """See ReservationsProtocol."""
        await self._run_event("accepted", coid)

    async def rejected(self, coid: str) -> None:
        """See ReservationsProtocol."""
        await self._run_event("rejected", coid)

    async def canceled(self, coid: str, filled: int, seq: int) -> None:
        """See ReservationsProtocol."""
        await self._run_event("canceled", coid, filled, seq)

    async def filled(self, coid: str, symbol: str, side: str, trade_id: str, qty: int, notional: int, seq: int) -> None:
        """See ReservationsProtocol."""
        await self._run_event("filled", coid, symbol, side, trade_id, qty, notional, seq)

    async def min_total_reject(
        self, symbol: str, event_id: str, ts_ms: int, window_ms: int, count: int, cooldown_ms: int
    ) -> int:
        """See ReservationsProtocol."""
        try:
            raw = await self._min_total(
                keys=[self.prefix], args=[symbol, event_id, str(ts_ms), str(window_ms), str(count), str(cooldown_ms)]
            )
        except RedisError as exc:
            raise DependencyUnavailable(f"redis: min-total reject {symbol}: {exc!r}") from exc
        return int(_text(raw))

    async def _load(self) -> tuple[dict[str, Held], int, dict[str, int]]:
        try:
            coids = sorted(_text(c) for c in await self._redis.smembers(self.prefix + ":ids"))
            held: dict[str, Held] = {}
            for coid in coids:
                raw = await self._redis.hgetall(f"{self.prefix}:o:{coid}")
                if not raw:
                    continue
                f = {_text(k): _text(v) for k, v in raw.items()}
                held[coid] = Held(
                    f["symbol"], f["side"], int(f["qty"]), int(f["notional"]), f["state"],  # type: ignore[arg-type]
                    int(f["fqty"]), int(f["fnotional"]), int(f["cfilled"]), int(f["done_seq"]),
                )  # fmt: skip
            hwm = int(_text(await self._redis.get(self.prefix + ":hwm") or b"0"))
            cool_raw = await self._redis.hgetall(self.prefix + ":cool")
        except RedisError as exc:
            raise DependencyUnavailable(f"redis: read reservations: {exc!r}") from exc
        return held, hwm, {_text(k): int(_text(v)) for k, v in cool_raw.items()}

    async def held(self) -> dict[str, Held]:
        """Every held order as stored (read-only; for tests and inspection)."""
        return (await self._load())[0]

    async def open_orders(self) -> list[tuple[str, str]]:
        """See ReservationsProtocol."""
        held, _, _ = await self._load()
        return sorted((c, o.symbol) for c, o in held.items() if o.state != "done")

    async def summary(self) -> dict[str, object]:
        """See ReservationsProtocol."""
        held, hwm, cool = await self._load()
        return summarize(held, hwm, cool)


def _text(value: bytes | str | int) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
