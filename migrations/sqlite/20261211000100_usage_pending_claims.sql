-- Claims marked but not frozen yet (ADR 0026): used on PostgreSQL, where a claim marks its
-- hours, waits out the usage requests still inserting and folds once more before it freezes
-- them. A SQLite claim holds the write lock from its fold to its freeze and never writes here;
-- the table exists so that both schemas stay alike.
CREATE TABLE usage_pending_claims (
    lease_id     BLOB PRIMARY KEY,
    locked_until INTEGER NOT NULL
);
