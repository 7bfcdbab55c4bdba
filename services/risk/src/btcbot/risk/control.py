"""What risk remembers between intents: mode, kill switch, positions and exchange rules.

Control and portfolio messages may be redelivered or arrive out of order, so each keeps only the newest by
its creation time.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal

from btcbot.contracts.messages import BookSnapshot, KillSwitch, Mode, ModeChanged, PortfolioSnapshot
from btcbot.risk.limits import BookSeen, RiskView
from btcbot.risk.rules import SymbolRules


class RiskState:
    """The latest switches, positions and rules; `view()` is what the checks read."""

    def __init__(self, account: str) -> None:
        self.account = account
        self.mode: Mode = "NORMAL"
        self.kill_engaged = False
        self.positions: dict[str, Decimal] = {}
        self.halted: frozenset[str] = frozenset()
        self.books: dict[str, BookSeen] = {}
        self.rules: Mapping[str, SymbolRules] | None = None
        self.rules_loaded_ns: int | None = None
        self._mode_ts = -1
        self._kill_ts = -1
        self._portfolio_ts = -1
        # The newest snapshot in full: pre-trade reservations read its balances, positions and exec_seq.
        self.snapshot: PortfolioSnapshot | None = None

    def on_mode(self, event: ModeChanged) -> bool:
        """Apply a mode change unless a newer one was seen."""
        if event.ts_ns < self._mode_ts:
            return False
        self._mode_ts = event.ts_ns
        self.mode = event.mode
        return True

    def on_kill(self, event: KillSwitch) -> bool:
        """Apply a kill switch change unless a newer one was seen."""
        if event.ts_ns < self._kill_ts:
            return False
        self._kill_ts = event.ts_ns
        self.kill_engaged = event.engaged
        return True

    def on_portfolio(self, snapshot: PortfolioSnapshot) -> bool:
        """Take positions from this account's newest ledger snapshot."""
        if snapshot.account != self.account or snapshot.ts_ns < self._portfolio_ts:
            return False
        self._portfolio_ts = snapshot.ts_ns
        self.snapshot = snapshot
        self.positions = {p.symbol: p.quantity for p in snapshot.positions}
        self.halted = frozenset(snapshot.halted)
        return True

    def on_book(self, book: BookSnapshot) -> bool:
        """Remember the newest book of a symbol (by exchange time)."""
        seen = self.books.get(book.symbol)
        if seen is not None and book.exchange_ts_ns < seen.exchange_ts_ns:
            return False
        self.books[book.symbol] = BookSeen(book.exchange_ts_ns, book.stale)
        return True

    def set_rules(self, rules: Mapping[str, SymbolRules], now_ns: int) -> None:
        """Replace the exchange rules (after a successful exchangeinfo load)."""
        self.rules = dict(rules)
        self.rules_loaded_ns = now_ns

    def view(self) -> RiskView:
        """A consistent view for one check."""
        return RiskView(
            mode=self.mode,
            kill_engaged=self.kill_engaged,
            positions=dict(self.positions),
            rules=self.rules,
            halted=self.halted,
            books=dict(self.books),
        )
