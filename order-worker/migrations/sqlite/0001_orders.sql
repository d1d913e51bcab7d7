-- The orders table of migrations/postgres, in SQLite: the same columns, keys and checks, so the
-- embedded store refuses exactly what PostgreSQL refuses. Times are RFC 3339 text.
CREATE TABLE orders (
    order_id     TEXT    PRIMARY KEY,
    event_id     TEXT    NOT NULL,
    sale_id      TEXT    NOT NULL,
    user_id      TEXT    NOT NULL,
    price_cents  INTEGER NOT NULL CHECK (price_cents >= 0),
    quantity     INTEGER NOT NULL CHECK (quantity > 0),
    reserved_at  TEXT    NOT NULL,
    created_at   TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    UNIQUE (sale_id, user_id)
);
