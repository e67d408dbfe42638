-- Keys the vendor's product uses to call marketlink's API. Only a SHA-256 of the secret part
-- is kept; the prefix finds the row.
CREATE TABLE api_keys (
    id           BLOB PRIMARY KEY NOT NULL,
    name         TEXT NOT NULL,
    prefix       TEXT NOT NULL,
    secret_hash  TEXT NOT NULL,
    scopes       TEXT NOT NULL,
    tenant_id    BLOB REFERENCES tenants (id),
    created_at   INTEGER NOT NULL,
    revoked_at   INTEGER,
    last_used_at INTEGER,
    CONSTRAINT api_keys_prefix_key UNIQUE (prefix)
);

-- Who did what: API key and admin actions, and hourly counts of each key's API use.
CREATE TABLE audit_log (
    id         BLOB PRIMARY KEY NOT NULL,
    actor      TEXT NOT NULL,
    action     TEXT NOT NULL,
    target     TEXT,
    detail     TEXT NOT NULL,
    at         INTEGER NOT NULL
);
CREATE INDEX audit_log_by_actor ON audit_log (actor, id);

CREATE TABLE api_key_use (
    key_id     BLOB NOT NULL REFERENCES api_keys (id),
    action     TEXT NOT NULL,
    hour       INTEGER NOT NULL,
    calls      INTEGER NOT NULL,
    PRIMARY KEY (key_id, action, hour)
);
