-- Fees valued at the mark at fill time, a configurable trading-day boundary, reconciliation with the exchange.

-- A fee paid in a third asset is valued at that asset's mark in the quote when the fill was booked.
-- The rate is recorded with the fill (never recomputed), so a rebuild values it the same way.
ALTER TABLE fills
    ADD COLUMN fee_rate        numeric CHECK (fee_rate IS NULL OR fee_rate > 0),
    ADD COLUMN fee_rate_source text;

-- Every fee with its currency and tax, and the rate (quote per unit of the fee currency) it was valued at:
-- 1 for the quote, the fill price for the base, the recorded mark for any other asset (NULL: no mark).
CREATE VIEW fees AS
SELECT f.symbol,
       f.trade_id,
       f.message_id,
       f.client_order_id,
       f.ts,
       f.fee_asset                   AS currency,
       abs(f.fee)                    AS fee,
       abs(f.tax)                    AS tax,
       abs(f.fee) + abs(f.tax)       AS charge,
       f.quote_asset,
       r.rate,
       r.source                      AS rate_source,
       (abs(f.fee) + abs(f.tax)) * r.rate AS value_in_quote
FROM fills f
CROSS JOIN LATERAL (
    SELECT CASE WHEN f.fee_asset = f.quote_asset THEN 1::numeric
                WHEN f.fee_asset = f.base_asset THEN f.price
                ELSE f.fee_rate END AS rate,
           CASE WHEN f.fee_asset = f.quote_asset THEN 'quote'
                WHEN f.fee_asset = f.base_asset THEN 'fill_price'
                ELSE coalesce(f.fee_rate_source, 'none') END AS source
) r;

-- Settings the stored state depends on (the trading-day offset of daily_pnl): a change triggers a rebuild.
CREATE TABLE ledger_config (
    key     text PRIMARY KEY,
    value   text NOT NULL,
    updated timestamptz NOT NULL
);

CREATE INDEX equity_snapshots_ts ON equity_snapshots (ts);
ALTER TABLE equity_snapshots ADD COLUMN marks jsonb;

-- One row per reconciliation round; status is match, mismatch or deferred (the ledger had not caught up).
CREATE TABLE reconciliation_runs (
    id       bigserial PRIMARY KEY,
    ts       timestamptz NOT NULL,
    status   text NOT NULL CHECK (status IN ('match', 'mismatch', 'deferred')),
    assets   integer NOT NULL,
    trades   integer NOT NULL,
    detail   jsonb NOT NULL
);
CREATE INDEX reconciliation_runs_ts ON reconciliation_runs (ts);

-- A difference that persisted across two rounds: a balance, a missing or unknown fill, a fill that differs.
CREATE TABLE reconciliation_mismatches (
    id       bigserial PRIMARY KEY,
    run_id   bigint NOT NULL REFERENCES reconciliation_runs (id),
    ts       timestamptz NOT NULL,
    kind     text NOT NULL,
    asset    text,
    symbol   text,
    trade_id text,
    ledger   numeric,
    exchange numeric,
    detail   jsonb NOT NULL
);
CREATE INDEX reconciliation_mismatches_ts ON reconciliation_mismatches (ts);
