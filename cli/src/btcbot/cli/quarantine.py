"""`btcbot ledger quarantine [--adopt ID]`: the fills the ledger holds for orders it does not know.

Without `--adopt` it lists the open quarantine (one JSON object per line) and exits 1 when any is held, so a
script can alert on it. `--adopt ID --reason WHY` books one held fill as it is, in one transaction, with the
operator recorded; the next portfolio snapshot shows it (the ledger publishes one after its next change).
Adopt only a fill the exchange's own record confirms: the ledger releases those by itself at reconciliation.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Mapping
from typing import Any

DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/btcbot"


def _plain(row: Mapping[str, Any]) -> dict[str, Any]:
    return {k: (v if isinstance(v, int | bool) or v is None else str(v)) for k, v in row.items()}


async def run_quarantine(env: Mapping[str, str], adopt: int | None, operator: str, show_all: bool) -> int:
    """List the quarantine, or adopt one fill; 0 when nothing is held (or the adoption was booked)."""
    from btcbot.ledger.store import Store, StoreUnavailable

    try:
        store = await Store.open(env.get("DATABASE_URL", DEFAULT_DATABASE_URL), max_size=1)
    except StoreUnavailable as exc:
        print(f"btcbot ledger quarantine: {exc} (check DATABASE_URL)", file=sys.stderr, flush=True)
        return 2
    try:
        if adopt is not None:
            result = await store.adopt_quarantined(adopt, operator, time.time_ns())
            if result is None:
                print(json.dumps({"adopted": None, "error": f"no open quarantined fill {adopt}"}), flush=True)
                return 1
            print(json.dumps({"adopted": adopt, "status": result.status, "operator": operator}), flush=True)
            return 0
        rows = await store.quarantined(open_only=not show_all)
        for row in rows:
            print(json.dumps(_plain(row)), flush=True)
        return 1 if any(r["resolved_at"] is None for r in rows) else 0
    finally:
        await store.close()
