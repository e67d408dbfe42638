-- People who sign in to a tenant's account center.
CREATE TABLE users (
    id            BLOB PRIMARY KEY NOT NULL,
    tenant_id     BLOB NOT NULL REFERENCES tenants (id),
    email         TEXT NOT NULL,
    name          TEXT,
    password_hash TEXT,
    role          TEXT NOT NULL,
    created_at    INTEGER NOT NULL,
    CONSTRAINT users_email_key UNIQUE (email)
);
CREATE INDEX users_by_tenant ON users (tenant_id);
