-- Opening holdings are positions; the EXECUTION watermark of a snapshot; the bot's own PnL history.

-- What the account held of a symbol's base asset before the bot traded it (seen at start from the opening
-- balances, or confirmed by the exchange when an operator resumes a halted symbol). An input of the position
-- fold like the fills: sellable, with no cost basis and no bot PnL.
CREATE TABLE opening_positions (
    symbol      text PRIMARY KEY,
    quantity    numeric NOT NULL CHECK (quantity >= 0),
    source      text NOT NULL,
    recorded_at timestamptz NOT NULL
);

-- The part of a position's quantity that is opening holdings still held.
ALTER TABLE positions ADD COLUMN opening_quantity numeric NOT NULL DEFAULT 0 CHECK (opening_quantity >= 0);

-- The snapshot's watermark walks the applied stream sequences above the durable's ack floor.
CREATE INDEX applied_messages_stream_seq ON applied_messages (stream, stream_seq);

-- The bot's own PnL (realized + unrealized, opening holdings excluded) and its running peak, per valuation.
ALTER TABLE equity_snapshots
    ADD COLUMN bot_pnl  numeric,
    ADD COLUMN bot_peak numeric;
