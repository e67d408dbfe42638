-- An operator's decision on a set-up request: approved (with a one-time link to finish the
-- set-up, stored only as its SHA-256) or declined (with the reason shown to operators).
ALTER TABLE onboarding_requests ADD COLUMN approval_hash TEXT;
ALTER TABLE onboarding_requests ADD COLUMN approval_expires_at BIGINT;
ALTER TABLE onboarding_requests ADD COLUMN decided_by TEXT;
ALTER TABLE onboarding_requests ADD COLUMN decided_at BIGINT;
ALTER TABLE onboarding_requests ADD COLUMN decision_note TEXT;
CREATE UNIQUE INDEX onboarding_requests_by_approval ON onboarding_requests (approval_hash);
