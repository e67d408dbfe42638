-- Ingest throughput (ADR 0008): every usage event paid a foreign-key check against
-- `subscriptions` (a trigger and a lookup per row). The ledger is append-only, its events are
-- validated against their subscription just before they are written, and subscriptions are
-- never deleted, so the check guarded nothing.
ALTER TABLE usage_events DROP CONSTRAINT usage_events_subscription_id_fkey;

-- Every ingest batch adds to hourly totals in place (quantity, updated_at: no indexed column).
-- Room left on each page lets PostgreSQL write those new row versions on the same page (HOT)
-- instead of adding an entry to each of the table's four indexes.
ALTER TABLE usage_hours SET (fillfactor = 70);
