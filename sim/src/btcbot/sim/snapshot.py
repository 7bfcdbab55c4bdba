"""The exchange's saved state: the users' wallets, orders and trades, the id counters and the last prices.

Plain JSON (Decimals as strings) written atomically, so `--state-file` can continue a run where it stopped:
the ledger of that run and the restored exchange then agree. The crowd is not saved: it is re-seeded around
the saved prices.
"""

from __future__ import annotations

import dataclasses
import json
import os
from decimal import Decimal
from pathlib import Path
from typing import Any

from btcbot.sim.book import Order
from btcbot.sim.engine import UserTrade

VERSION = 1
_ORDER_DECIMALS = ("price", "quantity", "left", "filled_base", "filled_quote", "reserved", "first_fill_price")
_TRADE_DECIMALS = ("price", "amount", "fee", "tax")


def _plain(record: Any, decimals: tuple[str, ...]) -> dict[str, Any]:
    out = dataclasses.asdict(record)
    for key in decimals:
        if out.get(key) is not None:
            out[key] = str(out[key])
    return out


def _typed(data: dict[str, Any], decimals: tuple[str, ...]) -> dict[str, Any]:
    out = dict(data)
    for key in decimals:
        if out.get(key) is not None:
            out[key] = Decimal(out[key])
    return out


def order_to_json(order: Order) -> dict[str, Any]:
    """An order as saved."""
    return _plain(order, _ORDER_DECIMALS)


def order_from_json(data: dict[str, Any]) -> Order:
    """An order as restored."""
    return Order(**_typed(data, _ORDER_DECIMALS))


def trade_to_json(trade: UserTrade) -> dict[str, Any]:
    """A user trade as saved."""
    return _plain(trade, _TRADE_DECIMALS)


def trade_from_json(data: dict[str, Any]) -> UserTrade:
    """A user trade as restored."""
    return UserTrade(**_typed(data, _TRADE_DECIMALS))


def write_atomically(path: Path, data: dict[str, Any]) -> None:
    """Write JSON to a temporary file, fsync, rename: a crash leaves the old file or the new one, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with tmp.open("w") as out:
        json.dump(data, out, indent=1)
        out.flush()
        os.fsync(out.fileno())
    tmp.replace(path)


def read(path: Path) -> dict[str, Any] | None:
    """The saved state, None if there is none; ValueError for a file of another version or not JSON."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ValueError(f"--state-file {path}: not JSON ({exc})") from None
    if not isinstance(data, dict) or data.get("version") != VERSION:
        raise ValueError(f"--state-file {path}: not a saved simulator state of version {VERSION}")
    return data
