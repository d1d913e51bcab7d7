-- One row per accepted purchase. The primary key makes redelivery harmless (ON CONFLICT DO
-- NOTHING); the unique (sale_id, user_id) is the database's own guard of "one per buyer".
CREATE TABLE orders (
    order_id     TEXT        PRIMARY KEY,
    event_id     UUID        NOT NULL,
    sale_id      TEXT        NOT NULL,
    user_id      TEXT        NOT NULL,
    price_cents  BIGINT      NOT NULL CHECK (price_cents >= 0),
    quantity     INTEGER     NOT NULL CHECK (quantity > 0),
    reserved_at  TIMESTAMPTZ NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (sale_id, user_id)
);
