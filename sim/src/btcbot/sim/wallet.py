"""Per-account balances with funds on hold for open orders."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal


@dataclass
class Balance:
    """One asset: `total` includes `locked`, the part held by open orders."""

    total: Decimal = Decimal(0)
    locked: Decimal = Decimal(0)

    @property
    def free(self) -> Decimal:
        """What new orders may use."""
        return self.total - self.locked


class Wallet:
    """All balances of one account; every change keeps 0 <= locked <= total."""

    def __init__(self, initial: Mapping[str, Decimal]) -> None:
        self._balances: dict[str, Balance] = {a: Balance(Decimal(v)) for a, v in initial.items()}

    def balance(self, asset: str) -> Balance:
        """The balance of `asset` (zero if never funded)."""
        return self._balances.setdefault(asset, Balance())

    def assets(self) -> list[str]:
        """Every asset this wallet has seen."""
        return list(self._balances)

    def hold(self, asset: str, amount: Decimal) -> None:
        """Put funds on hold for a new order."""
        bal = self.balance(asset)
        if amount > bal.free:
            raise ValueError(f"hold {amount} {asset} exceeds free {bal.free}")
        bal.locked += amount

    def release(self, asset: str, amount: Decimal) -> None:
        """Return held funds to free."""
        bal = self.balance(asset)
        if amount > bal.locked:
            raise ValueError(f"release {amount} {asset} exceeds locked {bal.locked}")
        bal.locked -= amount

    def spend_held(self, asset: str, amount: Decimal) -> None:
        """Pay out of funds on hold (a fill of an order that reserved them)."""
        bal = self.balance(asset)
        if amount > bal.locked:
            raise ValueError(f"spend {amount} {asset} exceeds locked {bal.locked}")
        bal.locked -= amount
        bal.total -= amount

    def credit(self, asset: str, amount: Decimal) -> None:
        """Receive funds."""
        self.balance(asset).total += amount
