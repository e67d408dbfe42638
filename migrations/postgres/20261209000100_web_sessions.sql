-- Browser sessions, kept server-side so that signing out ends a session on every device.
-- The cookie carries a random id; only its SHA-256 is kept, so a leaked table holds no
-- usable cookie. `data` is the session as the web front end writes it (JSON); the columns
-- beside it are what sessions are found and ended by. Times in Unix milliseconds;
-- `expires_at` is the idle expiry, never past the absolute one.
CREATE TABLE web_sessions (
    id_hash    TEXT PRIMARY KEY NOT NULL,
    data       TEXT NOT NULL,
    user_id    UUID,
    tenant_id  UUID,
    operator   TEXT,
    started_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX web_sessions_by_user ON web_sessions (user_id);
CREATE INDEX web_sessions_by_operator ON web_sessions (operator);
CREATE INDEX web_sessions_by_expiry ON web_sessions (expires_at);
