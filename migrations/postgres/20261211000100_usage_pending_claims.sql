-- Claims marked but not frozen yet (ADR 0026). A PostgreSQL claim marks its hours `sending`
-- (quantity provisionally frozen) and lists its lease here in the same transaction; it then
-- waits out the usage requests still inserting (a barrier), folds what they stored into its
-- hours and removes its lease from here, which is when the hours are frozen for good. Until
-- then a fold adds to an hour `sending` under a lease listed here (and to its sent quantity)
-- as to an open one. A lease left here by a claimer that died stays until the next claim
-- prunes it a day after it ran out: its hours are claimed again once the lease runs out.
CREATE TABLE usage_pending_claims (
    lease_id     UUID PRIMARY KEY,
    locked_until BIGINT NOT NULL
);
