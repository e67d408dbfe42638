-- Other names a marketplace gives a subscription (AWS agreement ids of a renewal chain,
-- licences, account + licence of a classic buyer). Notifications that carry only such a name
-- find their subscription after a restart. A name never moves to another subscription.
CREATE TABLE subscription_aliases (
    marketplace     TEXT NOT NULL,
    kind            TEXT NOT NULL,
    value           TEXT NOT NULL,
    subscription_id BLOB NOT NULL REFERENCES subscriptions (id),
    created_at      INTEGER NOT NULL,
    PRIMARY KEY (marketplace, kind, value)
);
CREATE INDEX subscription_aliases_subscription ON subscription_aliases (subscription_id);
