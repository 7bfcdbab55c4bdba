"""Recorded market data for playback: a JSON-lines format of trades and mid quotes, parsed strictly.

One record per line, blank lines ignored, order free (records are sorted by time, stably):

    {"ts_ms": 1764000000000, "pair": "BTCTRY", "price": "3600123", "amount": "0.0125", "side": "buy"}
    {"ts_ms": 1764000000500, "pair": "BTCTRY", "mid": "3600050", "spread": "240"}

A trade has `price`, `amount` and the aggressor `side`; a quote has `mid` and optionally `spread`
(full width, ask minus bid). Numbers may be JSON strings or numbers; unknown keys are refused so a
typo does not silently change what is played.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from importlib import resources
from pathlib import Path
from typing import Literal

BUILTIN = "builtin"
_BUILTIN_FILE = "builtin.jsonl"
_TRADE_KEYS = frozenset({"ts_ms", "pair", "price", "amount", "side"})
_QUOTE_KEYS = frozenset({"ts_ms", "pair", "mid", "spread"})


class DatasetError(ValueError):
    """A dataset record that cannot be used; the message names the file and line."""

    def __init__(self, source: str, line: int, reason: str) -> None:
        # Line 0 stands for the file as a whole (unreadable, empty).
        super().__init__(f"{source}:{line}: {reason}" if line else f"{source}: {reason}")
        self.source = source
        self.line = line
        self.reason = reason


@dataclass(frozen=True)
class RecordedTrade:
    """A trade as recorded: aggressor side, price and base amount."""

    ts_ms: int
    pair: str
    price: Decimal
    amount: Decimal
    side: Literal["buy", "sell"]
    line: int


@dataclass(frozen=True)
class RecordedQuote:
    """The recorded fair price of a pair, with the spread quoted around it when known."""

    ts_ms: int
    pair: str
    mid: Decimal
    spread: Decimal | None
    line: int


Record = RecordedTrade | RecordedQuote


@dataclass(frozen=True)
class Dataset:
    """Parsed records, sorted by time; `source` names where they came from (for error messages)."""

    source: str
    records: tuple[Record, ...]

    @property
    def pairs(self) -> tuple[str, ...]:
        """Pairs that have records, in order of first appearance."""
        return tuple(dict.fromkeys(r.pair for r in self.records))

    @property
    def start_ms(self) -> int:
        """Time of the first record."""
        return self.records[0].ts_ms

    @property
    def span_ms(self) -> int:
        """Time from the first record to the last."""
        return self.records[-1].ts_ms - self.records[0].ts_ms

    def only(self, pairs: Iterable[str]) -> Dataset:
        """The records of the given pairs only."""
        wanted = set(pairs)
        return Dataset(self.source, tuple(r for r in self.records if r.pair in wanted))


def _number(raw: object, key: str, *, positive: bool) -> Decimal:
    if isinstance(raw, bool) or not isinstance(raw, str | int | Decimal):
        raise ValueError(f"{key} must be a decimal string or number")
    try:
        value = Decimal(raw)
    except InvalidOperation as exc:
        raise ValueError(f"{key} {raw!r} is not a number") from exc
    if not value.is_finite() or value < 0 or (positive and value == 0):
        raise ValueError(f"{key} must be {'positive' if positive else 'non-negative'}, got {raw!r}")
    return value


def parse_record(text: str, line: int) -> Record:
    """One JSON line as a trade or a quote; ValueError says what is wrong with it."""
    try:
        raw = json.loads(text, parse_float=Decimal)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not JSON ({exc.msg})") from exc
    if not isinstance(raw, dict):
        raise ValueError("a record must be a JSON object")
    keys = frozenset(raw)
    is_trade = "price" in keys
    allowed = _TRADE_KEYS if is_trade else _QUOTE_KEYS
    if not is_trade and "mid" not in keys:
        raise ValueError("a record needs `price` (a trade) or `mid` (a quote)")
    if unknown := sorted(keys - allowed):
        raise ValueError(f"unknown keys {unknown} in a {'trade' if is_trade else 'quote'} record")
    ts = raw.get("ts_ms")
    if isinstance(ts, bool) or not isinstance(ts, int) or ts < 0:
        raise ValueError("ts_ms must be a non-negative integer (Unix ms)")
    pair = raw.get("pair")
    if not isinstance(pair, str) or not pair.replace("_", "").isalnum():
        raise ValueError("pair must be a name like BTCTRY")
    pair = pair.replace("_", "").upper()
    if not is_trade:
        spread = raw.get("spread")
        return RecordedQuote(
            ts,
            pair,
            _number(raw["mid"], "mid", positive=True),
            None if spread is None else _number(spread, "spread", positive=False),
            line,
        )
    missing = sorted(_TRADE_KEYS - keys)
    if missing:
        raise ValueError(f"trade record lacks {missing}")
    side = raw["side"]
    if side not in ("buy", "sell"):
        raise ValueError(f"side must be buy or sell, got {side!r}")
    price = _number(raw["price"], "price", positive=True)
    amount = _number(raw["amount"], "amount", positive=True)
    return RecordedTrade(ts, pair, price, amount, side, line)


def parse_dataset(lines: Iterable[str], source: str) -> Dataset:
    """Parse JSON lines; raises DatasetError naming `source` and the line of the first bad record."""
    records: list[Record] = []
    for number, text in enumerate(lines, start=1):
        if not text.strip():
            continue
        try:
            records.append(parse_record(text, number))
        except ValueError as exc:
            raise DatasetError(source, number, str(exc)) from exc
    if not records:
        raise DatasetError(source, 0, "the dataset has no records")
    records.sort(key=lambda r: r.ts_ms)
    return Dataset(source, tuple(records))


def load_dataset(spec: str | Path) -> Dataset:
    """Read `builtin` (shipped with the simulator) or a JSON-lines file."""
    if str(spec) == BUILTIN:
        text = resources.files("btcbot.sim").joinpath("datasets", _BUILTIN_FILE).read_text("utf-8")
        return parse_dataset(text.splitlines(), BUILTIN)
    path = Path(spec)
    try:
        text = path.read_text("utf-8")
    except OSError as exc:
        raise DatasetError(str(path), 0, f"cannot read the dataset ({exc.strerror or exc})") from exc
    except UnicodeDecodeError as exc:
        raise DatasetError(str(path), 0, "the dataset is not UTF-8 text") from exc
    return parse_dataset(text.splitlines(), str(path))
