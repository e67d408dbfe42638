-- Ingest throughput (ADR 0008): every usage event paid a foreign-key lookup in `subscriptions`
-- and a second B-tree for its primary key. The ledger is append-only, its events are validated
-- against their subscription just before they are written, and subscriptions are never
-- deleted, so the check guarded nothing; WITHOUT ROWID keeps the rows in their primary key
-- (time-ordered UUIDv7, so new rows append).
CREATE TABLE usage_events_new (
    id              BLOB PRIMARY KEY NOT NULL,
    subscription_id BLOB NOT NULL,
    dimension       TEXT NOT NULL,
    hour            INTEGER NOT NULL,
    occurred_at     INTEGER NOT NULL,
    quantity_micros INTEGER NOT NULL,
    idempotency_key TEXT,
    allocations     TEXT,
    received_at     INTEGER NOT NULL,
    CONSTRAINT usage_events_idempotency_key UNIQUE (subscription_id, idempotency_key)
) WITHOUT ROWID;
INSERT INTO usage_events_new SELECT id, subscription_id, dimension, hour, occurred_at,
    quantity_micros, idempotency_key, allocations, received_at FROM usage_events;
DROP TABLE usage_events;
ALTER TABLE usage_events_new RENAME TO usage_events;
