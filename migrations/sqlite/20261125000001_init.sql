-- marketlink schema, SQLite dialect. Timestamps are Unix milliseconds (INTEGER) so that
-- comparisons in SQL are numeric on both backends; ids are UUID v7 stored as 16-byte BLOBs.

CREATE TABLE tenants (
    id            BLOB PRIMARY KEY NOT NULL,
    name          TEXT NOT NULL,
    company       TEXT,
    contact_email TEXT NOT NULL,
    created_at    INTEGER NOT NULL
);

CREATE TABLE subscriptions (
    id                  BLOB PRIMARY KEY NOT NULL,
    tenant_id           BLOB REFERENCES tenants (id),
    marketplace         TEXT NOT NULL,
    external_id         TEXT NOT NULL,
    product_code        TEXT NOT NULL,
    customer_id         TEXT NOT NULL,
    customer_account_id TEXT,
    license_arn         TEXT,
    product_id          TEXT,
    plan_id             TEXT,
    quantity            INTEGER,
    status              TEXT NOT NULL,
    free_trial          BOOLEAN NOT NULL DEFAULT FALSE,
    term_start          INTEGER,
    term_end            INTEGER,
    term_unit           TEXT,
    created_at          INTEGER NOT NULL,
    updated_at          INTEGER NOT NULL,
    CONSTRAINT subscriptions_external_key UNIQUE (marketplace, external_id)
);
CREATE INDEX subscriptions_tenant ON subscriptions (tenant_id);
CREATE INDEX subscriptions_customer ON subscriptions (marketplace, customer_id);

-- What marketplaces told us: stored before we acknowledge, applied by a worker.
CREATE TABLE inbox_messages (
    id              BLOB PRIMARY KEY NOT NULL,
    marketplace     TEXT NOT NULL,
    dedup_key       TEXT NOT NULL,
    kind            TEXT NOT NULL,
    payload         TEXT NOT NULL,
    state           TEXT NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    locked_until    INTEGER,
    lease_id        BLOB,
    last_error      TEXT,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    CONSTRAINT inbox_messages_dedup_key UNIQUE (marketplace, dedup_key)
);
CREATE INDEX inbox_messages_due ON inbox_messages (state, next_attempt_at);

-- What we must tell marketplaces (activation, acknowledgements, plan changes, usage batches).
CREATE TABLE outbox_jobs (
    id              BLOB PRIMARY KEY NOT NULL,
    marketplace     TEXT NOT NULL,
    kind            TEXT NOT NULL,
    dedup_key       TEXT NOT NULL,
    payload         TEXT NOT NULL,
    state           TEXT NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    locked_until    INTEGER,
    lease_id        BLOB,
    last_error      TEXT,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    CONSTRAINT outbox_jobs_dedup_key UNIQUE (kind, dedup_key)
);
CREATE INDEX outbox_jobs_due ON outbox_jobs (state, next_attempt_at);
