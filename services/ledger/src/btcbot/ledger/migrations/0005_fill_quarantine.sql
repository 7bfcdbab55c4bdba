-- Fills for orders the ledger does not know are held here, not in fills/positions/balances, until the order's
-- OrderAccepted arrives, reconciliation finds the trade at the exchange, or an operator adopts them
-- (`btcbot ledger quarantine --adopt ID`). Amounts are kept as sent, whatever they are.
CREATE TABLE quarantined_fills (
    id                bigserial PRIMARY KEY,
    message_id        text NOT NULL UNIQUE,
    symbol            text NOT NULL,
    trade_id          text NOT NULL,
    exchange_order_id text NOT NULL,
    client_order_id   text NOT NULL,
    side              text NOT NULL,
    price             numeric NOT NULL,
    quantity          numeric NOT NULL,
    payload           jsonb NOT NULL,            -- the OrderFilled as received (JSON)
    fee_rate          numeric,
    fee_rate_source   text,
    subject           text NOT NULL DEFAULT '',
    stream            text NOT NULL DEFAULT '',
    stream_seq        bigint NOT NULL DEFAULT 0,
    reason            text NOT NULL,
    quarantined_at    timestamptz NOT NULL,
    resolved_at       timestamptz,
    -- order_accepted | reconciled | adopted
    resolution        text CHECK (resolution IS NULL OR resolution IN ('order_accepted', 'reconciled', 'adopted')),
    resolved_by       text,
    UNIQUE (symbol, trade_id, exchange_order_id)
);
CREATE INDEX quarantined_fills_open ON quarantined_fills (client_order_id) WHERE resolved_at IS NULL;
