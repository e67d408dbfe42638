-- Verified sign-up emails (ADR 0021): when and how a user's address was shown to be theirs
-- ('link', 'operator' or 'invite'); both NULL until then.
ALTER TABLE users ADD COLUMN email_verified_at INTEGER;
ALTER TABLE users ADD COLUMN email_verified_by TEXT;

-- People who joined by an invitation proved their address by the link it was sent to.
UPDATE users SET
    email_verified_at = (SELECT MIN(i.accepted_at) FROM user_invites i
                         WHERE i.email = users.email AND i.accepted_at IS NOT NULL),
    email_verified_by = 'invite'
WHERE EXISTS (SELECT 1 FROM user_invites i
              WHERE i.email = users.email AND i.accepted_at IS NOT NULL);

-- Verification links mailed to a user. Only a SHA-256 of the token is kept; each is used once.
CREATE TABLE email_verifications (
    token_hash TEXT PRIMARY KEY NOT NULL,
    user_id    BLOB NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    used_at    INTEGER
);
CREATE INDEX email_verifications_by_user ON email_verifications (user_id);
-- The operators' list of addresses still to confirm.
CREATE INDEX users_unverified ON users (created_at) WHERE email_verified_at IS NULL;
