-- Invitations to join a tenant. Only a SHA-256 of the token is kept; the link is shown once.
CREATE TABLE user_invites (
    token_hash  TEXT PRIMARY KEY NOT NULL,
    tenant_id   BLOB NOT NULL REFERENCES tenants (id),
    email       TEXT NOT NULL,
    role        TEXT NOT NULL,
    invited_by  TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL,
    accepted_at INTEGER
);
CREATE INDEX user_invites_by_tenant ON user_invites (tenant_id);
