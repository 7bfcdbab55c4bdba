"""Per-symbol trading rules as risk checks them: the kit's rule book (`btcbot.btcturk.rulebook`), one for all.

Re-exported here so risk's checks and tests name them where they are used.
"""

from __future__ import annotations

from btcbot.btcturk.rulebook import ExchangeSymbol, RulesBook, SymbolRules, rules_from_exchange

__all__ = ["ExchangeSymbol", "RulesBook", "SymbolRules", "rules_from_exchange"]
