"""The exchange as reconciliation sees it: our balances and our trades, over the BTCTurk REST client."""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal

from btcbot.btcturk.limits import EndpointGroup
from btcbot.btcturk.models import UserTrade
from btcbot.btcturk.rest import BtcTurkClient
from btcbot.btcturk.retry import RetryPolicy
from btcbot.ledger.reconcile import TradeView

# The longest a reconciliation read waits for the account's rate limit before giving up for this round.
_MAX_WAIT = 1.0


def trade_view(trade: UserTrade) -> TradeView:
    """A BTCTurk user trade with unsigned quantity, fee and tax (BTCTurk reports paid amounts negative)."""
    return TradeView(
        symbol=trade.pair,
        trade_id=str(trade.id),
        side=trade.side,
        price=trade.price,
        quantity=trade.quantity,
        fee=abs(trade.fee),
        tax=abs(trade.tax),
        ts_ns=trade.timestamp_ms * 1_000_000,
        exchange_order_id=str(trade.order_id),
    )


class ExchangeAccount:
    """Reads the account's balances and trades (the real exchange or the simulator)."""

    def __init__(self, client: BtcTurkClient) -> None:
        self._client = client

    @classmethod
    def connect(cls, base_url: str, api_key: str, api_secret: str, timeout: float = 5.0) -> ExchangeAccount:
        """A client for `base_url` with these credentials (nothing is sent yet)."""
        # Never wait out a rate limit: the account's budget is shared with execution, which needs it more; a
        # round that is refused skips the trade comparison instead (see tasks.Reconciler).
        reads = RetryPolicy(max_attempts=2, max_rate_limit_wait=_MAX_WAIT)
        return cls(BtcTurkClient(base_url, api_key, api_secret, timeout=timeout, read_retry=reads))

    def _throttled(self, group: EndpointGroup) -> bool:
        # After a 429 the client holds the group for Retry-After (up to a minute): skip rather than wait.
        return self._client.rate_limiter.delay(group) > _MAX_WAIT

    async def balances(self) -> dict[str, Decimal] | None:
        """Total balance (free + locked) per asset, upper-case; None while the endpoint is rate limited."""
        if self._throttled(EndpointGroup.BALANCES):
            return None
        return {b.asset.upper(): b.balance for b in await self._client.balances()}

    async def trades(self, symbols: Iterable[str], since_ms: int) -> list[TradeView] | None:
        """Our trades in these symbols since `since_ms` (exchange time), in one request for all pairs; None
        while the endpoint is rate limited."""
        if self._throttled(EndpointGroup.USER_TRADES):
            return None
        wanted = set(symbols)
        return [trade_view(t) for t in await self._client.user_trades(start_ms=since_ms) if t.pair in wanted]

    async def close(self) -> None:
        """Close the HTTP pool."""
        await self._client.aclose()
