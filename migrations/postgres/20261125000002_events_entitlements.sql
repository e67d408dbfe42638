-- Every marketplace event applied to a subscription, and what came of it: the timeline.
CREATE TABLE subscription_events (
    id              UUID PRIMARY KEY,
    subscription_id UUID NOT NULL REFERENCES subscriptions (id),
    source          TEXT NOT NULL,
    kind            TEXT NOT NULL,
    outcome         TEXT NOT NULL,
    detail          JSONB NOT NULL,
    occurred_at     BIGINT NOT NULL,
    recorded_at     BIGINT NOT NULL
);
CREATE INDEX subscription_events_by_subscription ON subscription_events (subscription_id, id);

-- The marketplace's current view of a subscription's entitlements (replaced as a whole).
CREATE TABLE entitlements (
    subscription_id UUID NOT NULL REFERENCES subscriptions (id),
    dimension       TEXT NOT NULL,
    value           JSONB NOT NULL,
    expires_at      BIGINT,
    updated_at      BIGINT NOT NULL,
    PRIMARY KEY (subscription_id, dimension)
);

-- When the marketplace last stated plan, quantity or term: older statements are stale.
ALTER TABLE subscriptions ADD COLUMN terms_as_of BIGINT;
