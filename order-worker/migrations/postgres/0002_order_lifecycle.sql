-- The order's lifecycle on its row: created when stored, then paid or expired (failed orders
-- never got a row). Applied from the order-event topic, forward only.
ALTER TABLE orders
    ADD COLUMN status     TEXT        NOT NULL DEFAULT 'created'
        CHECK (status IN ('created', 'paid', 'expired', 'failed')),
    ADD COLUMN paid_at    TIMESTAMPTZ,
    ADD COLUMN expired_at TIMESTAMPTZ;
