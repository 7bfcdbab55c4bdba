"""Deposits and withdrawals of each account, as /api/v1/users/transactions/crypto and /fiat report them.

The simulator has no wallets or banks; an account's starting balances are recorded as deposits at
the moment the account opens, so the transaction lists show where the money came from. Pure.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Literal

# Currencies BTCTurk moves through banks (the fiat endpoint); every other one is crypto.
FIAT_CURRENCIES = frozenset({"TRY", "USD", "EUR"})

TransferKind = Literal["deposit", "withdrawal"]


@dataclass(frozen=True)
class Transfer:
    """One deposit or withdrawal; `amount` is negative for a withdrawal, `funds` the balance after it."""

    transfer_id: int
    account: str
    currency: str
    kind: TransferKind
    amount: Decimal
    funds: Decimal
    ts_ms: int
    fee: Decimal = Decimal(0)
    tax: Decimal = Decimal(0)

    @property
    def is_fiat(self) -> bool:
        """Whether the fiat endpoint (rather than the crypto one) lists this transfer."""
        return self.currency in FIAT_CURRENCIES


class FundingLedger:
    """Every transfer of every account, in the order they happened."""

    def __init__(self, first_id: int) -> None:
        self._next_id = first_id
        self._by_account: dict[str, list[Transfer]] = {}

    def deposit_initial(self, account: str, balances: Mapping[str, Decimal], ts_ms: int) -> list[Transfer]:
        """Record an account's starting balances as deposits (zero balances are skipped)."""
        recorded = []
        for currency, amount in balances.items():
            value = Decimal(amount)
            if value > 0:
                recorded.append(self._record(account, currency.upper(), "deposit", value, value, ts_ms))
        return recorded

    def _record(
        self, account: str, currency: str, kind: TransferKind, amount: Decimal, funds: Decimal, ts_ms: int
    ) -> Transfer:
        transfer = Transfer(self._next_id, account, currency, kind, amount, funds, ts_ms)
        self._next_id += 1
        self._by_account.setdefault(account, []).append(transfer)
        return transfer

    def of(self, account: str) -> list[Transfer]:
        """Transfers of an account, oldest first."""
        return list(self._by_account.get(account, ()))


def select(
    transfers: Iterable[Transfer],
    *,
    fiat: bool,
    kinds: set[str],
    currencies: set[str],
    start_ms: int,
    end_ms: int,
) -> list[Transfer]:
    """The transfers one endpoint returns, newest first; empty `kinds`/`currencies` mean all."""
    chosen = [
        t
        for t in transfers
        if t.is_fiat == fiat
        and (not kinds or t.kind in kinds)
        and (not currencies or t.currency in currencies)
        and start_ms <= t.ts_ms <= end_ms
    ]
    return sorted(chosen, key=lambda t: (t.ts_ms, t.transfer_id), reverse=True)
