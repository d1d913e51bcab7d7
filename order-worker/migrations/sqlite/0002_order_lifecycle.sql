-- The lifecycle columns of migrations/postgres, in SQLite (one column per statement).
ALTER TABLE orders ADD COLUMN status TEXT NOT NULL DEFAULT 'created'
    CHECK (status IN ('created', 'paid', 'expired', 'failed'));
ALTER TABLE orders ADD COLUMN paid_at TEXT;
ALTER TABLE orders ADD COLUMN expired_at TEXT;
