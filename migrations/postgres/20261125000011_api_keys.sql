-- Keys the vendor's product uses to call marketlink's API. Only a SHA-256 of the secret part
-- is kept; the prefix finds the row.
CREATE TABLE api_keys (
    id           UUID PRIMARY KEY,
    name         TEXT NOT NULL,
    prefix       TEXT NOT NULL,
    secret_hash  TEXT NOT NULL,
    scopes       TEXT NOT NULL,
    tenant_id    UUID REFERENCES tenants (id),
    created_at   BIGINT NOT NULL,
    revoked_at   BIGINT,
    last_used_at BIGINT,
    CONSTRAINT api_keys_prefix_key UNIQUE (prefix)
);

-- Who did what: API key and admin actions, and hourly counts of each key's API use.
CREATE TABLE audit_log (
    id         UUID PRIMARY KEY,
    actor      TEXT NOT NULL,
    action     TEXT NOT NULL,
    target     TEXT,
    detail     JSONB NOT NULL,
    at         BIGINT NOT NULL
);
CREATE INDEX audit_log_by_actor ON audit_log (actor, id);

CREATE TABLE api_key_use (
    key_id     UUID NOT NULL REFERENCES api_keys (id),
    action     TEXT NOT NULL,
    hour       BIGINT NOT NULL,
    calls      BIGINT NOT NULL,
    PRIMARY KEY (key_id, action, hour)
);
