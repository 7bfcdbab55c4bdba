"""Playing a recorded dataset back through the crowd, paced by the recorded timestamps. Pure: time comes in."""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal

from btcbot.sim.config import SymbolRules
from btcbot.sim.dataset import Dataset, DatasetError, Record, RecordedQuote, RecordedTrade
from btcbot.sim.market import Crowd


class Timeline:
    """Which records fall due as exchange time passes: recorded gaps scaled by `speed`, looping at the end."""

    def __init__(self, records: tuple[Record, ...], start_ms: int, speed: float) -> None:
        if not records:
            raise ValueError("nothing to play")
        if not speed > 0:
            raise ValueError("speed must be positive")
        self._records = records
        self._first_ms = records[0].ts_ms
        span = records[-1].ts_ms - self._first_ms
        # One average gap between the last record and the first of the next loop, so a loop is not a burst.
        self.period_ms = span + max(1, span // max(1, len(records) - 1))
        self._start_ms = start_ms
        self._speed = speed
        self._loop = 0
        self._index = 0

    def _offset(self) -> int:
        """Recorded time of the next record, in ms since the first record of the first loop."""
        return self._loop * self.period_ms + self._records[self._index].ts_ms - self._first_ms

    def due(self, now_ms: int) -> list[Record]:
        """Records whose (scaled) time has come since the last call, oldest first."""
        played = int((now_ms - self._start_ms) * self._speed)
        # After a long stall replay at most the last loop's worth rather than every loop missed.
        missed = (played - self._offset()) // self.period_ms
        if missed > 0:
            self._loop += missed
        out: list[Record] = []
        while self._offset() <= played:
            out.append(self._records[self._index])
            self._index += 1
            if self._index == len(self._records):
                self._index = 0
                self._loop += 1
        return out


class Playback:
    """Drives the crowd of the dataset's pairs: recorded mids move its quotes, recorded trades hit the book."""

    def __init__(self, dataset: Dataset, symbols: Iterable[SymbolRules], start_ms: int, speed: float) -> None:
        rules = {s.name: s for s in symbols}
        played = dataset.only(rules)
        if not played.records:
            raise DatasetError(
                dataset.source, 0, f"no records for the active symbols {sorted(rules)} (it has {list(dataset.pairs)})"
            )
        for record in played.records:
            _check(record, rules[record.pair], dataset.source)
        self.pairs = played.pairs
        self._quoted = frozenset(r.pair for r in played.records if isinstance(r, RecordedQuote))
        self._timeline = Timeline(played.records, start_ms, speed)
        self._first_mid = {pair: _first_mid(played, pair) for pair in self.pairs}

    @property
    def period_ms(self) -> int:
        """Recorded length of one loop (before scaling by speed)."""
        return self._timeline.period_ms

    def first_mid(self, pair: str) -> Decimal:
        """Where the pair's market starts: its first recorded quote, else its first trade."""
        return self._first_mid[pair]

    def step(self, crowd: Crowd, now_ms: int) -> int:
        """Apply every record now due; returns how many."""
        records = self._timeline.due(now_ms)
        for record in records:
            if isinstance(record, RecordedQuote):
                crowd.follow(record.pair, record.mid, record.spread, now_ms)
                continue
            crowd.replay_trade(record.pair, record.side, record.price, record.amount, now_ms)
            if record.pair not in self._quoted:
                # Without recorded quotes the last trade is the best estimate of fair price.
                crowd.follow(record.pair, record.price, None, now_ms)
        return len(records)


def _first_mid(dataset: Dataset, pair: str) -> Decimal:
    mine = [r for r in dataset.records if r.pair == pair]
    quote = next((r for r in mine if isinstance(r, RecordedQuote)), None)
    if quote is not None:
        return quote.mid
    trade = mine[0]
    assert isinstance(trade, RecordedTrade)
    return trade.price


def _check(record: Record, rules: SymbolRules, source: str) -> None:
    """Refuse prices outside the pair's PRICE_FILTER and amounts below its smallest step."""
    price = record.price if isinstance(record, RecordedTrade) else record.mid
    if not rules.min_price <= price <= rules.max_price:
        raise DatasetError(
            source, record.line, f"price {price} is outside {rules.name}'s {rules.min_price}..{rules.max_price}"
        )
    step = Decimal(1).scaleb(-rules.numerator_scale)
    if isinstance(record, RecordedTrade) and record.amount < step:
        raise DatasetError(source, record.line, f"amount {record.amount} is below {rules.name}'s step {step}")
