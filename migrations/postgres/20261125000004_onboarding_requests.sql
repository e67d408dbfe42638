-- Buyers who asked for a hand-held set-up instead of self-service sign-up (seed 000).
CREATE TABLE onboarding_requests (
    id           UUID PRIMARY KEY,
    marketplace  TEXT NOT NULL,
    external_id  TEXT NOT NULL,
    product_code TEXT NOT NULL,
    customer_id  TEXT NOT NULL,
    name         TEXT NOT NULL,
    email        TEXT NOT NULL,
    company      TEXT,
    message      TEXT,
    purchase     JSONB NOT NULL,
    status       TEXT NOT NULL,
    created_at   BIGINT NOT NULL
);
CREATE INDEX onboarding_requests_by_status ON onboarding_requests (status, id);
