-- A fill is one order's side of an exchange trade. When two of our orders match each other the exchange reports
-- ONE trade id for both sides (each under its own order id), so (symbol, trade_id) would drop one side.

ALTER TABLE fills DROP CONSTRAINT fills_pkey;
ALTER TABLE fills ADD PRIMARY KEY (symbol, trade_id, exchange_order_id);

-- The canonical fold order breaks a tie on (exchange time, trade id) by side (buy first, so a self-match never
-- sells what its own buy delivers), then exchange order id; positions remember the whole key of their last fill.
ALTER TABLE positions
    ADD COLUMN last_side              text CHECK (last_side IS NULL OR last_side IN ('buy', 'sell')),
    ADD COLUMN last_exchange_order_id text;

-- Before this migration a trade id had one fill per symbol, so the last fill is found by it.
UPDATE positions p
SET last_side = f.side, last_exchange_order_id = f.exchange_order_id
FROM fills f
WHERE f.symbol = p.symbol AND f.trade_id = p.last_trade_id AND f.ts_ns = p.last_ts_ns;

-- Reconciliation compares trades per (symbol, trade id, exchange order id) too.
ALTER TABLE reconciliation_mismatches ADD COLUMN exchange_order_id text;
