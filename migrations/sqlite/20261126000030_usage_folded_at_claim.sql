-- Usage is folded into its hourly totals when the flusher claims, not in the request
-- (ADR 0010). A request only appends events; a claim first adds every event past the
-- watermark to its hour, then moves the watermark.
--
-- `seq` is the rowid: SQLite has one writer and the ledger is append-only, so a new event's
-- rowid is larger than that of every event committed before it, and "past the watermark"
-- is a range of the table itself. `id` stays the event's identity (UUIDv7, made by us) but
-- needs no index of its own: nothing looks an event up by it.
CREATE TABLE usage_events_new (
    seq             INTEGER PRIMARY KEY,
    id              BLOB NOT NULL,
    subscription_id BLOB NOT NULL,
    dimension       TEXT NOT NULL,
    hour            INTEGER NOT NULL,
    occurred_at     INTEGER NOT NULL,
    quantity_micros INTEGER NOT NULL,
    idempotency_key TEXT,
    allocations     TEXT,
    received_at     INTEGER NOT NULL,
    CONSTRAINT usage_events_idempotency_key UNIQUE (subscription_id, idempotency_key)
);
INSERT INTO usage_events_new (id, subscription_id, dimension, hour, occurred_at,
    quantity_micros, idempotency_key, allocations, received_at)
    SELECT id, subscription_id, dimension, hour, occurred_at, quantity_micros,
        idempotency_key, allocations, received_at
    FROM usage_events ORDER BY id;
DROP TABLE usage_events;
ALTER TABLE usage_events_new RENAME TO usage_events;

-- The last event already in `usage_hours`: all events stored so far were folded by their
-- request.
CREATE TABLE usage_fold (
    id              INTEGER PRIMARY KEY CHECK (id = 1),
    folded_through  INTEGER NOT NULL
);
INSERT INTO usage_fold (id, folded_through) SELECT 1, COALESCE(MAX(seq), 0) FROM usage_events;
