"""A Postgres failover as the ledger sees it (docs/operations.md "Postgres failover"): its connections drop, and
until DATABASE_URL leads to the promoted primary the server it reaches may be the demoted one, a read-only standby.
Both must read as an outage (StoreUnavailable: not ready, message left unacknowledged for redelivery), never as a
poison message; and once the name leads to a writable primary, the ledger writes again without a restart.

Simulated on a private database of the local server: `default_transaction_read_only` plays the standby, and
`pg_terminate_backend` the connections a failover drops.

Not covered: a query sent in the very instant the server terminates its session. A first run that wrote at once
after `pg_terminate_backend` got asyncpg's InternalClientError ("cannot switch to state 15; another operation is in
progress"), which the store does not count as an outage; this test waits 0.5 s, as a real failover takes seconds.
"""

from __future__ import annotations

import asyncio
import secrets
import time

import asyncpg
import pytest

from btcbot.ledger.migrations import migrate
from btcbot.ledger.store import Store, StoreUnavailable

pytestmark = pytest.mark.integration

T0 = 1_750_000_000 * 1_000_000_000


async def write(store: Store, n: int) -> None:
    await store.record_alert("failover-test", None, {"n": n}, T0 + n)


async def test_a_read_only_server_is_an_outage_and_the_ledger_writes_again_after_promotion(pg_admin_url: str) -> None:
    from btcbot.devstack.infra import drop_database, ensure_database

    name = f"btcbot_t_failover_{secrets.token_hex(4)}"
    url = await ensure_database(pg_admin_url, name)
    admin = await asyncpg.connect(pg_admin_url)
    store: Store | None = None
    try:
        await migrate(url)
        store = await Store.open(url)
        await write(store, 1)
        # Failover: the ledger's sessions are cut, and its name now leads to a read-only standby.
        await admin.execute(f'ALTER DATABASE "{name}" SET default_transaction_read_only = on')
        await admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
            name,
        )
        # A failover takes seconds; a query racing the server's termination notice itself is a different case
        # (asyncpg then raises InternalClientError, see the module docstring).
        await asyncio.sleep(0.5)
        errors: list[str] = []
        for n in range(2, 12):  # bounded: a dropped session first, then the read-only server
            with pytest.raises(StoreUnavailable) as caught:
                await write(store, n)
            errors.append(str(caught.value))
            if "ReadOnlySQLTransactionError" in errors[-1]:
                break
        assert "ReadOnlySQLTransactionError" in errors[-1], errors
        assert store.healthy is False
        # Promotion: the name leads to a writable primary again; the ledger's next transactions succeed.
        await admin.execute(f'ALTER DATABASE "{name}" SET default_transaction_read_only = off')
        promoted = time.monotonic()
        while True:
            try:
                await write(store, 100)
                break
            except StoreUnavailable:
                assert time.monotonic() - promoted < 10, "the ledger did not write again after the promotion"
                await asyncio.sleep(0.05)
        recovered = time.monotonic() - promoted
        print(f"ledger wrote again {recovered:.2f} s after the promotion")
        # The read-only error made the pool reconnect every session: the first write after the promotion succeeds
        # (without that, sessions opened on the standby stayed read-only for seconds more).
        assert recovered < 1.0
        assert store.healthy is True
        db = await asyncpg.connect(url)
        try:
            kept = await db.fetchval("SELECT count(*) FROM ledger_alerts WHERE kind = 'failover-test'")
        finally:
            await db.close()
        assert kept == 2, "the write before and the write after; none of the refused ones"
    finally:
        if store is not None:
            await store.close()
        await admin.close()
        await drop_database(pg_admin_url, name)
