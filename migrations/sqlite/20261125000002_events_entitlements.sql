-- Every marketplace event applied to a subscription, and what came of it: the timeline.
CREATE TABLE subscription_events (
    id              BLOB PRIMARY KEY NOT NULL,
    subscription_id BLOB NOT NULL REFERENCES subscriptions (id),
    source          TEXT NOT NULL,
    kind            TEXT NOT NULL,
    outcome         TEXT NOT NULL,
    detail          TEXT NOT NULL,
    occurred_at     INTEGER NOT NULL,
    recorded_at     INTEGER NOT NULL
);
CREATE INDEX subscription_events_by_subscription ON subscription_events (subscription_id, id);

-- The marketplace's current view of a subscription's entitlements (replaced as a whole).
CREATE TABLE entitlements (
    subscription_id BLOB NOT NULL REFERENCES subscriptions (id),
    dimension       TEXT NOT NULL,
    value           TEXT NOT NULL,
    expires_at      INTEGER,
    updated_at      INTEGER NOT NULL,
    PRIMARY KEY (subscription_id, dimension)
);

-- When the marketplace last stated plan, quantity or term: older statements are stale.
ALTER TABLE subscriptions ADD COLUMN terms_as_of INTEGER;
