-- Ledger schema: every money amount is NUMERIC (exact decimal), never a float.

CREATE TABLE orders (
    client_order_id   text PRIMARY KEY,
    exchange_order_id text,
    symbol            text NOT NULL,
    side              text CHECK (side IN ('buy', 'sell')),
    type              text,
    price             numeric,
    quantity          numeric,
    filled_quantity   numeric NOT NULL DEFAULT 0,
    status            text NOT NULL,
    strategy          text,
    intent_id         text,
    reason            text,
    created_at        timestamptz NOT NULL,
    updated_at        timestamptz NOT NULL
);

-- Every order event as received, for audit (fills included).
CREATE TABLE order_events (
    message_id      text PRIMARY KEY,
    client_order_id text NOT NULL,
    type            text NOT NULL,
    payload         jsonb NOT NULL,
    ts              timestamptz NOT NULL
);
CREATE INDEX order_events_client_order_id ON order_events (client_order_id);

-- One row per exchange trade: the unique key is what makes a fill count once.
CREATE TABLE fills (
    symbol                text NOT NULL,
    trade_id              text NOT NULL,
    message_id            text NOT NULL UNIQUE,
    client_order_id       text NOT NULL,
    exchange_order_id     text NOT NULL,
    strategy              text NOT NULL,
    side                  text NOT NULL CHECK (side IN ('buy', 'sell')),
    price                 numeric NOT NULL CHECK (price > 0),
    quantity              numeric NOT NULL CHECK (quantity > 0),
    fee                   numeric NOT NULL,
    fee_asset             text NOT NULL,
    tax                   numeric NOT NULL,
    base_asset            text NOT NULL,
    quote_asset           text NOT NULL,
    ts_ns                 bigint NOT NULL,
    ts                    timestamptz NOT NULL,
    flagged_unknown_order boolean NOT NULL DEFAULT false,
    recorded_at           timestamptz NOT NULL,
    PRIMARY KEY (symbol, trade_id)
);
CREATE INDEX fills_client_order_id ON fills (client_order_id);
CREATE INDEX fills_recorded_at ON fills (recorded_at);

CREATE TABLE positions (
    symbol        text PRIMARY KEY,
    quantity      numeric NOT NULL DEFAULT 0 CHECK (quantity >= 0),
    cost          numeric NOT NULL DEFAULT 0,
    avg_cost      numeric NOT NULL DEFAULT 0,
    realized_pnl  numeric NOT NULL DEFAULT 0,
    fees          numeric NOT NULL DEFAULT 0,
    fills         integer NOT NULL DEFAULT 0,
    last_ts_ns    bigint,
    last_trade_id text,
    -- Set while an integrity error (oversell) stops the position from moving; see ledger_alerts.
    halted_reason text,
    updated       timestamptz NOT NULL
);

CREATE TABLE balances (
    asset   text PRIMARY KEY,
    total   numeric NOT NULL,
    updated timestamptz NOT NULL
);

-- The audit of every applied message id: inserting here first is what makes a redelivery a no-op.
CREATE TABLE applied_messages (
    message_id text PRIMARY KEY,
    subject    text NOT NULL,
    stream     text NOT NULL,
    stream_seq bigint NOT NULL,
    applied_at timestamptz NOT NULL
);
CREATE INDEX applied_messages_applied_at ON applied_messages (applied_at);

CREATE TABLE equity_snapshots (
    id       bigserial PRIMARY KEY,
    ts       timestamptz NOT NULL,
    equity   numeric NOT NULL,
    peak     numeric NOT NULL,
    drawdown numeric NOT NULL,
    cause    text NOT NULL
);

CREATE TABLE daily_pnl (
    day      date NOT NULL,
    symbol   text NOT NULL,
    realized numeric NOT NULL DEFAULT 0,
    fees     numeric NOT NULL DEFAULT 0,
    PRIMARY KEY (day, symbol)
);

CREATE TABLE ledger_alerts (
    id          bigserial PRIMARY KEY,
    ts          timestamptz NOT NULL,
    kind        text NOT NULL,
    symbol      text,
    message_id  text,
    detail      jsonb NOT NULL,
    resolved_at timestamptz
);
CREATE INDEX ledger_alerts_open ON ledger_alerts (symbol) WHERE resolved_at IS NULL;
